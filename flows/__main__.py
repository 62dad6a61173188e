"""`python -m flows` runs the CLI (same as the `briefing` console script)."""

from flows.app.cli import main

main()

"""`python -m flows` runs the CLI (same as the `briefing` console script)."""

from flows.cli import main

main()

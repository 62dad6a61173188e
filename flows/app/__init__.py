"""What people run: the `briefing` command line (flows/app/cli.py, `main`), its command modules
(flows/app/commands/), the preview web app, `briefing serve` and the generator of docs/cli.md and docs/settings.md.
"""

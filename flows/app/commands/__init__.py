"""The `briefing` commands, one module per group; each has a `register(app)` that adds its commands."""

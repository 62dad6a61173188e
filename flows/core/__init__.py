"""The contract every stage shares: settings, errors, models, content loading, the store."""

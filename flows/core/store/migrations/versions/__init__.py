"""The store's migrations, oldest first; Alembic reads these files, nothing imports them."""

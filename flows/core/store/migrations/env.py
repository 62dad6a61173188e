"""Alembic's environment: migrations run on the connection `flows.core.store.migrate` hands over, inside the
store's transaction and under its migration lock. They are not run through the `alembic` command line."""

from __future__ import annotations

from alembic import context

from flows.core.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

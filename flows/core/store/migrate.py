"""Migrating the store with Alembic, on SQLite and PostgreSQL alike.

`flows.core.store.base.Database.migrate` calls `upgrade` when a store opens for writing, inside its write
transaction and under its migration lock, so two processes starting at once migrate once. The migrations live
in flows/core/store/migrations/versions/ and ship in the package. A store already at `HEAD` costs one query
and no Alembic import; a store made before Alembic (it has the old schema_version table) is adopted by the
baseline migration without losing a row (see its docstring).

To add a migration: change flows/core/store/schema.py, then `python -m flows.core.store.migrate revision
"what it does"` writes the next file under versions/ with Alembic's comparison of an up-to-date database and
schema.py; read and finish it, and set `HEAD` to its revision (a test checks both).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD = "0001"  # the newest revision under migrations/versions/
VERSION_TABLE = "alembic_version"


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at; None for an empty database or one made before Alembic."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


@cache
def script_directory() -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS))


def alembic_config(conn: Connection) -> Config:
    """Alembic's configuration for running on `conn` (migrations/env.py takes the connection from it)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def upgrade(conn: Connection) -> list[str]:
    """Apply every migration newer than the database's revision, on `conn` in the caller's transaction. Returns
    one line per migration applied."""
    current = current_revision(conn)
    if current == HEAD:
        return []
    scripts = script_directory()
    known = {script.revision for script in scripts.walk_revisions()}
    if current is not None and current not in known:
        logger.warning(
            "the store is at schema revision %s, which this code does not know (newest: %s): upgrade briefing-pipeline",
            current,
            HEAD,
        )
        return []
    pending = list(reversed(list(scripts.iterate_revisions(HEAD, current or "base"))))
    from alembic import command

    command.upgrade(alembic_config(conn), "head")
    return [f"migration {script.revision}: {script.doc}" for script in pending]


def write_revision(message: str) -> Path:
    """A new file under versions/ with what schema.py has that a database at HEAD lacks (autogenerate)."""
    from alembic import command

    from flows.core.store.engine import make_engine

    with tempfile.TemporaryDirectory() as folder:
        engine = make_engine(f"sqlite:///{Path(folder) / 'head.db'}")
        with engine.begin() as conn:
            upgrade(conn)
            config = alembic_config(conn)
            number = f"{int(HEAD) + 1:04d}"
            script = command.revision(
                config, message, autogenerate=True, rev_id=number, version_path=str(MIGRATIONS / "versions")
            )
        engine.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "revision":
        sys.exit('usage: python -m flows.core.store.migrate revision "what the migration does"')
    sys.stdout.write(f"wrote {write_revision(sys.argv[2])}: finish it, then set HEAD in {__file__}\n")

"""The database under the repositories: its engine, its transactions, and migrating it when it opens.

`Database` is what every repository builds on (`flows.core.store.Store` is a Database with the repositories'
methods). Writes that read before they write go through `begin()`: on SQLite it starts with BEGIN IMMEDIATE (one
writer at a time, no lock upgrade failures); on PostgreSQL rows are locked explicitly (FOR UPDATE SKIP LOCKED in
the ledger) and inserts that may race use INSERT … ON CONFLICT (`insert`).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Table, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError

from flows.core.backoff import delay_before_retry
from flows.core.errors import StoreError
from flows.core.store import migrate
from flows.core.store.engine import IMMEDIATE, make_engine, make_read_only_engine, normalise_url
from flows.core.store.schema import metadata

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Any constant works; it only has to be the same in every process that migrates this database.
MIGRATION_LOCK_KEY = 0x0B1EF1
SQLITE_LOCKED_RETRIES = 5


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def chunks(values: list[T], size: int = 500) -> Iterator[list[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _sqlite_busy(exc: OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (or one of their extended codes), told by the error code sqlite3 attaches,
    not by the message."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


class Database:
    """One database URL: its engine, its write transactions, its schema brought up to date when it opens."""

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        """`read_only`: open without creating, migrating or writing anything (`briefing status`); a store this
        code cannot read as it is (missing, or older than the code) is a StoreError."""
        self.url = normalise_url(url)
        self.read_only = read_only
        self.is_sqlite = self.url.startswith("sqlite")
        self._upserts: dict[tuple[str, ...], Any] = {}
        if read_only:
            self.engine = make_read_only_engine(self.url)
            self.schema_changes: list[str] = []
            self._check_readable()
        else:
            self.engine = make_engine(self.url)
            self.schema_changes = self.migrate()

    def _check_readable(self) -> None:
        """Every table and column this code reads is there (a store made by an older release may lack some)."""
        try:
            with self.engine.connect() as conn:
                inspector = inspect(conn)
                tables = set(inspector.get_table_names())
                missing = [t.name for t in metadata.sorted_tables if t.name not in tables]
                for table in metadata.sorted_tables:
                    if table.name in tables:
                        present = {c["name"] for c in inspector.get_columns(table.name)}
                        missing += [f"{table.name}.{c.name}" for c in table.columns if c.name not in present]
        except (OperationalError, sqlite3.Error) as exc:
            raise StoreError(
                f"cannot open the store read-only: {getattr(exc, 'orig', None) or exc}",
                where=self.where,
                hint="check BRIEFING_DATABASE_URL (or BRIEFING_OUTPUT_DIR) and that the file is readable",
            ) from None
        if missing:
            raise StoreError(
                f"the store lacks {', '.join(missing[:5])}: it was made by an older version",
                where=self.where,
                hint="run a command that writes (briefing run, ingest or send) once to migrate it",
            )

    @property
    def where(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def schema_revision(self) -> str | None:
        """The Alembic revision this database is at (None: not under Alembic yet)."""
        with self.engine.connect() as conn:
            return migrate.current_revision(conn)

    def migrate(self) -> list[str]:
        """Bring the database to the newest migration, under the migration lock (a PostgreSQL advisory lock;
        SQLite's write lock), so that processes starting at once migrate once. Returns what was applied."""
        attempt = 0
        while True:
            try:
                with self.begin() as conn:
                    if not self.is_sqlite:
                        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    changes = migrate.upgrade(conn)
            except OperationalError as exc:
                # A brand-new SQLite file switching to WAL while another process does the same can answer
                # "database is locked" without waiting for the busy timeout; that race is over in moments.
                if self.is_sqlite and _sqlite_busy(exc) and attempt < SQLITE_LOCKED_RETRIES:
                    time.sleep(delay_before_retry(0.1, attempt))
                    attempt += 1
                    continue
                raise self._unusable(exc) from None
            for change in changes:
                logger.info("store %s: %s", self.where, change)
            return changes

    def _unusable(self, exc: OperationalError) -> StoreError:
        return StoreError(
            f"cannot open or migrate the store: {exc.orig or exc}",
            where=self.where,
            hint="check BRIEFING_DATABASE_URL and that the database server is running",
        )

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A write transaction. On SQLite it takes the database's write lock at once (BEGIN IMMEDIATE), so a
        transaction that reads and then writes cannot interleave with another writer."""
        with self.writer() as conn, conn.begin():
            yield conn

    @contextmanager
    def writer(self) -> Iterator[Connection]:
        """A connection for a series of write transactions (`with conn.begin():`), kept by one thread: a hot
        loop saves the pool checkout and the connection set-up `begin` pays each time."""
        with self.engine.connect() as conn:
            if self.is_sqlite:
                conn.execution_options(**{IMMEDIATE: True})
            yield conn

    def insert(self, table: Table) -> Any:
        """A dialect INSERT with `on_conflict_do_nothing` / `on_conflict_do_update` (SQLite and PostgreSQL)."""
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)

    def close(self) -> None:
        self.engine.dispose()

"""Engines for the store's URL: SQLite (WAL, BEGIN IMMEDIATE for writes) and PostgreSQL (psycopg 3), read-write or
read-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url

from flows.core.errors import POSTGRES_DRIVER_MISSING, SettingsError

# Execution option of a connection whose transactions start with BEGIN IMMEDIATE (see `Database.writer`).
IMMEDIATE = "briefing_sqlite_immediate"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit BEGIN cannot be IMMEDIATE and
    # breaks SAVEPOINTs).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")  # first, so the journal-mode switch below waits for locks too
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here (psycopg2 is not a dependency)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    try:
        return create_engine(normalise_url(url), pool_pre_ping=True, pool_size=5, max_overflow=20)
    except ModuleNotFoundError as exc:  # settings check this too; a Store built directly gets the same message
        if exc.name != "psycopg":
            raise
        raise SettingsError(POSTGRES_DRIVER_MISSING, where="BRIEFING_DATABASE_URL") from None


def make_read_only_engine(url: str) -> Engine:
    """An engine that cannot write: SQLite opened `mode=ro` (and `immutable=1` when the folder is read-only, as a
    WAL database needs its -shm file otherwise), PostgreSQL sessions in read-only transactions. Nothing is created."""
    if not url.startswith("sqlite"):
        parsed = make_url(normalise_url(url))
        given = parsed.query.get("options", "")
        given = " ".join(given) if isinstance(given, tuple) else given
        options = " ".join(x for x in (given, "-c default_transaction_read_only=on") if x)
        return create_engine(parsed, pool_pre_ping=True, connect_args={"options": options})  # keeps a search_path
    path = url.split("///", 1)[-1]

    def connect() -> sqlite3.Connection:
        target = f"file:{quote(str(Path(path).resolve()))}?mode=ro"
        try:
            conn = sqlite3.connect(target, uri=True, timeout=30, check_same_thread=False)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")  # opening is lazy: fail here, not later
        except sqlite3.OperationalError:
            conn = sqlite3.connect(target + "&immutable=1", uri=True, timeout=30, check_same_thread=False)
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        return conn

    return create_engine("sqlite://", creator=connect)


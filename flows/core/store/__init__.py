"""The store: articles, feed state, the send ledger, unsubscribes and published pages.

SQLAlchemy 2 Core on SQLite (WAL) by default; the same code runs on PostgreSQL (psycopg 3) through
BRIEFING_DATABASE_URL. The Table definitions below are the single source of truth for the schema.

Migrations run when a Store opens: numbered steps in `MIGRATIONS`, each applied once, inside one transaction
that holds the migration lock (a PostgreSQL advisory lock; SQLite's write lock via BEGIN IMMEDIATE), so two
processes starting at once do not race. After the numbered steps, tables, nullable columns and indexes that
are defined here but missing from the database are added: adding a column needs no migration step; renaming,
retyping or moving data does (append a step to `MIGRATIONS`).

Writes that read before they write go through `Store.begin()`: on SQLite it starts with BEGIN IMMEDIATE (one
writer at a time, no lock upgrade failures); on PostgreSQL rows are locked explicitly (FOR UPDATE SKIP LOCKED
in the ledger) and inserts that may race use INSERT … ON CONFLICT (`Store.insert`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import zip_longest
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    inspect,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.schema import CreateColumn

from flows.core.errors import POSTGRES_DRIVER_MISSING, SettingsError, StoreError
from flows.core.models import Article, Paragraph

logger = logging.getLogger(__name__)
T = TypeVar("T")

metadata = MetaData()
# Any constant works; it only has to be the same in every process that migrates this database.
MIGRATION_LOCK_KEY = 0x0B1EF1
_IMMEDIATE = "briefing_sqlite_immediate"
SQLITE_LOCKED_RETRIES = 5


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


schema_version = Table("schema_version", metadata, Column("version", Integer, primary_key=True))

feed_state = Table(
    "feed_state",
    metadata,
    Column("feed_url", String(2000), primary_key=True),
    Column("feed_id", String(64), nullable=False, default=""),
    Column("etag", String(500)),
    Column("last_modified", String(100)),
    Column("last_status", String(32)),
    Column("last_error", Text),
    Column("bozo", Text),
    Column("entries_new", Integer, default=0),
    Column("entries_seen", Integer, default=0),
    Column("last_fetched_at", DateTime),
    Column("entries_updated", Integer, default=0),
    Column("warnings", Text),
    Column("last_ok_at", DateTime),
)

articles = Table(
    "articles",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("canonical_url", String(2000), index=True),
    Column("guid", String(2000), index=True),
    Column("feed_id", String(64), default=""),
    Column("title", Text, nullable=False),
    Column("site", String(500), default=""),
    Column("author", String(500), default=""),
    Column("published", DateTime),
    Column("summary", Text, default=""),
    Column("content_html", Text, default=""),
    Column("paragraphs", Text, default="[]"),
    Column("fingerprint", String(64), index=True),
    Column("version", Integer, default=1, nullable=False),
    Column("first_seen", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

send_ledger = Table(
    "send_ledger",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("slug", String(128), nullable=False),
    Column("audience", String(64), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("message_id", String(500), nullable=False),
    Column("state", String(16), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_reply", Text, default=""),
    Column("next_attempt_at", DateTime),
    Column("claimed_by", String(128)),
    Column("claimed_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("slug", "audience", "recipient", "content_hash", name="uq_ledger_row"),
)

# The ledger's claim query filters on (slug, audience, state) and takes the lowest ids first.
ledger_claim_index = Index(
    "ix_send_ledger_claim", send_ledger.c.slug, send_ledger.c.audience, send_ledger.c.state, send_ledger.c.id
)

unsubscribes = Table(
    "unsubscribes",
    metadata,
    Column("audience", String(64), primary_key=True),
    Column("email", String(320), primary_key=True),
    Column("at", DateTime, nullable=False),
    Column("method", String(32), nullable=False),
)

published = Table(
    "published",
    metadata,
    Column("slug", String(128), primary_key=True),
    Column("path", String(500), nullable=False, unique=True),
    Column("content_hash", String(64), nullable=False),
    Column("first_published", DateTime, nullable=False),
    Column("updated", DateTime, nullable=False),
    # --- publish --- identity of the source article, so a slug edit keeps the page where it was first published
    Column("article_key", String(64), index=True),
)

# Readiness events already emitted, so a restart of `briefing serve` does not announce a briefing twice.
ready_events = Table(
    "ready_events",
    metadata,
    Column("slug", String(128), primary_key=True),
    Column("content_hash", String(64), primary_key=True),
    Column("event_id", String(64), nullable=False),
    Column("emitted_at", DateTime, nullable=False),
)

# --- draft --- what a model answered, so drafting the same source again costs no request (flows/draft/cache.py).
# kind: translation (per block; source_hash = hash of the block's text), summary or notes (hash of the request).
draft_cache = Table(
    "draft_cache",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("source_hash", String(64), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("prompt_version", String(16), primary_key=True),
    Column("language", String(16), primary_key=True),
    Column("value", Text, nullable=False),
    Column("tokens", Integer, nullable=False, default=0),
    Column("created_at", DateTime, nullable=False),
)


# --- collect --- the inbound mailbox (flows/collect): what was read, what it did, and what editors decide.
# The IMAP folder's UIDVALIDITY as last seen; a change means every UID in the folder was renumbered.
mailbox_state = Table(
    "mailbox_state",
    metadata,
    Column("mailbox", String(500), primary_key=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("updated_at", DateTime, nullable=False),
)

# One row per message processed, written in the same transaction as its effect; `digest` (SHA-256 of the raw
# message) recognises it again after a UIDVALIDITY change.
mail_messages = Table(
    "mail_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mailbox", String(500), nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uid", BigInteger, nullable=False),
    Column("digest", String(64), nullable=False, unique=True),
    Column("message_id", String(998), default=""),
    Column("sender", String(320), default=""),
    Column("subject", Text, default=""),
    Column("kind", String(32), nullable=False),
    Column("detail", Text, default=""),
    Column("folder", String(500), nullable=False),
    Column("processed_at", DateTime, nullable=False),
    Column("moved_at", DateTime),
    Index("ix_mail_messages_uid", "mailbox", "uidvalidity", "uid"),
)

# Replies are matched to the briefing they answer by the Message-IDs they reference (In-Reply-To/References).
ledger_message_id_index = Index("ix_send_ledger_message_id", send_ledger.c.message_id)

# Addresses never mailed again until an editor lifts the suppression (lifted_at set).
suppressions = Table(
    "suppressions",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("reason", Text, nullable=False),
    Column("source", String(32), nullable=False),
    Column("at", DateTime, nullable=False),
    Column("lifted_at", DateTime),
)

bounce_events = Table(
    "bounce_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", String(320), nullable=False, index=True),
    Column("severity", String(8), nullable=False),
    Column("status", String(16), default=""),
    Column("diagnostic", Text, default=""),
    Column("message_digest", String(64), nullable=False),
    Column("at", DateTime, nullable=False),
)

discussion_entries = Table(
    "discussion_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("message_digest", String(64), nullable=False, unique=True),
    Column("slug", String(128), nullable=False, index=True),
    Column("audience", String(64), nullable=False),
    Column("recipient", String(320), default=""),
    Column("sender_email", String(320), default=""),
    Column("sender_name", String(500), default=""),
    Column("received_at", DateTime, nullable=False),
    Column("text", Text, nullable=False),
    Column("html", Text, default=""),
    Column("status", String(16), nullable=False, index=True),
    Column("created_at", DateTime, nullable=False),
    Column("decided_at", DateTime),
)

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
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
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


# migrations ---------------------------------------------------------------------------------------


def _baseline(conn: Connection) -> None:
    """Version 1: every table (a fresh database gets the current definitions at once)."""
    metadata.create_all(conn)


def _ledger_claim_index(conn: Connection) -> None:
    """Version 2: index for the ledger's claim query (databases created by version 1 lack it)."""
    ledger_claim_index.create(conn, checkfirst=True)


Migration = tuple[int, str, Callable[[Connection], None]]
MIGRATIONS: tuple[Migration, ...] = (
    (1, "baseline tables", _baseline),
    (2, "index send_ledger (slug, audience, state, id) for claims", _ledger_claim_index),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def _add_column_sql(conn: Connection, table: Table, column: Column[Any]) -> str:
    spec = str(CreateColumn(column).compile(dialect=conn.dialect))
    if not column.nullable and column.server_default is None:
        scalar = getattr(column.default, "arg", None)
        if column.default is None or callable(scalar):
            raise StoreError(
                f"cannot add NOT NULL column {table.name}.{column.name} without a default to an existing table",
                hint="give it a scalar default= or server_default=, make it nullable, or add a numbered migration",
            )
        value = literal(scalar, column.type).compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        spec += f" DEFAULT {value}"
    return f"ALTER TABLE {conn.dialect.identifier_preparer.format_table(table)} ADD COLUMN {spec}"


def reconcile_schema(conn: Connection) -> list[str]:
    """Add tables, columns and indexes that are defined in `metadata` but missing from the database."""
    changes: list[str] = []
    inspector = inspect(conn)
    existing_tables = set(inspector.get_table_names())
    for table in metadata.sorted_tables:
        if table.name not in existing_tables:
            table.create(conn)
            changes.append(f"created table {table.name}")
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                conn.exec_driver_sql(_add_column_sql(conn, table, column))
                changes.append(f"added column {table.name}.{column.name}")
        indexes = {i["name"] for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            if index.name not in indexes:
                index.create(conn)
                changes.append(f"created index {index.name}")
    return changes


class Store:
    """Typed access to the tables; one instance per process and database URL."""

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

    def schema_version(self) -> int:
        """The highest migration applied to this database (0: none)."""
        with self.engine.connect() as conn:
            if not inspect(conn).has_table(schema_version.name):
                return 0
            return conn.execute(select(func.max(schema_version.c.version))).scalar() or 0

    def migrate(self) -> list[str]:
        """Bring the database to SCHEMA_VERSION; safe when several processes start at once. Returns what changed."""
        attempt = 0
        while True:
            try:
                with self.begin() as conn:
                    if not self.is_sqlite:
                        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    return self._migrate_locked(conn)
            except OperationalError as exc:
                # A brand-new SQLite file switching to WAL while another process does the same can answer
                # "database is locked" without waiting for the busy timeout; that race is over in moments.
                if self.is_sqlite and "locked" in str(exc.orig) and attempt < SQLITE_LOCKED_RETRIES:
                    time.sleep(0.1 * 2**attempt)
                    attempt += 1
                    continue
                raise self._unusable(exc) from None

    def _unusable(self, exc: OperationalError) -> StoreError:
        return StoreError(
            f"cannot open or migrate the store: {exc.orig or exc}",
            where=self.where,
            hint="check BRIEFING_DATABASE_URL and that the database server is running",
        )

    def _migrate_locked(self, conn: Connection) -> list[str]:
        schema_version.create(conn, checkfirst=True)
        current = conn.execute(select(func.max(schema_version.c.version))).scalar() or 0
        if current > SCHEMA_VERSION:
            logger.warning(
                "store %s is at schema version %d, newer than this code's %d: upgrade briefing-pipeline",
                self.where,
                current,
                SCHEMA_VERSION,
            )
        changes: list[str] = []
        for version, description, step in MIGRATIONS:
            if version <= current:
                continue
            step(conn)
            conn.execute(insert(schema_version).values(version=version))
            changes.append(f"migration {version}: {description}")
        changes.extend(reconcile_schema(conn))
        for change in changes:
            logger.info("store %s: %s", self.where, change)
        return changes

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
                conn.execution_options(**{_IMMEDIATE: True})
            yield conn

    def insert(self, table: Table) -> Any:
        """A dialect INSERT with `on_conflict_do_nothing` / `on_conflict_do_update` (SQLite and PostgreSQL)."""
        return sqlite.insert(table) if self.is_sqlite else postgresql.insert(table)

    def close(self) -> None:
        self.engine.dispose()

    # articles -------------------------------------------------------------------------------------

    def get_article(self, article_id: str) -> Article | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(articles).where(articles.c.id == article_id)).mappings().first()
        return _article_from_row(row) if row else None

    def find_article(self, *, canonical_url: str = "", fingerprint: str = "") -> Article | None:
        with self.engine.connect() as conn:
            for column, value in ((articles.c.canonical_url, canonical_url), (articles.c.fingerprint, fingerprint)):
                if value:
                    row = conn.execute(select(articles).where(column == value)).mappings().first()
                    if row:
                        return _article_from_row(row)
        return None

    def all_articles(self) -> list[Article]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(articles).order_by(articles.c.first_seen)).mappings().all()
        return [_article_from_row(r) for r in rows]

    def save_article(self, article: Article, *, canonical_url: str, guid: str) -> str:
        """Insert a new article or update a changed one. Returns 'new', 'updated' or 'seen'."""
        with self.begin() as conn:
            return _save_article(self, conn, article, canonical_url=canonical_url, guid=guid)

    def save_articles(self, items: list[tuple[Article, str, str]], *, conn: Connection | None = None) -> list[str]:
        """Save many (article, canonical_url, guid) in one transaction; 'new' / 'updated' / 'seen' for each.

        New articles go in as one multi-row insert; if another writer stored one of them meanwhile, the
        inserts are redone one by one so that each still gets its true result. Pass `conn` (from `begin()`)
        to make it part of the caller's write transaction.
        """
        if conn is None:
            with self.begin() as own:
                return self._save_articles(own, items)
        return self._save_articles(conn, items)

    def _save_articles(self, conn: Connection, items: list[tuple[Article, str, str]]) -> list[str]:
        stored: dict[str, tuple[str, int, str]] = {}
        for chunk in _chunks(sorted({a.id for a, _c, _g in items})):
            found = conn.execute(_STORED_VERSIONS, {"values": chunk})
            stored.update({r.id: (r.fingerprint, r.version, r.feed_id or "") for r in found})
        results: list[str] = []
        inserts: list[int] = []
        now = utcnow()
        for position, (article, canonical, guid) in enumerate(items):
            known = stored.get(article.id)
            if known is None:
                inserts.append(position)
                results.append("new")
                stored[article.id] = (article.fingerprint, 1, article.feed_id)
            elif known[0] == article.fingerprint or not _may_update(known[2], article.feed_id):
                results.append("seen")
            else:
                values = _article_values(article, canonical, guid, now)
                conn.execute(update(articles).where(articles.c.id == article.id).values(version=known[1] + 1, **values))
                stored[article.id] = (article.fingerprint, known[1] + 1, article.feed_id)
                results.append("updated")
        rows = [
            {"id": items[i][0].id, "first_seen": now, "version": 1, **_article_values(*items[i], now)} for i in inserts
        ]
        if rows:
            # ON CONFLICT: another worker may have stored some of these since we looked; RETURNING tells which
            # rows are ours (rowcount is -1 for INSERT … ON CONFLICT through psycopg).
            statement = (
                self.insert(articles).on_conflict_do_nothing(index_elements=[articles.c.id]).returning(articles.c.id)
            )
            added = set(conn.execute(statement, rows).scalars())
            for i in inserts:
                if items[i][0].id not in added:
                    article, canonical, guid = items[i]
                    results[i] = _save_article(self, conn, article, canonical_url=canonical, guid=guid)
        return results

    def match_articles(
        self, *, ids: set[str], guids: set[str], canonical_urls: set[str], fingerprints: set[str], feed_id: str
    ) -> ArticleMatches:
        """Existing articles (id → fingerprint) met by any of these keys; guids match within one feed only.

        One query for all four keys (a feed's worth fits in one; larger sets go `MATCH_CHUNK` per key at a
        time): it runs once per feed, and four statements cost more than their index lookups. Where two
        stored articles share a key, the one first seen wins, whatever order the database returns rows in."""
        matches = ArticleMatches()
        keys = [
            list(_chunks(sorted(v for v in values if v), MATCH_CHUNK))
            for values in (ids, guids, canonical_urls, fingerprints)
        ]
        with self.engine.connect() as conn:
            rows = [
                row
                for chunks in zip_longest(*keys, fillvalue=[])
                for row in conn.execute(_MATCH_ANY, dict(zip(_MATCH_KEYS, chunks, strict=True)))
            ]
        for row in sorted(rows, key=attrgetter("first_seen", "id")):
            matches.add(row, feed_id)
        return matches

    def article_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return {r.id for r in conn.execute(select(articles.c.id))}

    # feed state -----------------------------------------------------------------------------------

    def feed_state(self, feed_url: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            row = conn.execute(select(feed_state).where(feed_state.c.feed_url == feed_url)).mappings().first()
        return dict(row) if row else {}

    def all_feed_states(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(feed_state).order_by(feed_state.c.feed_id)).mappings()]

    def feed_validators(self) -> dict[str, dict[str, str | None]]:
        """Every feed's ETag and Last-Modified by feed URL: all a run needs before its requests."""
        query = select(feed_state.c.feed_url, feed_state.c.etag, feed_state.c.last_modified)
        with self.engine.connect() as conn:
            return {url: {"etag": etag, "last_modified": modified} for url, etag, modified in conn.execute(query)}

    def feeds_read_before(self) -> set[str]:
        """URLs of the feeds read successfully at least once (a feed missing here is seen for the first time)."""
        query = select(feed_state.c.feed_url).where(feed_state.c.last_ok_at.is_not(None))
        with self.engine.connect() as conn:
            return {url for (url,) in conn.execute(query)}

    def record_feeds_not_modified(self, feeds: list[tuple[str, str]]) -> None:
        """Mark many (feed_url, feed_id) as answered 304, in one transaction.

        A 304 answers validators we stored, so the rows exist: one UPDATE per 500 URLs, the time bound
        once (an upsert per row formatted two timestamps per row). Should a row be missing (a server
        answering 304 to a request without validators), the upsert per row runs instead."""
        now = utcnow()
        values = {"last_status": "not_modified", "last_error": None, "last_fetched_at": now, "last_ok_at": now}
        urls = sorted({feed_url for feed_url, _ in feeds})
        mark = update(feed_state).where(feed_state.c.feed_url.in_(bindparam("urls", expanding=True))).values(**values)
        with self.begin() as conn:
            updated = sum(conn.execute(mark, {"urls": chunk}).rowcount for chunk in _chunks(urls))
            if updated == len(urls):
                return
            upsert = self._feed_state_upsert(tuple(sorted(values)))  # feed_id is inserted, never updated
            rows = [{"feed_url": feed_url, "feed_id": feed_id, **values} for feed_url, feed_id in feeds]
            for chunk in _chunks(rows):
                conn.execute(upsert, chunk)

    def record_feed(self, feed_url: str, *, conn: Connection | None = None, **values: Any) -> None:
        """Upsert one feed's state; with `conn` (from `begin()`) inside the caller's write transaction."""
        values["last_fetched_at"] = utcnow()
        statement = self._feed_state_upsert(tuple(sorted(values)))
        params = {"feed_url": feed_url, **values}
        if conn is None:
            with self.begin() as own:
                own.execute(statement, params)
        else:
            conn.execute(statement, params)

    def _feed_state_upsert(self, columns: tuple[str, ...]) -> Any:
        """INSERT … ON CONFLICT DO UPDATE of these columns to the inserted values, built once per column set
        (coercing literal values into a new statement on every call cost more than running it)."""
        statement = self._upserts.get(columns)
        if statement is None:
            insert_ = self.insert(feed_state)
            statement = insert_.on_conflict_do_update(
                index_elements=[feed_state.c.feed_url], set_={name: insert_.excluded[name] for name in columns}
            )
            self._upserts[columns] = statement
        return statement

    # unsubscribes ---------------------------------------------------------------------------------

    def unsubscribe(self, audience: str, email: str, method: str) -> bool:
        """Record an unsubscribe; returns False when it was already recorded."""
        with self.begin() as conn:
            added = conn.execute(
                self.insert(unsubscribes)
                .values(audience=audience, email=email.lower(), at=utcnow(), method=method)
                .on_conflict_do_nothing(index_elements=[unsubscribes.c.audience, unsubscribes.c.email])
                .returning(unsubscribes.c.email)
            ).first()
        return added is not None

    def unsubscribed(self, audience: str) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(unsubscribes.c.email).where(unsubscribes.c.audience == audience))
            return {r.email for r in rows}

    # suppressions (written by flows/collect) ---------------------------------------------------------

    def suppressed(self) -> dict[str, str]:
        """Every address under suppression (lower case) → the reason; the send path never mails them."""
        query = select(suppressions.c.email, suppressions.c.reason).where(suppressions.c.lifted_at.is_(None))
        with self.engine.connect() as conn:
            return {r.email: r.reason for r in conn.execute(query)}

    # readiness events -----------------------------------------------------------------------------

    def ready_announced(self, slug: str, content_hash: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(ready_events.c.event_id).where(
                    ready_events.c.slug == slug, ready_events.c.content_hash == content_hash
                )
            ).first()
        return row is not None

    def record_ready_announced(self, slug: str, content_hash: str, event_id: str) -> bool:
        """Record an emitted readiness event; returns False when another process recorded it first."""
        statement = (
            self.insert(ready_events)
            .values(slug=slug, content_hash=content_hash, event_id=event_id, emitted_at=utcnow())
            .on_conflict_do_nothing()
            .returning(ready_events.c.slug)
        )
        with self.begin() as conn:
            return conn.execute(statement).first() is not None  # RETURNING: psycopg's rowcount is -1 here

    def forget_ready_announced(self, slug: str, content_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                ready_events.delete().where(ready_events.c.slug == slug, ready_events.c.content_hash == content_hash)
            )


def _article_values(article: Article, canonical_url: str, guid: str, now: datetime) -> dict[str, Any]:
    return {
        "url": article.url,
        "canonical_url": canonical_url,
        "guid": guid,
        "feed_id": article.feed_id,
        "title": article.title,
        "site": article.site,
        "author": article.author,
        "published": article.published.replace(tzinfo=None) if article.published else None,
        "summary": article.summary,
        "content_html": article.content_html,
        "paragraphs": json.dumps([p.model_dump(mode="json") for p in article.paragraphs], ensure_ascii=False),
        "fingerprint": article.fingerprint,
        "updated_at": now,
    }


def _save_article(store: Store, conn: Connection, article: Article, *, canonical_url: str, guid: str) -> str:
    """Insert or update one article inside the caller's write transaction: 'new', 'updated' or 'seen'.

    ON CONFLICT makes two workers storing the same article at once end with one row, one of them 'new';
    RETURNING, not rowcount, because psycopg reports -1 for INSERT … ON CONFLICT through SQLAlchemy 2.1."""
    now = utcnow()
    values = _article_values(article, canonical_url, guid, now)
    added = conn.execute(
        store.insert(articles)
        .values(id=article.id, first_seen=now, version=1, **values)
        .on_conflict_do_nothing(index_elements=[articles.c.id])
        .returning(articles.c.id)
    ).first()
    if added is not None:
        return "new"
    # The fingerprint and owner tests are in the UPDATE itself: a concurrent identical update changes nothing.
    owner_may_update = or_(
        articles.c.feed_id.is_(None), articles.c.feed_id == "", articles.c.feed_id == article.feed_id
    )
    changed = conn.execute(
        update(articles)
        .where(articles.c.id == article.id, articles.c.fingerprint != article.fingerprint, owner_may_update)
        .values(version=articles.c.version + 1, **values)
    ).rowcount
    return "updated" if changed else "seen"


def _may_update(stored_feed: str, incoming_feed: str) -> bool:
    """An article brought by one feed is not overwritten by another feed's (or a single URL's) version of it."""
    return not stored_feed or stored_feed == incoming_feed


@dataclass
class ArticleMatches:
    """Stored articles found by identity keys, for resolving a feed's entries to existing ids."""

    fingerprint_of: dict[str, str] = field(default_factory=dict)
    feed_of: dict[str, str] = field(default_factory=dict)
    by_guid: dict[str, str] = field(default_factory=dict)
    by_canonical_url: dict[str, str] = field(default_factory=dict)
    by_fingerprint: dict[str, str] = field(default_factory=dict)

    def add(self, row: Any, feed_id: str) -> None:
        self.fingerprint_of[row.id] = row.fingerprint or ""
        self.feed_of[row.id] = row.feed_id or ""
        if row.guid and row.feed_id == feed_id:
            self.by_guid.setdefault(row.guid, row.id)
        if row.canonical_url:
            self.by_canonical_url.setdefault(row.canonical_url, row.id)
        if row.fingerprint:
            self.by_fingerprint.setdefault(row.fingerprint, row.id)


# Built once: statements with an expanding IN parameter are compiled once and cached by SQLAlchemy; building
# `column.in_(values)` anew for every feed cost more than running the query.
_MATCH_COLUMNS = (
    articles.c.id,
    articles.c.fingerprint,
    articles.c.guid,
    articles.c.canonical_url,
    articles.c.feed_id,
    articles.c.first_seen,
)
# Four keys of this many values bind 960 parameters at most, under the 999 that SQLite before 3.32 allows.
MATCH_CHUNK = 240
_MATCH_KEYS = ("ids", "guids", "canonical_urls", "fingerprints")
_MATCH_ANY = select(*_MATCH_COLUMNS).where(
    or_(
        *(
            column.in_(bindparam(key, expanding=True))
            for key, column in zip(
                _MATCH_KEYS,
                (articles.c.id, articles.c.guid, articles.c.canonical_url, articles.c.fingerprint),
                strict=True,
            )
        )
    )
)
_STORED_VERSIONS = select(articles.c.id, articles.c.fingerprint, articles.c.version, articles.c.feed_id).where(
    articles.c.id.in_(bindparam("values", expanding=True))
)


def _chunks(values: list[T], size: int = 500) -> Iterator[list[T]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _article_from_row(row: Any) -> Article:
    return Article(
        id=row["id"],
        url=row["url"],
        title=row["title"],
        site=row["site"] or "",
        author=row["author"] or "",
        published=row["published"],
        feed_id=row["feed_id"] or "",
        summary=row["summary"] or "",
        content_html=row["content_html"] or "",
        paragraphs=tuple(Paragraph(**p) for p in json.loads(row["paragraphs"] or "[]")),
        fingerprint=row["fingerprint"] or "",
    )


_STORES: dict[tuple[str, bool], Store] = {}


def open_store(url: str, *, read_only: bool = False) -> Store:
    """One Store per URL (and mode) per process (engines are pooled and thread-safe)."""
    store = _STORES.get((url, read_only))
    if store is None:
        store = _STORES[(url, read_only)] = Store(url, read_only=read_only)
    return store


def close_stores() -> None:
    """Dispose every cached Store's connection pool (tests, and processes about to fork)."""
    while _STORES:
        _STORES.popitem()[1].close()

"""The store: articles, feed state, the send ledger, unsubscribes and published pages.

SQLAlchemy 2 Core on SQLite (WAL) by default; the same code runs on PostgreSQL through
BRIEFING_DATABASE_URL. The schema is created on first use and versioned in `schema_version`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from flows.models import Article, Paragraph

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
metadata = MetaData()


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

ledger = Table(
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
)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


class Store:
    """Typed access to the tables; one instance per process and database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.is_sqlite = url.startswith("sqlite")
        self.migrate()

    def migrate(self) -> None:
        metadata.create_all(self.engine)
        self._add_missing_columns()
        with self.engine.begin() as conn:
            current = conn.execute(select(func.max(schema_version.c.version))).scalar()
            if current is None:
                conn.execute(insert(schema_version).values(version=SCHEMA_VERSION))

    def _add_missing_columns(self) -> None:
        """Columns and indexes added to a table after a database was created are added in place (portable DDL)."""
        inspector = inspect(self.engine)
        with self.engine.begin() as conn:
            for table in metadata.sorted_tables:
                present = {c["name"] for c in inspector.get_columns(table.name)}
                for column in table.columns:
                    if column.name in present:
                        continue
                    kind = column.type.compile(dialect=self.engine.dialect)
                    logger.info("adding column %s.%s to the store", table.name, column.name)
                    conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
                for index in table.indexes:
                    index.create(conn, checkfirst=True)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

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
        with self.engine.begin() as conn:
            return _save_article(conn, article, canonical_url=canonical_url, guid=guid)

    def save_articles(self, items: list[tuple[Article, str, str]]) -> list[str]:
        """Save many (article, canonical_url, guid) in one transaction; 'new' / 'updated' / 'seen' for each.

        New articles go in as one multi-row insert; if another writer stored one of them meanwhile, the
        inserts are redone one by one so that each still gets its true result.
        """
        with self.engine.begin() as conn:
            stored: dict[str, tuple[str, int, str]] = {}
            columns = (articles.c.id, articles.c.fingerprint, articles.c.version, articles.c.feed_id)
            for chunk in _chunks(sorted({a.id for a, _c, _g in items})):
                query = select(*columns).where(articles.c.id.in_(chunk))
                stored.update({r.id: (r.fingerprint, r.version, r.feed_id or "") for r in conn.execute(query)})
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
                    conn.execute(
                        update(articles).where(articles.c.id == article.id).values(version=known[1] + 1, **values)
                    )
                    stored[article.id] = (article.fingerprint, known[1] + 1, article.feed_id)
                    results.append("updated")
            rows = [
                {"id": items[i][0].id, "first_seen": now, "version": 1, **_article_values(*items[i], now)}
                for i in inserts
            ]
            try:
                if rows:
                    with conn.begin_nested():
                        conn.execute(insert(articles), rows)
            except IntegrityError:
                for i in inserts:
                    article, canonical, guid = items[i]
                    results[i] = _save_article(conn, article, canonical_url=canonical, guid=guid)
            return results

    def match_articles(
        self, *, ids: set[str], guids: set[str], canonical_urls: set[str], fingerprints: set[str], feed_id: str
    ) -> ArticleMatches:
        """Existing articles (id → fingerprint) met by any of these keys; guids match within one feed only."""
        matches = ArticleMatches()
        columns = (articles.c.id, articles.c.fingerprint, articles.c.guid, articles.c.canonical_url, articles.c.feed_id)
        with self.engine.connect() as conn:
            for column, values in (
                (articles.c.id, ids),
                (articles.c.guid, guids),
                (articles.c.canonical_url, canonical_urls),
                (articles.c.fingerprint, fingerprints),
            ):
                for chunk in _chunks(sorted(v for v in values if v)):
                    for row in conn.execute(select(*columns).where(column.in_(chunk))):
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

    def record_feeds_not_modified(self, feeds: list[tuple[str, str]]) -> None:
        """Mark many (feed_url, feed_id) as answered 304, in one transaction."""
        now = utcnow()
        values = {"last_status": "not_modified", "last_error": None, "last_fetched_at": now, "last_ok_at": now}
        with self.engine.begin() as conn:
            for feed_url, feed_id in feeds:
                done = conn.execute(update(feed_state).where(feed_state.c.feed_url == feed_url).values(**values))
                if not done.rowcount:
                    conn.execute(insert(feed_state).values(feed_url=feed_url, feed_id=feed_id, **values))

    def record_feed(self, feed_url: str, **values: Any) -> None:
        values["last_fetched_at"] = utcnow()
        with self.engine.begin() as conn:
            done = conn.execute(update(feed_state).where(feed_state.c.feed_url == feed_url).values(**values)).rowcount
            if not done:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(feed_state).values(feed_url=feed_url, **values))
                except IntegrityError:
                    conn.execute(update(feed_state).where(feed_state.c.feed_url == feed_url).values(**values))

    # unsubscribes ---------------------------------------------------------------------------------

    def unsubscribe(self, audience: str, email: str, method: str) -> bool:
        """Record an unsubscribe; returns False when it was already recorded."""
        with self.engine.begin() as conn:
            exists = conn.execute(
                select(unsubscribes.c.at).where(
                    unsubscribes.c.audience == audience, unsubscribes.c.email == email.lower()
                )
            ).first()
            if exists:
                return False
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(unsubscribes).values(audience=audience, email=email.lower(), at=utcnow(), method=method)
                    )
            except IntegrityError:
                return False
            return True

    def unsubscribed(self, audience: str) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(unsubscribes.c.email).where(unsubscribes.c.audience == audience))
            return {r.email for r in rows}


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


def _save_article(conn: Connection, article: Article, *, canonical_url: str, guid: str) -> str:
    now = utcnow()
    values = _article_values(article, canonical_url, guid, now)
    row = conn.execute(
        select(articles.c.fingerprint, articles.c.version, articles.c.feed_id).where(articles.c.id == article.id)
    ).first()
    if row is None:
        try:
            with conn.begin_nested():
                conn.execute(insert(articles).values(id=article.id, first_seen=now, version=1, **values))
            return "new"
        except IntegrityError:
            return "seen"  # another worker stored it a moment ago
    if row.fingerprint == article.fingerprint or not _may_update(row.feed_id or "", article.feed_id):
        return "seen"
    conn.execute(update(articles).where(articles.c.id == article.id).values(version=row.version + 1, **values))
    return "updated"


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


def _chunks(values: list[str], size: int = 500) -> Iterator[list[str]]:
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


_STORES: dict[str, Store] = {}


def open_store(url: str) -> Store:
    """One Store per URL per process (engines are pooled and thread-safe)."""
    store = _STORES.get(url)
    if store is None:
        store = _STORES[url] = Store(url)
    return store

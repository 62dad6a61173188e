"""The store, the one data layer: every table of the product is reached through the repositories here.

SQLAlchemy 2 Core on SQLite (WAL) by default; the same code runs on PostgreSQL (psycopg 3) through
BRIEFING_DATABASE_URL. schema.py defines every table; Alembic migrations (migrate.py, migrations/) bring a
database to it when a Store opens for writing, under a migration lock.

Repositories, one per table or group of tables, each the only code that touches its tables:
- articles.py, feeds.py, unsubscribes.py, ready_events.py, suppressions.py: their reads and writes are methods of
  `Store` (`store.get_article(...)`, `store.record_feed(...)`, `store.suppressed()`, ...);
- ledger.py (the send ledger: exactly-once lives there), published.py, discussion.py, suppressions.py, mailbox.py,
  draft_cache.py, unsubscribes.py: functions that take the store, and a connection when they write inside the
  caller's transaction (`briefing collect` records a message and its effect in one).

`open_store` gives one Store per URL and mode per process.
"""

from __future__ import annotations

from flows.core.store.articles import ArticleMatches, ArticleRepository
from flows.core.store.base import utcnow
from flows.core.store.feeds import FeedRepository
from flows.core.store.ready_events import ReadyEventRepository
from flows.core.store.suppressions import SuppressionRepository
from flows.core.store.unsubscribes import UnsubscribeRepository

__all__ = ["ArticleMatches", "Store", "close_stores", "open_store", "utcnow"]


class Store(ArticleRepository, FeedRepository, UnsubscribeRepository, SuppressionRepository, ReadyEventRepository):
    """One database: its engine and transactions (`flows.core.store.base.Database`) and the repositories'
    methods. One instance per process and database URL (`open_store`)."""


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

"""The feed state repository: per feed URL its validators (ETag, Last-Modified), last status and counts.

Feed state is an INSERT … ON CONFLICT DO UPDATE, so two workers recording the same feed keep one row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from flows.core.store.base import Database, chunks, utcnow
from flows.core.store.schema import feed_state


class FeedRepository(Database):
    """The `feed_state` table (a part of `flows.core.store.Store`)."""

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
            updated = sum(conn.execute(mark, {"urls": chunk}).rowcount for chunk in chunks(urls))
            if updated == len(urls):
                return
            upsert = self._feed_state_upsert(tuple(sorted(values)))  # feed_id is inserted, never updated
            rows = [{"feed_url": feed_url, "feed_id": feed_id, **values} for feed_url, feed_id in feeds]
            for chunk in chunks(rows):
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


"""The readiness events repository: which (briefing, content hash) versions were announced to Prefect, so a
restart of `briefing serve` or a second watcher never announces the same version twice."""

from __future__ import annotations

from sqlalchemy import select

from flows.core.store.base import Database, utcnow
from flows.core.store.schema import ready_events


class ReadyEventRepository(Database):
    """The `ready_events` table (a part of `flows.core.store.Store`)."""

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


"""The unsubscribes repository: (audience, address) pairs that get nothing more from that audience.

Recording one also skips the address's ledger rows of that audience not yet handed to a server, in the same
transaction (`record`), whether it comes from a link, `briefing unsubscribe` or a mailto message.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from flows.core.store import ledger
from flows.core.store.base import Database, utcnow
from flows.core.store.schema import unsubscribes


def _add(store: Database) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING email, of the store's dialect (built once per dialect)."""
    statement = _ADD.get(store.is_sqlite)
    if statement is None:
        statement = _ADD[store.is_sqlite] = (
            store.insert(unsubscribes)
            .on_conflict_do_nothing(index_elements=[unsubscribes.c.audience, unsubscribes.c.email])
            .returning(unsubscribes.c.email)
        )
    return statement


_ADD: dict[bool, Any] = {}


def record(store: Database, audience: str, email: str, method: str, conn: Connection | None = None) -> tuple[bool, int]:
    """Record an unsubscribe and skip the address's unsent ledger rows of that audience. Returns (recorded now,
    rows skipped); with `conn`, inside the caller's transaction."""
    if conn is None:
        with store.begin() as own:
            return record(store, audience, email, method, own)
    values = {"audience": audience, "email": email.lower(), "at": utcnow(), "method": method}
    added = conn.execute(_add(store), values).first()
    skipped = ledger.skip_unsubscribed(store, audience, email, method, conn=conn)
    return added is not None, skipped


class UnsubscribeRepository(Database):
    """The `unsubscribes` table (a part of `flows.core.store.Store`)."""

    def unsubscribe(self, audience: str, email: str, method: str) -> bool:
        """Record an unsubscribe; returns False when it was already recorded."""
        values = {"audience": audience, "email": email.lower(), "at": utcnow(), "method": method}
        with self.begin() as conn:
            return conn.execute(_add(self), values).first() is not None

    def unsubscribed(self, audience: str) -> set[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(unsubscribes.c.email).where(unsubscribes.c.audience == audience))
            return {r.email for r in rows}

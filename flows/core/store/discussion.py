"""The discussion entries repository: readers' replies wait as `pending` until an editor approves or rejects them.

`briefing collect` adds them (`pending_entry` rows, inserted with `ADD_ENTRY` in the transaction that records
their messages); `briefing discussion` and the preview list and decide them; the archive shows the approved ones
(flows/core/discussion.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from flows.core.store.base import Database, utcnow
from flows.core.store.schema import discussion_entries

logger = logging.getLogger(__name__)

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
STATUSES = (PENDING, APPROVED, REJECTED)


@dataclass(frozen=True)
class Entry:
    id: int
    slug: str
    audience: str
    recipient: str
    sender_email: str
    sender_name: str
    received_at: datetime
    text: str
    html: str
    status: str
    decided_at: datetime | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "slug": self.slug,
            "audience": self.audience,
            "sender": self.sender_name,
            "sender_email": self.sender_email,
            "received_at": self.received_at.isoformat(sep=" ", timespec="seconds"),
            "status": self.status,
            "text": self.text,
        }


def pending_entry(
    *,
    digest: str,
    slug: str,
    audience: str,
    recipient: str,
    sender_email: str,
    sender_name: str,
    received_at: datetime,
    text: str,
    html: str,
) -> dict[str, Any]:
    """The row of a new pending entry, for `ADD_ENTRY` (collect inserts a batch's entries at once)."""
    return {
        "message_digest": digest,
        "slug": slug,
        "audience": audience,
        "recipient": recipient,
        "sender_email": sender_email,
        "sender_name": sender_name[:500],
        "received_at": received_at,
        "text": text,
        "html": html,
        "status": PENDING,
        "created_at": utcnow(),
    }


ADD_ENTRY = insert(discussion_entries)


def add_entries(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert pending entries (`pending_entry` rows) in the caller's transaction (the one recording their
    messages)."""
    conn.execute(ADD_ENTRY, rows)


def _entry(row: object) -> Entry:
    return Entry(
        id=row.id,  # type: ignore[attr-defined]
        slug=row.slug,  # type: ignore[attr-defined]
        audience=row.audience,  # type: ignore[attr-defined]
        recipient=row.recipient or "",  # type: ignore[attr-defined]
        sender_email=row.sender_email or "",  # type: ignore[attr-defined]
        sender_name=row.sender_name or "",  # type: ignore[attr-defined]
        received_at=row.received_at,  # type: ignore[attr-defined]
        text=row.text,  # type: ignore[attr-defined]
        html=row.html or "",  # type: ignore[attr-defined]
        status=row.status,  # type: ignore[attr-defined]
        decided_at=row.decided_at,  # type: ignore[attr-defined]
    )


def list_entries(store: Database, *, status: str | None = PENDING, slug: str | None = None) -> list[Entry]:
    query = select(discussion_entries).order_by(discussion_entries.c.received_at, discussion_entries.c.id)
    if status:
        query = query.where(discussion_entries.c.status == status)
    if slug:
        query = query.where(discussion_entries.c.slug == slug)
    with store.engine.connect() as conn:
        return [_entry(r) for r in conn.execute(query)]


def decide(store: Database, entry_ids: list[int], status: str) -> dict[int, str]:
    """Approve or reject entries; returns id → what happened (`approved`, `rejected`, `unchanged`, `no such
    entry`). Deciding again is allowed: an approved entry can be rejected later, and the reverse."""
    if status not in (APPROVED, REJECTED):
        raise ValueError(f"status must be {APPROVED} or {REJECTED}")
    results: dict[int, str] = {}
    with store.begin() as conn:
        for entry_id in entry_ids:
            current = conn.execute(
                select(discussion_entries.c.status).where(discussion_entries.c.id == entry_id)
            ).scalar()
            if current is None:
                results[entry_id] = "no such entry"
            elif current == status:
                results[entry_id] = "unchanged"
            else:
                conn.execute(
                    update(discussion_entries)
                    .where(discussion_entries.c.id == entry_id)
                    .values(status=status, decided_at=utcnow())
                )
                results[entry_id] = status
    logger.info("discussion entries %s: %s", status, results)
    return results

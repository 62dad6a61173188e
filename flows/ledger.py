"""The send ledger: one row per (briefing, audience, recipient, content hash); exactly-once lives here.

States: queued → sending → sent | deferred | failed | uncertain. A worker leases a batch of queued/deferred
rows (claimed_by), flips each row to `sending` just before handing it to the transport and marks it from the
server's reply. A row left `sending` by a dead worker is `uncertain`: the server may or may not have it.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from flows.store import Store, ledger, utcnow

logger = logging.getLogger(__name__)

QUEUED, SENDING, SENT, DEFERRED, FAILED, UNCERTAIN = "queued", "sending", "sent", "deferred", "failed", "uncertain"
STATES = (QUEUED, SENDING, SENT, DEFERRED, FAILED, UNCERTAIN)
LEASE = timedelta(minutes=10)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LedgerRow:
    id: int
    slug: str
    audience: str
    recipient: str
    content_hash: str
    message_id: str
    state: str
    attempts: int
    last_reply: str


def _row(r: object) -> LedgerRow:
    return LedgerRow(
        r.id,
        r.slug,
        r.audience,
        r.recipient,
        r.content_hash,
        r.message_id,
        r.state,  # type: ignore[attr-defined]
        r.attempts,
        r.last_reply or "",
    )  # type: ignore[attr-defined]


def enqueue(
    store: Store,
    slug: str,
    audience: str,
    content_hash: str,
    recipients: dict[str, str],
    *,
    resend_updated: bool = False,
) -> int:
    """Queue one row per recipient (email → Message-ID). Returns how many rows were added.

    A recipient who already has a row for an earlier content hash of this briefing is not queued again
    unless `resend_updated`: an edited briefing is not re-sent by accident.
    """
    now = utcnow()
    with store.begin() as conn:
        existing = conn.execute(
            select(ledger.c.recipient, ledger.c.content_hash).where(
                ledger.c.slug == slug, ledger.c.audience == audience
            )
        ).all()
        same_hash = {r.recipient for r in existing if r.content_hash == content_hash}
        any_hash = {r.recipient for r in existing}
        skip = same_hash if resend_updated else any_hash
        rows = [
            {
                "slug": slug,
                "audience": audience,
                "recipient": email,
                "content_hash": content_hash,
                "message_id": mid,
                "state": QUEUED,
                "attempts": 0,
                "created_at": now,
                "updated_at": now,
            }
            for email, mid in recipients.items()
            if email not in skip
        ]
        if not rows:
            return 0
        try:
            with conn.begin_nested():
                conn.execute(insert(ledger), rows)
            return len(rows)
        except IntegrityError:
            pass  # a concurrent enqueue won the race for some rows: insert one by one
    added = 0
    for row in rows:
        try:
            with store.begin() as conn:
                conn.execute(insert(ledger).values(**row))
            added += 1
        except IntegrityError:
            continue
    return added


def mark_dead_workers_uncertain(store: Store) -> int:
    """Rows left `sending` by a process on this host that no longer exists, or past the lease, become uncertain;
    rows it had leased but not started go back to the queue."""
    host = socket.gethostname()
    now = utcnow()
    changed = 0
    with store.begin() as conn:
        claims = (
            conn.execute(
                select(ledger.c.claimed_by)
                .where(ledger.c.claimed_by.is_not(None), ledger.c.state.in_((QUEUED, DEFERRED, SENDING)))
                .distinct()
            )
            .scalars()
            .all()
        )
        for claim in claims:
            if not _claim_is_dead(claim, host):
                continue
            changed += conn.execute(
                update(ledger)
                .where(ledger.c.claimed_by == claim, ledger.c.state == SENDING)
                .values(
                    state=UNCERTAIN, updated_at=now, last_reply="the sending process died before the server's reply"
                )
            ).rowcount
            conn.execute(
                update(ledger)
                .where(ledger.c.claimed_by == claim, ledger.c.state.in_((QUEUED, DEFERRED)))
                .values(claimed_by=None, claimed_at=None)
            )
        stale = now - LEASE
        changed += conn.execute(
            update(ledger)
            .where(ledger.c.state == SENDING, ledger.c.claimed_at < stale)
            .values(state=UNCERTAIN, updated_at=now, last_reply="lease expired while sending")
        ).rowcount
    return changed


def _claim_is_dead(claim: str, host: str) -> bool:
    parts = claim.split(":")
    if len(parts) < 3 or parts[0] != host:
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def claim_batch(store: Store, slug: str, audience: str, worker: str, limit: int) -> list[LedgerRow]:
    """Lease up to `limit` sendable rows for this worker; two workers never lease the same row."""
    now = utcnow()
    stale = now - LEASE
    sendable = and_(
        ledger.c.slug == slug,
        ledger.c.audience == audience,
        or_(
            ledger.c.state == QUEUED,
            and_(ledger.c.state == DEFERRED, or_(ledger.c.next_attempt_at.is_(None), ledger.c.next_attempt_at <= now)),
        ),
        or_(ledger.c.claimed_by.is_(None), ledger.c.claimed_at < stale),
    )
    with store.begin() as conn:
        query = select(ledger.c.id).where(sendable).order_by(ledger.c.id).limit(limit)
        if not store.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        else:
            conn.exec_driver_sql("SELECT 1")  # SQLite: the UPDATE below takes the single write lock
        ids = conn.execute(query).scalars().all()
        if not ids:
            return []
        conn.execute(update(ledger).where(ledger.c.id.in_(ids), sendable).values(claimed_by=worker, claimed_at=now))
        rows = conn.execute(
            select(ledger).where(ledger.c.id.in_(ids), ledger.c.claimed_by == worker).order_by(ledger.c.id)
        ).all()
    return [_row(r) for r in rows]


def start_sending(store: Store, row_id: int, worker: str) -> bool:
    """Flip one leased row to `sending` right before the transport gets it. False: the lease was lost."""
    with store.begin() as conn:
        return (
            conn.execute(
                update(ledger)
                .where(
                    ledger.c.id == row_id,
                    ledger.c.claimed_by == worker,
                    ledger.c.state.in_((QUEUED, DEFERRED, UNCERTAIN)),
                )
                .values(state=SENDING, attempts=ledger.c.attempts + 1, updated_at=utcnow())
            ).rowcount
            == 1
        )


def finish(store: Store, row_id: int, state: str, reply: str = "", retry_at: datetime | None = None) -> None:
    with store.begin() as conn:
        conn.execute(
            update(ledger)
            .where(ledger.c.id == row_id)
            .values(
                state=state,
                last_reply=reply[:2000],
                next_attempt_at=retry_at,
                updated_at=utcnow(),
                claimed_by=None if state != SENDING else ledger.c.claimed_by,
            )
        )


def release(store: Store, worker: str) -> None:
    """Give back leased rows this worker did not start (clean shutdown)."""
    with store.begin() as conn:
        conn.execute(
            update(ledger)
            .where(ledger.c.claimed_by == worker, ledger.c.state.in_((QUEUED, DEFERRED)))
            .values(claimed_by=None, claimed_at=None)
        )


def requeue_uncertain(store: Store, slug: str | None = None, audience: str | None = None) -> int:
    conditions = [ledger.c.state == UNCERTAIN]
    if slug:
        conditions.append(ledger.c.slug == slug)
    if audience:
        conditions.append(ledger.c.audience == audience)
    with store.begin() as conn:
        return conn.execute(
            update(ledger).where(*conditions).values(state=QUEUED, claimed_by=None, updated_at=utcnow())
        ).rowcount


def counts(store: Store, slug: str | None = None) -> dict[tuple[str, str, str], int]:
    """(slug, audience, state) → rows."""
    query = select(ledger.c.slug, ledger.c.audience, ledger.c.state, func.count()).group_by(
        ledger.c.slug, ledger.c.audience, ledger.c.state
    )
    if slug:
        query = query.where(ledger.c.slug == slug)
    with store.engine.connect() as conn:
        return {(r[0], r[1], r[2]): r[3] for r in conn.execute(query)}


def rows_in_state(store: Store, state: str, slug: str | None = None) -> list[LedgerRow]:
    query = select(ledger).where(ledger.c.state == state).order_by(ledger.c.id)
    if slug:
        query = query.where(ledger.c.slug == slug)
    with store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]


def summarise(store: Store, slug: str | None = None) -> Counter[str]:
    totals: Counter[str] = Counter()
    for (_s, _a, state), n in counts(store, slug).items():
        totals[state] += n
    return totals

"""The send ledger: one row per (briefing, audience, recipient, content hash); exactly-once lives here.

States: queued → sending → sent | deferred | failed | uncertain, plus skipped (unsubscribed or removed from the
list before the row was sent) and suppressed (the address bounced or complained; see flows/collect). A worker
leases a batch of queued/deferred rows (claimed_by = host:pid:uuid), flips each row to `sending` in its own
committed transaction just before handing it to the transport, and marks it from the server's reply. A row left
`sending` by a dead worker becomes `uncertain`: the server may or may not have it, so it is reported and only
resent when the editor asks (`--resend-uncertain`, same Message-ID).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, bindparam, func, insert, or_, select, true, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from flows.core.store.base import Database, utcnow
from flows.core.store.schema import send_ledger

logger = logging.getLogger(__name__)

QUEUED, SENDING, SENT, DEFERRED, FAILED, UNCERTAIN, SKIPPED = (
    "queued",
    "sending",
    "sent",
    "deferred",
    "failed",
    "uncertain",
    "skipped",
)
SUPPRESSED = "suppressed"  # the address bounced or complained (flows/collect): never sent while suppressed
STATES = (QUEUED, SENDING, SENT, DEFERRED, FAILED, UNCERTAIN, SKIPPED, SUPPRESSED)
PENDING = (QUEUED, DEFERRED)
# A lease outlives any single SMTP exchange (timeouts are seconds); a row `sending` past it has a dead worker.
LEASE = timedelta(minutes=10)


_SQLITE_WRITES = threading.Lock()


@contextmanager
def _write(store: Database, held: Connection | None = None) -> Iterator[Connection]:
    """A write transaction, on `held` (a `store.writer()` connection) when given. On SQLite the threads of this
    process take turns here: waiting on a lock is cheaper than SQLite's busy handler, which sleeps in steps of
    milliseconds when writers collide."""
    with _SQLITE_WRITES if store.is_sqlite else nullcontext():
        if held is None:
            with store.begin() as conn:
                yield conn
        else:
            with held.begin():
                yield held


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


@dataclass(frozen=True)
class Entry:
    """A recipient to put in the ledger: queued to be sent, or recorded as skipped with the reason."""

    recipient: str
    message_id: str
    state: str = QUEUED
    reason: str = ""


def _row(r: object) -> LedgerRow:
    return LedgerRow(
        id=r.id,  # type: ignore[attr-defined]
        slug=r.slug,  # type: ignore[attr-defined]
        audience=r.audience,  # type: ignore[attr-defined]
        recipient=r.recipient,  # type: ignore[attr-defined]
        content_hash=r.content_hash,  # type: ignore[attr-defined]
        message_id=r.message_id,  # type: ignore[attr-defined]
        state=r.state,  # type: ignore[attr-defined]
        attempts=r.attempts,  # type: ignore[attr-defined]
        last_reply=r.last_reply or "",  # type: ignore[attr-defined]
    )


def enqueue(
    store: Database,
    slug: str,
    audience: str,
    content_hash: str,
    entries: list[Entry] | dict[str, str],
    *,
    resend_updated: bool = False,
) -> int:
    """Add one row per new recipient. Returns how many rows were added as queued.

    A recipient who already has a row for an earlier content hash is not queued again unless `resend_updated`:
    an edited briefing is not re-sent by accident. Rows of an earlier hash that were never handed to a server
    (queued or deferred) move to the current hash and Message-ID: that recipient gets the current version.
    """
    if isinstance(entries, dict):  # recipient → Message-ID, all to be queued
        entries = [Entry(recipient, mid) for recipient, mid in entries.items()]
    now = utcnow()
    wanted = {e.recipient: e for e in entries}
    with store.begin() as conn:
        existing = conn.execute(
            select(send_ledger.c.id, send_ledger.c.recipient, send_ledger.c.content_hash, send_ledger.c.state).where(
                send_ledger.c.slug == slug, send_ledger.c.audience == audience
            )
        ).all()
        current = {r.recipient for r in existing if r.content_hash == content_hash}
        for r in existing:
            entry = wanted.get(r.recipient)
            if entry and r.content_hash != content_hash and r.state in PENDING and r.recipient not in current:
                conn.execute(
                    update(send_ledger)
                    .where(send_ledger.c.id == r.id, send_ledger.c.state.in_(PENDING))
                    .values(content_hash=content_hash, message_id=entry.message_id, updated_at=now)
                )
                current.add(r.recipient)
        skip = current if resend_updated else current | {r.recipient for r in existing}
    rows = [
        {
            "slug": slug,
            "audience": audience,
            "recipient": e.recipient,
            "content_hash": content_hash,
            "message_id": e.message_id,
            "state": e.state,
            "attempts": 0,
            "last_reply": e.reason,
            "created_at": now,
            "updated_at": now,
        }
        for e in entries
        if e.recipient not in skip
    ]
    return sum(1 for row in _insert_rows(store, rows) if row["state"] == QUEUED)


def _insert_rows(store: Database, rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Insert rows; when a concurrent enqueue won the race for some, insert the rest one by one."""
    if not rows:
        return []
    try:
        with store.begin() as conn:
            conn.execute(insert(send_ledger), rows)
        return rows
    except IntegrityError:
        logger.info("another process queued some of these rows first; inserting one by one")
    added = []
    for row in rows:
        try:
            with store.begin() as conn:
                conn.execute(insert(send_ledger).values(**row))
            added.append(row)
        except IntegrityError:
            continue
    return added


def skip_pending(store: Database, slug: str, audience: str, reasons: dict[str, str]) -> int:
    """Rows not yet handed to a server (or left uncertain) whose recipient must not get it become skipped."""
    changed = 0
    with store.begin() as conn:
        for recipient, reason in reasons.items():
            changed += conn.execute(
                update(send_ledger)
                .where(
                    send_ledger.c.slug == slug,
                    send_ledger.c.audience == audience,
                    send_ledger.c.recipient == recipient,
                    send_ledger.c.state.in_((QUEUED, DEFERRED, UNCERTAIN)),
                )
                .values(state=SKIPPED, last_reply=reason, claimed_by=None, claimed_at=None, updated_at=utcnow())
            ).rowcount
    return changed


def skip_unsubscribed(store: Database, audience: str, email: str, method: str, conn: Connection | None = None) -> int:
    """An address that just unsubscribed: its rows of every briefing not yet handed to a server are skipped.
    With `conn`, inside the caller's transaction."""
    statement = (
        update(send_ledger)
        .where(
            send_ledger.c.audience == audience,
            func.lower(send_ledger.c.recipient) == email.lower(),
            send_ledger.c.state.in_((QUEUED, DEFERRED, UNCERTAIN)),
            send_ledger.c.claimed_by.is_(None),
        )
        .values(state=SKIPPED, last_reply=f"unsubscribed ({method})", updated_at=utcnow())
    )
    if conn is not None:
        return conn.execute(statement).rowcount
    with store.begin() as own:
        return own.execute(statement).rowcount


def suppress_pending(store: Database, email: str, reason: str, conn: Connection | None = None) -> int:
    """A suppressed address: its rows of every briefing and audience not yet handed to a server become
    `suppressed`. With `conn`, inside the caller's transaction (the one that records the suppression)."""
    statement = (
        update(send_ledger)
        .where(
            func.lower(send_ledger.c.recipient) == email.lower(),
            send_ledger.c.state.in_((QUEUED, DEFERRED, UNCERTAIN)),
            send_ledger.c.claimed_by.is_(None),
        )
        .values(state=SUPPRESSED, last_reply=reason[:2000], updated_at=utcnow())
    )
    if conn is not None:
        return conn.execute(statement).rowcount
    with store.begin() as own:
        return own.execute(statement).rowcount


def pending_recipients(store: Database, slug: str, audience: str) -> set[str]:
    with store.engine.connect() as conn:
        return set(
            conn.execute(
                select(send_ledger.c.recipient).where(
                    send_ledger.c.slug == slug,
                    send_ledger.c.audience == audience,
                    send_ledger.c.state.in_((QUEUED, DEFERRED, UNCERTAIN)),
                )
            ).scalars()
        )


def mark_dead_workers_uncertain(store: Database) -> int:
    """Rows left `sending` by a process on this host that no longer exists, or past the lease, become uncertain;
    rows it had leased but not started go back to the queue. Returns how many rows became uncertain."""
    host = socket.gethostname()
    now = utcnow()
    changed = 0
    with store.begin() as conn:
        claims = (
            conn.execute(
                select(send_ledger.c.claimed_by)
                .where(send_ledger.c.claimed_by.is_not(None), send_ledger.c.state.in_((QUEUED, DEFERRED, SENDING)))
                .distinct()
            )
            .scalars()
            .all()
        )
        for claim in claims:
            if not _claim_is_dead(claim, host):
                continue
            changed += conn.execute(
                update(send_ledger)
                .where(send_ledger.c.claimed_by == claim, send_ledger.c.state == SENDING)
                .values(
                    state=UNCERTAIN,
                    updated_at=now,
                    last_reply="the sending process died after handing the message to the server and before its reply",
                )
            ).rowcount
            conn.execute(
                update(send_ledger)
                .where(send_ledger.c.claimed_by == claim, send_ledger.c.state.in_(PENDING))
                .values(claimed_by=None, claimed_at=None)
            )
        changed += conn.execute(
            update(send_ledger)
            .where(send_ledger.c.state == SENDING, send_ledger.c.claimed_at < now - LEASE)
            .values(state=UNCERTAIN, updated_at=now, last_reply="lease expired while sending (worker on another host?)")
        ).rowcount
    if changed:
        logger.warning("%d ledger rows were left sending by dead workers: now uncertain", changed)
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


def claim_batch(
    store: Database, slug: str, audience: str, worker: str, limit: int, *, content_hash: str | None = None
) -> list[LedgerRow]:
    """Lease up to `limit` sendable rows (of one content version, when given) for this worker and return just
    those (not rows it leased earlier); two workers never lease the same row."""
    now = utcnow()
    sendable = and_(
        send_ledger.c.slug == slug,
        send_ledger.c.audience == audience,
        send_ledger.c.content_hash == content_hash if content_hash is not None else true(),
        or_(
            send_ledger.c.state == QUEUED,
            and_(
                send_ledger.c.state == DEFERRED,
                or_(send_ledger.c.next_attempt_at.is_(None), send_ledger.c.next_attempt_at <= now),
            ),
        ),
        or_(send_ledger.c.claimed_by.is_(None), send_ledger.c.claimed_at < now - LEASE),
    )
    with _write(store) as conn:
        candidates = select(send_ledger.c.id).where(sendable).order_by(send_ledger.c.id).limit(limit)
        if store.is_sqlite:
            # One UPDATE statement takes SQLite's write lock before it reads, so the choice is atomic.
            ids_clause = send_ledger.c.id.in_(candidates.scalar_subquery())
        else:
            ids = conn.execute(candidates.with_for_update(skip_locked=True)).scalars().all()
            if not ids:
                return []
            ids_clause = send_ledger.c.id.in_(ids)
        conn.execute(update(send_ledger).where(ids_clause, sendable).values(claimed_by=worker, claimed_at=now))
        rows = conn.execute(
            select(send_ledger)
            .where(
                send_ledger.c.claimed_by == worker, send_ledger.c.claimed_at == now, send_ledger.c.state.in_(PENDING)
            )
            .order_by(send_ledger.c.id)
        ).all()
    return [_row(r) for r in rows]


def _state_is(*states: str) -> ColumnElement[bool]:
    """`state IN (...)` as plain comparisons: an IN list is re-rendered into the SQL on every execution, which
    costs more than the statement itself on the per-message path."""
    return or_(*(send_ledger.c.state == state for state in states))


# Built once: these two run for every message, and building a statement costs more than executing it.
_START = (
    update(send_ledger)
    .where(
        send_ledger.c.id == bindparam("row_id"), send_ledger.c.claimed_by == bindparam("worker"), _state_is(*PENDING)
    )
    .values(
        state=SENDING, attempts=send_ledger.c.attempts + 1, claimed_at=bindparam("now"), updated_at=bindparam("now")
    )
)
_FINISH_VALUES: dict[str, Any] = {
    "state": bindparam("state"),
    "last_reply": bindparam("reply"),
    "next_attempt_at": bindparam("retry_at"),
    "updated_at": bindparam("now"),
    "claimed_by": None,
    "claimed_at": None,
}


@cache
def _finish_statement(guarded: bool, not_sent: bool) -> Update:
    conditions = [send_ledger.c.id == bindparam("row_id")]
    if guarded:
        conditions += [send_ledger.c.claimed_by == bindparam("worker"), _state_is(SENDING, UNCERTAIN, *PENDING)]
    values: dict[str, object] = dict(_FINISH_VALUES)
    if not_sent:
        values["attempts"] = send_ledger.c.attempts - 1
    return update(send_ledger).where(*conditions).values(**values)


@dataclass(frozen=True)
class Outcome:
    """A transport's answer for one row, waiting to be written (see `start_sending`'s `recording`)."""

    row_id: int
    state: str
    reply: str = ""
    retry_at: datetime | None = None


def start_sending(
    store: Database, row_id: int, worker: str, *, recording: Outcome | None = None, held: Connection | None = None
) -> bool:
    """Flip one leased row to `sending` (committed) right before the transport gets it. False: lease lost.

    `recording` is the previous row's outcome, written in the same transaction: a bulk send then costs one
    commit per message, and every row still passes queued → sending → outcome in committed steps. `held`: a
    `store.writer()` connection of the calling thread."""
    with _write(store, held) as conn:
        if recording is not None:
            _record(conn, recording, worker)
        return conn.execute(_START, {"row_id": row_id, "worker": worker, "now": utcnow()}).rowcount == 1


def finish(
    store: Database,
    row_id: int,
    state: str,
    reply: str = "",
    retry_at: datetime | None = None,
    *,
    worker: str | None = None,
    held: Connection | None = None,
) -> bool:
    """Record the outcome of a row (held by `worker`, when given). `queued` means nothing reached the server:
    the attempt is not counted. False when the row is no longer this worker's."""
    with _write(store, held) as conn:
        return _record(conn, Outcome(row_id, state, reply, retry_at), worker)


def _record(conn: Connection, outcome: Outcome, worker: str | None) -> bool:
    params = {
        "row_id": outcome.row_id,
        "worker": worker,
        "state": outcome.state,
        "reply": outcome.reply[:2000],
        "retry_at": outcome.retry_at,
        "now": utcnow(),
    }
    done = conn.execute(_finish_statement(worker is not None, outcome.state == QUEUED), params).rowcount
    if not done:
        logger.warning(
            "ledger row %d was taken over by another worker; outcome %s not recorded", outcome.row_id, outcome.state
        )
    return done == 1


def release(store: Database, worker: str) -> None:
    """Give back leased rows this worker did not start; a row it left `sending` (interrupted) is uncertain."""
    now = utcnow()
    with store.begin() as conn:
        conn.execute(
            update(send_ledger)
            .where(send_ledger.c.claimed_by == worker, send_ledger.c.state == SENDING)
            .values(state=UNCERTAIN, updated_at=now, last_reply="interrupted while the server had the message")
        )
        conn.execute(
            update(send_ledger)
            .where(send_ledger.c.claimed_by == worker, send_ledger.c.state.in_(PENDING))
            .values(claimed_by=None, claimed_at=None)
        )


def requeue_uncertain(store: Database, slug: str | None = None, audiences: list[str] | None = None) -> int:
    """Put uncertain rows back in the queue; they keep their Message-ID."""
    conditions = [send_ledger.c.state == UNCERTAIN]
    if slug:
        conditions.append(send_ledger.c.slug == slug)
    if audiences:
        conditions.append(send_ledger.c.audience.in_(audiences))
    with store.begin() as conn:
        return conn.execute(
            update(send_ledger)
            .where(*conditions)
            .values(state=QUEUED, claimed_by=None, claimed_at=None, next_attempt_at=None, updated_at=utcnow())
        ).rowcount


def next_retry(store: Database, slug: str, audience: str, content_hash: str) -> datetime | None:
    """When the earliest deferred row of this email comes due (None: nothing deferred)."""
    with store.engine.connect() as conn:
        return conn.execute(
            select(func.min(send_ledger.c.next_attempt_at)).where(
                send_ledger.c.slug == slug,
                send_ledger.c.audience == audience,
                send_ledger.c.content_hash == content_hash,
                send_ledger.c.state == DEFERRED,
            )
        ).scalar()


def counts(store: Database, slug: str | None = None, audience: str | None = None) -> dict[tuple[str, str, str], int]:
    """(slug, audience, state) → rows."""
    query = select(send_ledger.c.slug, send_ledger.c.audience, send_ledger.c.state, func.count()).group_by(
        send_ledger.c.slug, send_ledger.c.audience, send_ledger.c.state
    )
    if slug:
        query = query.where(send_ledger.c.slug == slug)
    if audience:
        query = query.where(send_ledger.c.audience == audience)
    with store.engine.connect() as conn:
        return {(r[0], r[1], r[2]): r[3] for r in conn.execute(query)}


def rows_in_state(
    store: Database, states: str | tuple[str, ...], slug: str | None = None, audience: str | None = None
) -> list[LedgerRow]:
    wanted = (states,) if isinstance(states, str) else states
    query = select(send_ledger).where(send_ledger.c.state.in_(wanted)).order_by(send_ledger.c.id)
    if slug:
        query = query.where(send_ledger.c.slug == slug)
    if audience:
        query = query.where(send_ledger.c.audience == audience)
    with store.engine.connect() as conn:
        return [_row(r) for r in conn.execute(query)]


def recipients_by_message_id(store: Database, ids: list[str], chunk: int = 500) -> dict[str, tuple[str, str, str]]:
    """Message-ID → (slug, audience, recipient) of the ledger rows with those Message-IDs (replies and complaints
    name the message they are about)."""
    found: dict[str, tuple[str, str, str]] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(ids), chunk):
            rows = conn.execute(_BY_MESSAGE_ID, {"ids": ids[start : start + chunk]})
            found.update({r.message_id: (r.slug, r.audience, r.recipient) for r in rows})
    return found


_BY_MESSAGE_ID = select(
    send_ledger.c.slug, send_ledger.c.audience, send_ledger.c.recipient, send_ledger.c.message_id
).where(send_ledger.c.message_id.in_(bindparam("ids", expanding=True)))


def summarise(store: Database, slug: str | None = None) -> Counter[str]:
    totals: Counter[str] = Counter()
    for (_s, _a, state), n in counts(store, slug).items():
        totals[state] += n
    return totals

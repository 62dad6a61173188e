"""Suppressed addresses: bounces and complaints stop the mail; an editor can lift a suppression.

A hard bounce (5.x.x) suppresses at once; soft bounces (4.x.x) suppress once `soft_bounce_limit` of them fall
within `soft_bounce_window_days` (counted from the last lift, if any); a complaint suppresses and records an
unsubscribe. Suppressing turns the address's ledger rows not yet handed to a server into `suppressed`, and the
send path (flows/deliver/send.py) reads `Store.suppressed()` before queuing and before each batch. Every write here
takes the caller's connection, so it commits with the record of the message that caused it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from flows.collect.bounces import BouncedAddress
from flows.core.settings import Settings
from flows.core.store import Store, bounce_events, ledger, suppressions, unsubscribes, utcnow

logger = logging.getLogger(__name__)

HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, MANUAL = "hard-bounce", "soft-bounce", "complaint", "manual"


@dataclass(frozen=True)
class Suppression:
    email: str
    reason: str
    source: str
    at: datetime
    lifted_at: datetime | None = None

    def to_dict(self) -> dict[str, str]:
        return {
            "email": self.email,
            "reason": self.reason,
            "source": self.source,
            "at": self.at.isoformat(sep=" ", timespec="seconds"),
            "lifted_at": self.lifted_at.isoformat(sep=" ", timespec="seconds") if self.lifted_at else "",
        }


# Statements built once (collect runs them thousands of times): only the values change.
_ADD_BOUNCE = insert(bounce_events)
_SUPPRESS_AGAIN = (
    update(suppressions)
    .where(suppressions.c.email == bindparam("address"), suppressions.c.lifted_at.is_not(None))
    .values(lifted_at=None)
)
_LIFTED_AT = select(suppressions.c.lifted_at).where(suppressions.c.email == bindparam("address"))
_SOFT_SINCE = select(func.count()).where(
    bounce_events.c.email == bindparam("address"),
    bounce_events.c.severity == "soft",
    bounce_events.c.at >= bindparam("since"),
)


@dataclass(frozen=True)
class _DialectStatements:
    add_suppression: Any
    add_unsubscribe: Any


_BY_DIALECT: dict[bool, _DialectStatements] = {}


def _statements(store: Store) -> _DialectStatements:
    """The INSERT … ON CONFLICT DO NOTHING statements of the store's dialect (SQLite or PostgreSQL)."""
    if store.is_sqlite not in _BY_DIALECT:
        _BY_DIALECT[store.is_sqlite] = _DialectStatements(
            add_suppression=store.insert(suppressions)
            .on_conflict_do_nothing(index_elements=[suppressions.c.email])
            .returning(suppressions.c.email),
            add_unsubscribe=store.insert(unsubscribes)
            .on_conflict_do_nothing(index_elements=[unsubscribes.c.audience, unsubscribes.c.email])
            .returning(unsubscribes.c.email),
        )
    return _BY_DIALECT[store.is_sqlite]


def suppress(store: Store, conn: Connection, email: str, reason: str, source: str) -> bool:
    """Suppress an address (again, if it was lifted). True when it was not suppressed before."""
    email = email.lower()
    values = {"reason": reason[:2000], "source": source, "at": utcnow()}
    added = conn.execute(_statements(store).add_suppression, {"email": email, **values}).first()
    if added is None:  # a row exists: suppressed now, or lifted earlier (then suppressed again)
        again = conn.execute(_SUPPRESS_AGAIN, {"address": email, **values}).rowcount
        if not again:
            return False
    rows = ledger.suppress_pending(store, email, reason, conn=conn)
    logger.info("suppressed %s (%s): %d unsent ledger rows suppressed", email, reason, rows)
    return True


def record_bounce(
    store: Store, conn: Connection, settings: Settings, bounced: BouncedAddress, digest: str, now: datetime
) -> str:
    """Record one bounced address; returns what it did: `suppressed`, `counted` (soft, under the limit) or
    `already suppressed`."""
    conn.execute(
        _ADD_BOUNCE,
        {
            "email": bounced.email,
            "severity": bounced.severity,
            "status": bounced.status,
            "diagnostic": bounced.diagnostic[:2000],
            "message_digest": digest,
            "at": now,
        },
    )
    code = f" {bounced.status}" if bounced.status else ""
    if bounced.severity == "hard":
        reason = f"hard bounce{code}" + (f": {bounced.diagnostic}" if bounced.diagnostic else "")
        return "suppressed" if suppress(store, conn, bounced.email, reason, HARD_BOUNCE) else "already suppressed"
    soft = _soft_bounces_in_window(conn, settings, bounced.email, now)
    if soft < settings.soft_bounce_limit:
        return "counted"
    reason = f"{soft} soft bounces within {settings.soft_bounce_window_days:g} days (last{code})"
    return "suppressed" if suppress(store, conn, bounced.email, reason, SOFT_BOUNCE) else "already suppressed"


def _soft_bounces_in_window(conn: Connection, settings: Settings, email: str, now: datetime) -> int:
    since = now - timedelta(days=settings.soft_bounce_window_days)
    lifted = conn.execute(_LIFTED_AT, {"address": email}).scalar()
    if lifted is not None and lifted > since:
        since = lifted
    return int(conn.execute(_SOFT_SINCE, {"address": email, "since": since}).scalar() or 0)


def record_unsubscribe(store: Store, conn: Connection, audience: str, email: str, method: str) -> bool:
    """The store's unsubscribe record plus the skipped ledger rows, in the caller's transaction."""
    values = {"audience": audience, "email": email.lower(), "at": utcnow(), "method": method}
    added = conn.execute(_statements(store).add_unsubscribe, values).first()
    ledger.skip_unsubscribed(store, audience, email, method, conn=conn)
    return added is not None


def lift(store: Store, email: str) -> Suppression | None:
    """Lift a suppression; later briefings go to the address again. Returns the lifted suppression, or None
    when the address was not suppressed. Ledger rows already `suppressed` stay so: those emails are not sent
    late."""
    email = email.strip().lower()
    with store.begin() as conn:
        row = conn.execute(
            select(suppressions).where(suppressions.c.email == email, suppressions.c.lifted_at.is_(None))
        ).first()
        if row is None:
            return None
        now = utcnow()
        conn.execute(update(suppressions).where(suppressions.c.email == email).values(lifted_at=now))
    logger.info("lifted the suppression of %s (%s)", email, row.reason)
    return Suppression(row.email, row.reason, row.source, row.at, now)


def add_manual(store: Store, email: str, reason: str) -> bool:
    """Suppress an address by hand (an editor's decision)."""
    with store.begin() as conn:
        return suppress(store, conn, email.strip().lower(), reason or "suppressed by an editor", MANUAL)


def list_suppressions(store: Store, *, include_lifted: bool = False) -> list[Suppression]:
    query = select(suppressions).order_by(suppressions.c.at.desc(), suppressions.c.email)
    if not include_lifted:
        query = query.where(suppressions.c.lifted_at.is_(None))
    with store.engine.connect() as conn:
        return [Suppression(r.email, r.reason, r.source, r.at, r.lifted_at) for r in conn.execute(query)]

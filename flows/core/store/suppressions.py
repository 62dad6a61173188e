"""The suppressions repository: addresses never mailed until an editor lifts the suppression, and the bounces
counted towards one.

`briefing collect` suppresses (bounces and complaints, in the transaction that records the message), editors add
and lift by hand (`briefing suppression`, the preview), and the send path reads `suppressed()` before queuing and
before each batch. Suppressing also turns the address's ledger rows not yet handed to a server into `suppressed`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.engine import Connection

from flows.core.store import ledger
from flows.core.store.base import Database, utcnow
from flows.core.store.schema import bounce_events, suppressions

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
_ADD: dict[bool, Any] = {}


def _add(store: Database) -> Any:
    """INSERT … ON CONFLICT DO NOTHING RETURNING email, of the store's dialect (built once per dialect)."""
    statement = _ADD.get(store.is_sqlite)
    if statement is None:
        statement = _ADD[store.is_sqlite] = (
            store.insert(suppressions)
            .on_conflict_do_nothing(index_elements=[suppressions.c.email])
            .returning(suppressions.c.email)
        )
    return statement


def suppress(store: Database, conn: Connection, email: str, reason: str, source: str) -> bool:
    """Suppress an address (again, if it was lifted), in the caller's transaction. True when it was not
    suppressed before."""
    email = email.lower()
    values = {"reason": reason[:2000], "source": source, "at": utcnow()}
    added = conn.execute(_add(store), {"email": email, **values}).first()
    if added is None:  # a row exists: suppressed now, or lifted earlier (then suppressed again)
        again = conn.execute(_SUPPRESS_AGAIN, {"address": email, **values}).rowcount
        if not again:
            return False
    rows = ledger.suppress_pending(store, email, reason, conn=conn)
    logger.info("suppressed %s (%s): %d unsent ledger rows suppressed", email, reason, rows)
    return True


def add_bounce(
    conn: Connection, email: str, severity: str, status: str, diagnostic: str, message_digest: str, at: datetime
) -> None:
    """Record one bounce of an address, in the caller's transaction."""
    values = {"email": email, "severity": severity, "status": status, "diagnostic": diagnostic[:2000]}
    conn.execute(_ADD_BOUNCE, {**values, "message_digest": message_digest, "at": at})


def soft_bounces_since(conn: Connection, email: str, since: datetime) -> int:
    """Soft bounces of the address since `since`, or since its suppression was last lifted if that is later."""
    lifted = conn.execute(_LIFTED_AT, {"address": email}).scalar()
    if lifted is not None and lifted > since:
        since = lifted
    return int(conn.execute(_SOFT_SINCE, {"address": email, "since": since}).scalar() or 0)


def lift(store: Database, email: str) -> Suppression | None:
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


def add_manual(store: Database, email: str, reason: str) -> bool:
    """Suppress an address by hand (an editor's decision)."""
    with store.begin() as conn:
        return suppress(store, conn, email.strip().lower(), reason or "suppressed by an editor", MANUAL)


def list_suppressions(store: Database, *, include_lifted: bool = False) -> list[Suppression]:
    query = select(suppressions).order_by(suppressions.c.at.desc(), suppressions.c.email)
    if not include_lifted:
        query = query.where(suppressions.c.lifted_at.is_(None))
    with store.engine.connect() as conn:
        return [Suppression(r.email, r.reason, r.source, r.at, r.lifted_at) for r in conn.execute(query)]


class SuppressionRepository(Database):
    """What the send path asks (a part of `flows.core.store.Store`)."""

    def suppressed(self) -> dict[str, str]:
        """Every address under suppression (lower case) → the reason; the send path never mails them."""
        query = select(suppressions.c.email, suppressions.c.reason).where(suppressions.c.lifted_at.is_(None))
        with self.engine.connect() as conn:
            return {r.email: r.reason for r in conn.execute(query)}

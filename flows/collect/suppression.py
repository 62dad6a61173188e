"""When a bounce suppresses an address: a hard bounce (5.x.x) at once; soft bounces (4.x.x) once
`soft_bounce_limit` of them fall within `soft_bounce_window_days` (counted from the last lift, if any). A complaint
suppresses at once (flows/collect/run.py). The suppressions themselves, and what they do to the send ledger, are
the store's (flows/core/store/suppressions.py); every write here takes the caller's connection, so it commits with
the record of the message that caused it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from flows.collect.bounces import BouncedAddress
from flows.core.settings import Settings
from flows.core.store import Store, suppressions

logger = logging.getLogger(__name__)


def record_bounce(
    store: Store, conn: Connection, settings: Settings, bounced: BouncedAddress, digest: str, now: datetime
) -> str:
    """Record one bounced address; returns what it did: `suppressed`, `counted` (soft, under the limit) or
    `already suppressed`."""
    suppressions.add_bounce(conn, bounced.email, bounced.severity, bounced.status, bounced.diagnostic, digest, now)
    code = f" {bounced.status}" if bounced.status else ""
    if bounced.severity == "hard":
        reason = f"hard bounce{code}" + (f": {bounced.diagnostic}" if bounced.diagnostic else "")
        done = suppressions.suppress(store, conn, bounced.email, reason, suppressions.HARD_BOUNCE)
        return "suppressed" if done else "already suppressed"
    since = now - timedelta(days=settings.soft_bounce_window_days)
    soft = suppressions.soft_bounces_since(conn, bounced.email, since)
    if soft < settings.soft_bounce_limit:
        return "counted"
    reason = f"{soft} soft bounces within {settings.soft_bounce_window_days:g} days (last{code})"
    done = suppressions.suppress(store, conn, bounced.email, reason, suppressions.SOFT_BOUNCE)
    return "suppressed" if done else "already suppressed"

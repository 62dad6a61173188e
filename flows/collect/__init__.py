"""The collect stage: one IMAP mailbox brings readers' replies (→ moderated discussion entries), bounces and
complaints (→ suppressed addresses) and mailto unsubscribes back into the store.

Entry point: `collect_mailbox(settings, store) -> CollectReport` (flows/collect/run.py). Inside: imap.py (the
connection), message.py (defensive parsing), classify.py (which kind), bounces.py (DSN and ARF), replies.py
(quotes, signatures, sanitised HTML) and suppression.py (when a bounce suppresses an address). What it records
goes through the store's repositories (flows/core/store/).

The entry point is imported on first use, so importing a part of the stage does not load the IMAP client and
the bounce detectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flows.core.errors import CollectError

if TYPE_CHECKING:
    from flows.collect.run import CollectReport, collect_mailbox

__all__ = ["CollectError", "CollectReport", "collect_mailbox"]


def __getattr__(name: str) -> Any:
    if name in ("CollectReport", "collect_mailbox"):
        from flows.collect import run

        return getattr(run, name)
    raise AttributeError(name)

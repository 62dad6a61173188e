"""The collect stage: one IMAP mailbox brings readers' replies (→ moderated discussion entries), bounces and
complaints (→ suppressed addresses) and mailto unsubscribes back into the store.

Entry point: `collect_mailbox(settings, store) -> CollectReport` (flows/collect/run.py). Inside: imap.py (the
connection), message.py (defensive parsing), classify.py (which kind), bounces.py (DSN and ARF), replies.py
(quotes, signatures, sanitised HTML), suppression.py and discussion.py (what editors see and decide).

The entry point is imported on first use, so the publish stage and the preview, which only read approved
entries (flows.collect.discussion), do not load the IMAP client and the bounce detectors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flows.collect.errors import CollectError

if TYPE_CHECKING:
    from flows.collect.run import CollectReport, collect_mailbox

__all__ = ["CollectError", "CollectReport", "collect_mailbox"]


def __getattr__(name: str) -> Any:
    if name in ("CollectReport", "collect_mailbox"):
        from flows.collect import run

        return getattr(run, name)
    raise AttributeError(name)

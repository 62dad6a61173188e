"""The collect stage: one IMAP mailbox brings readers' replies (→ moderated discussion entries), bounces and
complaints (→ suppressed addresses) and mailto unsubscribes back into the store.

Entry point: `collect_mailbox(settings, store) -> CollectReport` (flows/collect/run.py). Inside: imap.py (the
connection), message.py (defensive parsing), classify.py (which kind), bounces.py (DSN and ARF), replies.py
(quotes, signatures, sanitised HTML), suppression.py and discussion.py (what editors see and decide).
"""

from flows.collect.errors import CollectError
from flows.collect.run import CollectReport, collect_mailbox

__all__ = ["CollectError", "CollectReport", "collect_mailbox"]

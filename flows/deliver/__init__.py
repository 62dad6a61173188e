"""The deliver stage: each audience's email to its subscribers, exactly once.

Entry points: `deliver_briefing(rendered, content, store, settings, ...) -> DeliveryReport` and `send_test`
(one message marked as a test, no ledger), in flows/deliver/send.py. Inside: messages.py (RFC 5322 messages,
headers, unsubscribe links), dkim.py (signatures), transports.py (the outbox folder and SMTP), unsubscribe.py
(the one-click unsubscribe web routes).
"""

from __future__ import annotations

from flows.deliver.send import DeliveryReport, deliver_briefing, send_test

__all__ = ["DeliveryReport", "deliver_briefing", "send_test"]

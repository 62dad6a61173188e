"""Which kind of message this is, decided in a fixed order:

1. complaint — an ARF feedback report (RFC 5965);
2. bounce — a delivery status notification (RFC 3464) or another MTA's failure notice, per flufl.bounce;
3. auto-reply — `Auto-Submitted` other than `no` (RFC 3834), `X-Autoreply`/`X-Autorespond`, `Precedence:
   auto_reply|bulk|junk`, read receipts (disposition-notification reports), vacation subjects; ignored;
4. unsubscribe — sent to the `List-Unsubscribe` mailto address, or a subject (or a one-line reply) that says
   unsubscribe / 退订 / 取消订阅;
5. reply — In-Reply-To/References name a Message-ID of the send ledger: (briefing, audience, subscriber);
6. other — anything else, left for a person.

Bounces and complaints come first because MTAs mark them `Auto-Submitted: auto-replied` too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage

from flows.collect import message as msg
from flows.collect.bounces import Bounce, Complaint, is_report, parse_bounce, parse_complaint
from flows.collect.replies import ReplyText, extract_reply
from flows.core.settings import Settings
from flows.core.store import Store, ledger

logger = logging.getLogger(__name__)

REPLY, BOUNCE, COMPLAINT, UNSUBSCRIBE, AUTO_REPLY, OTHER, UNREADABLE = (
    "reply",
    "bounce",
    "complaint",
    "unsubscribe",
    "auto-reply",
    "other",
    "unreadable",
)
KINDS = (REPLY, BOUNCE, COMPLAINT, UNSUBSCRIBE, AUTO_REPLY, OTHER, UNREADABLE)
FOLDERS = {
    REPLY: "Replies",
    BOUNCE: "Bounces",
    COMPLAINT: "Complaints",
    UNSUBSCRIBE: "Unsubscribes",
    AUTO_REPLY: "AutoReplies",
    OTHER: "Other",
    UNREADABLE: "Unreadable",
}
AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheit|autoreply|vacation|"
    r"自动回复|自動回覆|休假)",
    re.IGNORECASE,
)
UNSUBSCRIBE_WORDS = re.compile(r"^\s*(unsubscribe|退订|取消订阅|退訂)\b\s*(?P<audience>[A-Za-z0-9_-]{1,32})?\s*$", re.I)
REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd|回复|答复|回覆)\s*[:：]\s*)+", re.IGNORECASE)
MAX_REFERENCES = 50


@dataclass(frozen=True)
class LedgerMatch:
    slug: str
    audience: str
    recipient: str
    message_id: str


@dataclass(frozen=True)
class Classified:
    """What a message is, with what its kind needs to act on."""

    kind: str
    detail: str
    message_id: str = ""
    sender_name: str = ""
    sender_email: str = ""
    subject: str = ""
    sent_at: datetime | None = None
    match: LedgerMatch | None = None
    bounce: Bounce | None = None
    complaint: Complaint | None = None
    unsubscribe_audience: str = ""  # the audience id a mailto request names, if any
    reply: ReplyText | None = None


class LedgerLookup:
    """Send-ledger rows by Message-ID, for the messages of one batch: `prefetch` reads the rows of every ID the
    batch references in one query (chunked), so classifying a message asks the store nothing more."""

    CHUNK = 500

    def __init__(self, store: Store) -> None:
        self.store = store
        self._rows: dict[str, LedgerMatch | None] = {}

    def prefetch(self, ids: Iterable[str]) -> None:
        missing = [i for i in dict.fromkeys(ids) if len(i) <= 500 and i not in self._rows]
        if not missing:
            return
        found = ledger.recipients_by_message_id(self.store, missing, self.CHUNK)
        for message_id in missing:
            row = found.get(message_id)
            self._rows[message_id] = LedgerMatch(*row, message_id) if row is not None else None

    def matches(self, ids: list[str]) -> list[LedgerMatch]:
        """Send-ledger rows whose Message-ID is one of `ids`, in the order of `ids`."""
        wanted = [i for i in ids if len(i) <= 500][:MAX_REFERENCES]
        self.prefetch(wanted)
        return [match for i in wanted if (match := self._rows.get(i)) is not None]


def ledger_ids(message: EmailMessage) -> list[str]:
    """The Message-IDs classifying this message may look up: those it answers and, for a complaint, the one of
    the returned message."""
    ids = [i for i in msg.referenced_ids(message) if len(i) <= 500][:MAX_REFERENCES]
    if is_report(message, "feedback-report"):
        returned = msg.embedded_headers(message)
        if returned is not None:
            ids.append(msg.header(returned, "Message-ID"))
    return ids


def unsubscribe_mailbox(settings: Settings) -> str:
    domain = settings.from_address.rsplit("@", 1)[-1].lower()
    return (settings.unsubscribe_mailto or f"unsubscribe@{domain}").lower()


def is_auto_reply(message: EmailMessage) -> bool:
    auto = msg.header(message, "Auto-Submitted").lower()
    if auto and not auto.startswith("no"):
        return True
    if msg.header(message, "X-Autoreply") or msg.header(message, "X-Autorespond"):
        return True
    if msg.header(message, "Precedence").lower() in ("auto_reply", "bulk", "junk"):
        return True
    if is_report(message, "disposition-notification"):
        return True
    return bool(AUTO_SUBJECT.search(msg.header(message, "Subject")))


def _unsubscribe_request(message: EmailMessage, settings: Settings, first_line: str) -> tuple[bool, str]:
    """(is it a request, the audience id it names)."""
    subject = REPLY_PREFIX.sub("", msg.header(message, "Subject"))
    to_mailbox = unsubscribe_mailbox(settings) in msg.addresses(
        message, "To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To"
    )
    for text in (subject, first_line):
        match = UNSUBSCRIBE_WORDS.match(text)
        if match:
            return True, (match.group("audience") or "").lower()
    return to_mailbox, ""


def classify(
    message: EmailMessage,
    store: Store,
    settings: Settings,
    received: datetime | None,
    ledger_rows: LedgerLookup | None = None,
) -> Classified:
    """What `message` is. `ledger_rows` (prefetched for a batch) answers the send-ledger look-ups; without it
    they are read from `store`."""
    name, address = msg.sender(message)
    base = Classified(
        OTHER,
        "not a reply to a briefing email: left for a person",
        message_id=msg.header(message, "Message-ID")[:998],
        sender_name=name,
        sender_email=address,
        subject=msg.header(message, "Subject")[:500],
        sent_at=msg.sent_at(message, received),
    )
    complaint = parse_complaint(message)
    if complaint is not None:
        return replace(base, kind=COMPLAINT, detail=f"feedback-type {complaint.feedback_type}", complaint=complaint)
    bounce = parse_bounce(message)
    if bounce is not None:
        detail = ", ".join(f"{b.email} {b.severity} {b.status}".strip() for b in bounce.addresses)
        return replace(base, kind=BOUNCE, detail=detail, bounce=bounce)
    if is_auto_reply(message):
        return replace(base, kind=AUTO_REPLY, detail="automatic reply: ignored")
    matches = (ledger_rows or LedgerLookup(store)).matches(msg.referenced_ids(message))
    match = matches[0] if matches else None
    plain, html, attachments = msg.body_parts(message)
    reply = extract_reply(plain, html, settings.discussion_max_chars)
    first_line = reply.text.strip() if "\n" not in reply.text.strip() else ""
    wants_out, named = _unsubscribe_request(message, settings, first_line)
    if wants_out:
        audience = match.audience if match else named
        detail = f"unsubscribe request{' for ' + audience if audience else ''}"
        return replace(base, kind=UNSUBSCRIBE, detail=detail, match=match, unsubscribe_audience=audience)
    if match is None:
        return base
    where = f"{match.slug}/{match.audience}"
    if not reply.text.strip():
        return replace(base, detail=f"reply to {where} without text: left for a person", match=match)
    note = f" ({attachments} attachment{'s' if attachments != 1 else ''} not kept)" if attachments else ""
    return replace(base, kind=REPLY, detail=f"reply to {where}{note}", match=match, reply=reply)

"""Reading one inbound message defensively: headers, addresses, referenced Message-IDs, text and HTML parts.

Mail from the outside is often malformed (bad charsets, broken encoded-words, missing boundaries). The email
package records most of that as defects; the few places that raise are wrapped here, so a helper returns an
empty value rather than failing, and only a message that cannot be parsed at all counts as unreadable.
"""

from __future__ import annotations

import email
import logging
import re
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

logger = logging.getLogger(__name__)

MESSAGE_ID = re.compile(r"<[^<>\s]{1,900}>")


class UnreadableMessageError(Exception):
    """The bytes are not a message this stage can read."""


def parse(raw: bytes) -> EmailMessage:
    if not raw or not raw.strip():
        raise UnreadableMessageError("empty message")
    try:
        message = email.message_from_bytes(raw, policy=policy.default)
    except Exception as exc:  # the parser is lenient; anything it raises means the bytes are not mail
        raise UnreadableMessageError(f"cannot parse the message: {exc!r}") from exc
    if not any(message.keys()):
        raise UnreadableMessageError("no header fields")
    return message


def header(message: Message, name: str) -> str:
    """A header's decoded value, one line; empty when missing or undecodable."""
    try:
        value = message.get(name)
    except Exception:  # a broken encoded-word or address list can raise while the header object is built
        logger.debug("header %s unreadable", name, exc_info=True)
        raw = message.get_all(name, failobj=[]) if hasattr(message, "get_all") else []
        value = raw[0] if raw else None
    if value is None:
        return ""
    return " ".join(str(value).split())


def addresses(message: Message, *names: str) -> list[str]:
    """Lower-cased addresses found in these headers."""
    found = []
    for name in names:
        values = [header(message, name)]
        for _display, address in getaddresses([v for v in values if v]):
            if "@" in address:
                found.append(address.strip().lower())
    return found


def sender(message: Message) -> tuple[str, str]:
    """(display name, lower-cased address) of From."""
    display, address = parseaddr(header(message, "From"))
    return display.strip().strip('"').strip(), address.strip().lower()


def referenced_ids(message: Message) -> list[str]:
    """Message-IDs this message answers: In-Reply-To first, then References newest first."""
    ids: list[str] = []
    for name in ("In-Reply-To", "References"):
        found = MESSAGE_ID.findall(header(message, name))
        ids.extend(reversed(found) if name == "References" else found)
    return list(dict.fromkeys(ids))  # first occurrence wins


def sent_at(message: Message, fallback: datetime | None) -> datetime:
    """The Date header as naive UTC; the server's INTERNALDATE or now when it is missing or nonsense."""
    value = header(message, "Date")
    when: datetime | None = None
    if value:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
    when = when or fallback or datetime.now(UTC)
    if when.tzinfo is None:
        return when
    return when.astimezone(UTC).replace(tzinfo=None)


def part_text(part: Message, *, strict: bool = False) -> str:
    """The decoded text of a text/* part. When its charset is unknown, the bytes are read as UTF-8: with
    `strict`, bytes that are not UTF-8 make the message unreadable (rather than a reply of mojibake); without
    it, they are replaced."""
    try:
        content = part.get_content()  # type: ignore[attr-defined]
        if isinstance(content, str):
            return content
    except (LookupError, UnicodeError, AssertionError, KeyError, ValueError):
        pass
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload() or "")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        if strict:
            charset = part.get_content_charset() or "unknown"
            raise UnreadableMessageError(
                f"the {part.get_content_type()} body cannot be decoded (charset {charset!r}, not UTF-8 either)"
            ) from None
        return payload.decode("utf-8", errors="replace")


def body_parts(message: EmailMessage) -> tuple[str, str, int]:
    """(plain text, HTML, attachments) of the message's own body: the text/plain and text/html a mail client
    would show, not attachments or forwarded messages."""
    plain = html = ""
    try:
        best_plain = message.get_body(preferencelist=("plain",))
        best_html = message.get_body(preferencelist=("html",))
    except Exception:
        best_plain = best_html = None
    if best_plain is not None:
        plain = part_text(best_plain, strict=True)
    if best_html is not None:
        html = part_text(best_html, strict=True)
    if not plain and not html and not message.is_multipart():
        text = part_text(message, strict=True)
        if message.get_content_type() == "text/html":
            html = text
        else:
            plain = text
    attachments = 0
    try:
        attachments = sum(1 for _ in message.iter_attachments())
    except Exception:
        attachments = 0
    return plain, html, attachments


def subparts(message: Message, content_type: str) -> list[Message]:
    return [part for part in message.walk() if part.get_content_type() == content_type]


def embedded_headers(message: Message) -> Message | None:
    """The returned message's headers in a report (message/rfc822 or text/rfc822-headers part), if any."""
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind in ("text/rfc822-headers", "text/rfc822-header"):
            text = part_text(part)
            try:
                return email.message_from_string(text.lstrip(), policy=policy.default)
            except Exception:
                return None
    return None

"""Reading one inbound message defensively: headers, addresses, referenced Message-IDs, text and HTML parts.

Mail from the outside is often malformed (bad charsets, broken encoded-words, missing boundaries). The email
package records most of that as defects; the few places that raise are wrapped here, so a helper returns an
empty value rather than failing, and only a message that cannot be parsed at all counts as unreadable.

Messages are parsed once, with the compat32 policy: header values stay the strings they are in the message.
The modern policy (`policy.default`) builds and parses a header object on every access (Content-Type alone is
read about ten times while a message is classified), which made header parsing half of the cost of collecting.
The helpers here decode a header only when it needs it (encoded words, raw 8-bit text) and parse addresses from
the raw value; the parts are `EmailMessage`s, so `get_body`, `iter_attachments` and the content manager work.
"""

from __future__ import annotations

import email
import logging
import re
from datetime import UTC, datetime
from email import policy
from email._policybase import Compat32
from email.contentmanager import raw_data_manager
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

logger = logging.getLogger(__name__)

MESSAGE_ID = re.compile(r"<[^<>\s]{1,900}>")
# The usual shapes of an address field, `addr@host`, `<addr@host>`, `Name <addr@host>`, `"Name, Jr." <addr@host>`,
# read without the email package's character-by-character address parser (the slowest part of classifying a
# message); anything else (comments, groups, lists, quoted local parts, domain literals) goes to that parser.
_WORD = r'[^\s"(),.:;<>@\[\\\]]+'
_ADDR_SPEC = rf"{_WORD}(?:\.{_WORD})*@{_WORD}(?:\.{_WORD})*"
_PLAIN_ADDRESS = re.compile(
    rf'\s*(?:(?P<bare>{_ADDR_SPEC})|<(?P<angle>{_ADDR_SPEC})>|'
    rf'(?:"(?P<quoted>[^"\\]*)"|(?P<phrase>[^\s"(),:;<>@\[\\\]]+(?:\s+[^\s"(),:;<>@\[\\\]]+)*))\s*<(?P<named>{_ADDR_SPEC})>)\s*'
)
_LINE_BREAKS = re.compile(r"\r|\n")


class UnreadableMessageError(Exception):
    """The bytes are not a message this stage can read."""


class MessagePart(EmailMessage):
    """A part parsed with READ_POLICY, remembering the header values it has decoded (classifying reads the
    Subject four times). EmailMessage's own `is_attachment` reads an attribute of the modern policy's
    Content-Disposition object; with compat32 the header is a string."""

    def __init__(self, policy: Any = None) -> None:
        super().__init__(policy)
        self.decoded: dict[str, str] = {}
        self.first_fields: dict[str, str] | None = None  # lower-cased name → first raw value, built on first use

    def is_attachment(self) -> bool:
        return self.get_content_disposition() == "attachment"


class _ReadPolicy(Compat32):
    """compat32 (plain string headers, parsed by nobody until asked), building MessageParts, with the content
    manager of the modern policy so `get_content` decodes text parts as before."""

    content_manager = raw_data_manager
    message_factory = MessagePart


READ_POLICY = _ReadPolicy()


def parse(raw: bytes) -> EmailMessage:
    if not raw or not raw.strip():
        raise UnreadableMessageError("empty message")
    try:
        message = email.message_from_bytes(raw, policy=READ_POLICY)
    except Exception as exc:  # the parser is lenient; anything it raises means the bytes are not mail
        raise UnreadableMessageError(f"cannot parse the message: {exc!r}") from exc
    if not any(message.keys()):
        raise UnreadableMessageError("no header fields")
    assert isinstance(message, EmailMessage)
    return message


def raw_header(message: Message, name: str) -> str | None:
    """The first `name` field as it is in the message, unfolded; raw 8-bit bytes read as UTF-8 (RFC 6532).
    None when missing."""
    if isinstance(message, MessagePart):  # parsed messages are only read here, never changed
        if message.first_fields is None:
            message.first_fields = {}
            for key, value in message.raw_items():
                message.first_fields.setdefault(key.lower(), str(value))
        found = message.first_fields.get(name.lower())
    else:
        found = next((str(v) for k, v in message.raw_items() if k.lower() == name.lower()), None)
    return None if found is None else _unicode(_LINE_BREAKS.sub("", found))


def _unicode(value: str) -> str:
    """The parser keeps bytes that are not ASCII as surrogate escapes; they are UTF-8 in practice."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def decode_words(value: str, name: str = "subject") -> str:
    """RFC 2047 encoded words decoded. The email package's strict decoder first (fast), the modern policy's
    lenient parser when that one refuses (bad base64, an unknown charset) or the text mixes 8-bit and encoded
    words."""
    if "=?" not in value:
        return value
    if value.isascii():
        try:
            return str(make_header(decode_header(value)))
        except Exception:  # broken encoded words: the lenient parser below keeps what can be kept
            logger.debug("strict decoding of %s failed", name, exc_info=True)
    try:
        return str(policy.default.header_factory(name, value))
    except Exception:  # a header the modern parser cannot even build: keep the raw text
        logger.debug("header %s unreadable", name, exc_info=True)
        return value


def header(message: Message, name: str) -> str:
    """A header's decoded value, one line; empty when missing or undecodable."""
    cache = message.decoded if isinstance(message, MessagePart) else {}
    key = name.lower()
    if key not in cache:
        value = raw_header(message, name)
        cache[key] = "" if value is None else " ".join(decode_words(value, name).split())
    return cache[key]


def addresses(message: Message, *names: str) -> list[str]:
    """Lower-cased addresses found in these headers (the first field of each), parsed from the raw value:
    encoded words only ever occur in display names."""
    found = []
    for name in names:
        value = raw_header(message, name)
        if not value:
            continue
        plain = _PLAIN_ADDRESS.fullmatch(value)
        for _display, address in [split_address(value)] if plain else getaddresses([value]):
            if "@" in address:
                found.append(address.strip().lower())
    return found


def split_address(value: str) -> tuple[str, str]:
    """(display name, address) of one address field, as `email.utils.parseaddr` reads it."""
    plain = _PLAIN_ADDRESS.fullmatch(value)
    if plain is None:
        return parseaddr(value)
    address = plain["bare"] or plain["angle"] or plain["named"]
    display = plain["quoted"] if plain["quoted"] is not None else " ".join((plain["phrase"] or "").split())
    return display, address


def sender(message: Message) -> tuple[str, str]:
    """(display name, lower-cased address) of From."""
    cache = message.decoded if isinstance(message, MessagePart) else {}
    if "\0sender" not in cache:  # not a header name: a field name cannot hold a NUL
        display, address = split_address(raw_header(message, "From") or "")
        display = decode_words(" ".join(display.split()), "x-display-name")
        cache["\0sender"], cache["\0address"] = display.strip().strip('"').strip(), address.strip().lower()
    return cache["\0sender"], cache["\0address"]


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
        content = raw_data_manager.get_content(part)
        if isinstance(content, str):
            return content
    except (LookupError, UnicodeError, AssertionError, KeyError, ValueError, TypeError):
        pass  # TypeError: an RFC 2231 charset parameter (a tuple, not a name)
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
                return email.message_from_string(text.lstrip(), policy=READ_POLICY)
            except Exception:
                return None
    return None

"""Build RFC 5322 messages: multipart/alternative (text first, HTML base64), list and unsubscribe headers.

Building a 30 KB Chinese message with `EmailMessage` costs milliseconds, mostly in the email package's header
and generator code. So `prepare_message` does that work once per (briefing, audience): it folds the common
headers with `policy.SMTP` and base64-encodes both bodies up to the last 57-byte line boundary before the
per-recipient unsubscribe link. `PreparedMessage.for_recipient` then adds only what differs per recipient
(To, Date, Message-ID, List-Unsubscribe, the encoded tail of each body, the DKIM signature).
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from urllib.parse import quote

from flows.core.errors import DeliveryError
from flows.core.models import Subscriber
from flows.core.settings import Settings
from flows.core.text_safety import LINE_BREAKS
from flows.core.tokens import make_token
from flows.deliver.dkim import DkimSigner, make_dkim_signer
from flows.render.email import UNSUBSCRIBE_PLACEHOLDER, RenderedEmail

logger = logging.getLogger(__name__)

B64_LINE = 57  # bytes of input per 76-character base64 line
TEST_SUBJECT_PREFIX = "[TEST] "


def refuse_line_breaks(name: str, value: str) -> str:
    """Return value unchanged, or raise DeliveryError when it could inject a header line."""
    if any(ch in value for ch in LINE_BREAKS):
        raise DeliveryError(
            f"{name} contains a line break ({value[:60]!r}); refusing to build a header from it",
            hint="remove CR/LF from the value: it would let the text add its own mail headers",
        )
    return value


def sender_domain(settings: Settings) -> str:
    return settings.from_address.rsplit("@", 1)[-1].lower()


def message_id(slug: str, audience: str, recipient: str, domain: str, content_hash: str = "") -> str:
    """Stable per (briefing version, audience, recipient): a retry or `--resend-uncertain` carries the same
    Message-ID, so receivers that saw the first copy drop the second; an edited briefing sent again with
    `--resend-updated` is a new message and gets a new one."""
    key = f"{slug}\x1f{audience}\x1f{recipient.lower()}\x1f{content_hash}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return f"<{slug}.{audience}.{digest}@{domain}>"


def unsubscribe_url(settings: Settings, audience: str, email: str) -> str:
    return f"{settings.base_url}/unsubscribe?t={quote(make_token(settings.secret, audience, email), safe='')}"


def unsubscribe_mailto(settings: Settings, audience: str) -> str:
    mailbox = settings.unsubscribe_mailto or f"unsubscribe@{sender_domain(settings)}"
    return f"mailto:{mailbox}?subject=unsubscribe%20{quote(audience, safe='')}"


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipient: str
    message_id: str
    data: bytes


def make_signer(settings: Settings) -> DkimSigner | None:
    return make_dkim_signer(settings, default_domain=sender_domain(settings))


class Base64Body:
    """A body whose base64 form is computed once up to the first per-recipient placeholder."""

    def __init__(self, body: str, placeholder: str) -> None:
        raw = body.encode("utf-8")
        self.placeholder = placeholder.encode("utf-8")
        first = raw.find(self.placeholder)
        if first < 0:
            raise DeliveryError(
                "the rendered body has no unsubscribe link", hint="keep {{ ctx.unsubscribe_url }} in the templates"
            )
        cut = first - first % B64_LINE
        self.head = _crlf_base64(raw[:cut])
        self.tail = raw[cut:]

    def encode(self, replacement: bytes) -> bytes:
        return self.head + _crlf_base64(self.tail.replace(self.placeholder, replacement))


def _crlf_base64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def ascii_address(email: str) -> str:
    """The address as it goes on the wire: an internationalised domain in its IDNA (xn--) form."""
    if email.isascii():
        return email
    local, _, domain = email.rpartition("@")
    if not local.isascii():
        raise DeliveryError(
            f"{email!r} has a non-ASCII local part, which needs SMTPUTF8 (not supported)",
            hint="ask the subscriber for an ASCII address",
        )
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError as exc:
        raise DeliveryError(f"{email!r}: the domain cannot be encoded: {exc}") from None


def to_header(name: str, email: str) -> bytes:
    """`Name <addr>` with the name quoted (ASCII) or as folded RFC 2047 encoded-words (anything else)."""
    if not name:
        return email.encode("ascii")
    if name.isascii():
        return formataddr((name, email)).encode("ascii")
    encoded = Header(name, "utf-8", header_name="To").encode(linesep="\r\n")
    return f"{encoded} <{email}>".encode("ascii")


class PreparedMessage:
    """One (briefing, audience) email with everything common to its recipients built and encoded."""

    def __init__(
        self,
        rendered: RenderedEmail,
        settings: Settings,
        *,
        audience_name: str,
        is_test: bool = False,
        signer: DkimSigner | None = None,
    ) -> None:
        self.rendered = rendered
        self.settings = settings
        self.is_test = is_test
        self.signer = signer
        self.domain = sender_domain(settings)
        self.sender = refuse_line_breaks("from address", settings.from_address)
        self.boundary = f"=_briefing_{hashlib.sha256(rendered.html.encode()).hexdigest()[:24]}"
        self.common = self._common_headers(audience_name)
        self.text = Base64Body(rendered.text, UNSUBSCRIBE_PLACEHOLDER)
        self.html = Base64Body(rendered.html, UNSUBSCRIBE_PLACEHOLDER)
        self.mailto = unsubscribe_mailto(settings, rendered.audience)

    def _common_headers(self, audience_name: str) -> bytes:
        settings, rendered = self.settings, self.rendered
        for name, value in (
            ("subject", rendered.subject),
            ("from name", settings.from_name),
            ("reply-to", settings.reply_to),
            ("audience name", audience_name),
            ("unsubscribe mailbox", settings.unsubscribe_mailto),
        ):
            refuse_line_breaks(name, value)
        msg = EmailMessage(policy=SMTP)
        msg["From"] = Address(display_name=settings.from_name, addr_spec=settings.from_address)
        if settings.reply_to:
            msg["Reply-To"] = settings.reply_to
        msg["Subject"] = (TEST_SUBJECT_PREFIX if self.is_test else "") + rendered.subject
        msg["List-Id"] = f"{audience_name} <{rendered.audience}.briefing.{self.domain}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["MIME-Version"] = "1.0"
        msg["X-Briefing"] = f"{rendered.slug}; audience={rendered.audience}; version={rendered.content_hash}"
        if self.is_test:
            msg["X-Briefing-Test"] = "yes"
        return b"".join(SMTP.fold_binary(name, value) for name, value in msg.items()) + (
            f'Content-Type: multipart/alternative; boundary="{self.boundary}"\r\n'.encode("ascii")
        )

    def message_id_for(self, email: str) -> str:
        if self.is_test:
            return f"<test.{self.rendered.slug}.{uuid.uuid4().hex}@{self.domain}>"
        return message_id(self.rendered.slug, self.rendered.audience, email, self.domain, self.rendered.content_hash)

    def for_recipient(self, subscriber: Subscriber, *, mid: str = "", date: datetime | None = None) -> Envelope:
        """The finished message for one recipient (mid: the ledger's Message-ID, so a resend reuses it)."""
        email = ascii_address(refuse_line_breaks("recipient address", subscriber.email))
        mid = mid or self.message_id_for(email)
        url = unsubscribe_url(self.settings, self.rendered.audience, email)
        headers = b"".join(
            (
                b"To: " + to_header(refuse_line_breaks("recipient name", subscriber.name), email) + b"\r\n",
                f"Date: {format_datetime(date or datetime.now(UTC))}\r\n".encode("ascii"),
                f"Message-ID: {mid}\r\n".encode("ascii"),
                # Written by hand: the email package would turn a long URL into encoded-words, which
                # List-Unsubscribe must never contain (RFC 2369 wants the bare <URL>s).
                f"List-Unsubscribe: <{url}>,\r\n <{self.mailto}>\r\n".encode("ascii"),
                self.common,
            )
        )
        marker = f"--{self.boundary}\r\n".encode("ascii")
        data = b"".join(
            (
                headers,
                b"\r\n",
                marker,
                b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n',
                self.text.encode(url.encode("ascii")),
                marker,
                b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: base64\r\n\r\n',
                self.html.encode(html.escape(url, quote=True).encode("ascii")),
                f"--{self.boundary}--\r\n".encode("ascii"),
            )
        )
        if self.signer is not None:
            data = self.signer.sign(data)
        return Envelope(sender=self.sender, recipient=email, message_id=mid, data=data)


def prepare_message(
    rendered: RenderedEmail, settings: Settings, *, audience_name: str, is_test: bool = False
) -> PreparedMessage:
    """Build and encode what a (briefing, audience) email shares across its recipients."""
    return PreparedMessage(
        rendered, settings, audience_name=audience_name, is_test=is_test, signer=make_signer(settings)
    )


def build_message(
    rendered: RenderedEmail,
    subscriber: Subscriber,
    settings: Settings,
    *,
    audience_name: str,
    is_test: bool = False,
    date: datetime | None = None,
) -> Envelope:
    """One message from scratch (tests, single sends); bulk sending reuses a PreparedMessage."""
    prepared = prepare_message(rendered, settings, audience_name=audience_name, is_test=is_test)
    return prepared.for_recipient(subscriber, date=date)

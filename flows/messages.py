"""Build RFC 5322 messages: multipart/alternative (text first, HTML base64), list and unsubscribe headers."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from urllib.parse import quote

from flows.errors import DeliveryError
from flows.models import Subscriber
from flows.render import UNSUBSCRIBE_PLACEHOLDER, RenderedEmail
from flows.settings import Settings
from flows.tokens import make_token

logger = logging.getLogger(__name__)


def refuse_line_breaks(name: str, value: str) -> str:
    if "\r" in value or "\n" in value:
        raise DeliveryError(
            f"{name} contains a line break; refusing to build a header from it",
            hint="remove CR/LF from the value (header injection)",
        )
    return value


def sender_domain(settings: Settings) -> str:
    return settings.from_address.rsplit("@", 1)[-1]


def message_id(slug: str, audience: str, recipient: str, domain: str) -> str:
    """Stable per (briefing, audience, recipient): a resend carries the same Message-ID."""
    digest = hashlib.sha256(f"{slug}\x1f{audience}\x1f{recipient.lower()}".encode()).hexdigest()[:20]
    return f"<{slug}.{audience}.{digest}@{domain}>"


def unsubscribe_url(settings: Settings, audience: str, email: str) -> str:
    return f"{settings.base_url}/unsubscribe?t={quote(make_token(settings.secret, audience, email))}"


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipient: str
    message_id: str
    data: bytes


def build_message(
    rendered: RenderedEmail,
    subscriber: Subscriber,
    settings: Settings,
    *,
    audience_name: str,
    is_test: bool = False,
    date: datetime | None = None,
) -> Envelope:
    domain = sender_domain(settings)
    for name, value in (
        ("subject", rendered.subject),
        ("recipient", subscriber.email),
        ("recipient name", subscriber.name),
        ("from name", settings.from_name),
    ):
        refuse_line_breaks(name, value)
    unsub = unsubscribe_url(settings, rendered.audience, subscriber.email)
    mailto = settings.unsubscribe_mailto or f"unsubscribe@{domain}"
    msg = EmailMessage(policy=SMTP)
    msg["From"] = formataddr((settings.from_name, settings.from_address))
    msg["To"] = Address(display_name=subscriber.name, addr_spec=subscriber.email)
    if settings.reply_to:
        msg["Reply-To"] = refuse_line_breaks("reply-to", settings.reply_to)
    msg["Subject"] = ("[TEST] " if is_test else "") + rendered.subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    mid = message_id(rendered.slug, rendered.audience, subscriber.email, domain)
    msg["Message-ID"] = mid if not is_test else f"<test.{mid[1:]}"
    msg["List-Id"] = f"{audience_name} <{rendered.audience}.briefing.{domain}>"
    msg["List-Unsubscribe"] = f"<{unsub}>, <mailto:{mailto}?subject=unsubscribe-{rendered.audience}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Briefing"] = f"{rendered.slug}; audience={rendered.audience}; hash={rendered.content_hash}"
    if is_test:
        msg["X-Briefing-Test"] = "yes"
    msg.set_content(rendered.text.replace(UNSUBSCRIBE_PLACEHOLDER, unsub), subtype="plain", cte="base64")
    msg.add_alternative(rendered.html.replace(UNSUBSCRIBE_PLACEHOLDER, unsub), subtype="html", cte="base64")
    return Envelope(sender=settings.from_address, recipient=subscriber.email, message_id=mid, data=msg.as_bytes())

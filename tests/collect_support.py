"""Real messages for the collect tests: a briefing email sent by the product, readers' replies to it, RFC 3464
delivery status notifications and RFC 5965 complaint reports about it."""

from __future__ import annotations

import email
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from flows.core.content import load_content
from flows.core.pages import assign_paths
from flows.core.settings import Settings
from flows.core.store import Store, ledger
from flows.deliver import deliver_briefing
from flows.deliver.transports import OutboxTransport
from flows.edition import render_for_archive

REPO = Path(__file__).resolve().parent.parent
BOUNCE_SAMPLES = REPO / "tests" / "data" / "bounces" / "flufl"


@dataclass(frozen=True)
class SentEmail:
    slug: str
    audience: str
    recipient: str
    message_id: str
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


def send_briefing(settings: Settings, store: Store, slug: str = "") -> list[SentEmail]:
    """Render a ready briefing and send it to every audience through the outbox; return what was sent."""
    content = load_content(settings.content_dir).content
    briefing = next(b for b in content.ready if not slug or b.slug == slug)
    rendered = render_for_archive(settings, content, briefing, assign_paths(store, content.ready)[briefing.slug])
    transport = OutboxTransport(settings.outbox_path)
    deliver_briefing(rendered, content, store, settings, transport=transport)
    sent = []
    for row in ledger.rows_in_state(store, ledger.SENT, slug=briefing.slug):
        envelope_folder = f"{row.slug}/{row.audience}"
        path = transport.path_for(_EnvelopeKey(row.recipient), envelope_folder)
        sent.append(SentEmail(row.slug, row.audience, row.recipient, row.message_id, path.read_bytes()))
    return sent


@dataclass(frozen=True)
class _EnvelopeKey:
    recipient: str


def _quoted(text: str) -> str:
    return "\n".join("> " + line if line else ">" for line in text.splitlines())


def reply_to(
    original: SentEmail,
    *,
    sender: str,
    name: str,
    text: str,
    html: str | None = None,
    html_only: bool = False,
    attachments: tuple[tuple[str, bytes, str], ...] = (),
    language: str = "zh",
) -> bytes:
    """A reader's reply as a mail client writes it: In-Reply-To/References, `Re:` subject, the whole briefing
    quoted under a `… wrote:` header (plain) or inside a gmail_quote container (HTML)."""
    source = original.message
    body = source.get_body(preferencelist=("plain",))
    source_text = body.get_content() if body is not None else ""
    source_html_part = source.get_body(preferencelist=("html",))
    source_html = source_html_part.get_content() if source_html_part is not None else ""
    when = "2026年6月5日 周五 09:00" if language == "zh" else "Fri, Jun 5, 2026 at 9:00 AM"
    wrote = f"{when}，阿头学 Briefing <briefing@example.org> 写道：" if language == "zh" else (
        f"On {when} Briefing <briefing@example.org> wrote:"
    )
    reply = EmailMessage(policy=policy.SMTP)
    reply["From"] = f"{name} <{sender}>"
    reply["To"] = source["From"]
    reply["Subject"] = "Re: " + str(source["Subject"])
    reply["Date"] = format_datetime(datetime(2026, 6, 5, 10, 30, tzinfo=UTC))
    reply["Message-ID"] = make_msgid(domain="example.net")
    reply["In-Reply-To"] = original.message_id
    reply["References"] = original.message_id
    plain = f"{text}\n\n{wrote}\n{_quoted(source_text)}\n"
    rich = (html or "".join(f"<p>{line}</p>" for line in text.split("\n\n"))) + (
        f'<div class="gmail_quote"><div class="gmail_attr">{wrote}</div>'
        f'<blockquote class="gmail_quote">{source_html}</blockquote></div>'
    )
    if html_only:
        reply.set_content(rich, subtype="html")
    else:
        reply.set_content(plain)
        if html is not None:
            reply.add_alternative(rich, subtype="html")
    for filename, data, mime in attachments:
        maintype, subtype = mime.split("/", 1)
        reply.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return reply.as_bytes()


def dsn(
    original: SentEmail, *, status: str, action: str = "failed", diagnostic: str = "", reporting: str = "mx.example.org"
) -> bytes:
    """An RFC 3464 delivery status notification for `original`, with its headers returned (text/rfc822-headers)."""
    recipient = original.recipient
    headers = original.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    boundary = "dsn-boundary-7f3a"
    diagnostic = diagnostic or (f"smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown"
                                if status.startswith("5") else f"smtp; 451 {status} mailbox temporarily unavailable")
    return (
        f"Return-Path: <>\r\n"
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting}>\r\n"
        f"To: briefing@example.org\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {format_datetime(datetime.now(UTC))}\r\n"
        f"Message-ID: {make_msgid(domain=reporting)}\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        f"\r\n--{boundary}\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
        f"I'm sorry to have to inform you that your message could not be delivered to {recipient}.\r\n"
        f"\r\n--{boundary}\r\n"
        f"Content-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; {reporting}\r\n"
        f"Arrival-Date: {format_datetime(datetime.now(UTC))}\r\n"
        f"\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        f"Remote-MTA: dns; inbound.example.org\r\n"
        f"Diagnostic-Code: {diagnostic}\r\n"
        f"\r\n--{boundary}\r\n"
        f"Content-Type: text/rfc822-headers\r\n\r\n"
        f"{headers}\r\n"
        f"\r\n--{boundary}--\r\n"
    ).encode()


def arf(original: SentEmail, *, feedback_type: str = "abuse", redacted: bool = True) -> bytes:
    """An RFC 5965 feedback report (a reader pressed "spam"), returning the whole original message. Large
    providers redact the reader's address; the returned Message-ID and List-Unsubscribe still identify it."""
    boundary = "arf-boundary-91c2"
    rcpt = "redacted@example.org" if redacted else original.recipient
    returned = original.data
    if redacted:
        returned = returned.replace(original.recipient.encode(), b"redacted@example.org", 1)
    return (
        (
            f"From: Feedback Loop <fbl@isp.example>\r\n"
            f"To: abuse@example.org\r\n"
            f"Subject: FW: complaint about a message from example.org\r\n"
            f"Date: {format_datetime(datetime.now(UTC))}\r\n"
            f"Message-ID: {make_msgid(domain='isp.example')}\r\n"
            f"MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n'
            f"\r\n--{boundary}\r\n"
            f"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
            f"This is an email abuse report for an email message received from example.org.\r\n"
            f"\r\n--{boundary}\r\n"
            f"Content-Type: message/feedback-report\r\n\r\n"
            f"Feedback-Type: {feedback_type}\r\n"
            f"User-Agent: ExampleFBL/1.0\r\n"
            f"Version: 1\r\n"
            f"Original-Mail-From: <briefing@example.org>\r\n"
            f"Original-Rcpt-To: <{rcpt}>\r\n"
            f"Arrival-Date: {format_datetime(datetime.now(UTC))}\r\n"
            f"Reporting-MTA: dns; mail.isp.example\r\n"
            f"\r\n--{boundary}\r\n"
            f"Content-Type: message/rfc822\r\n\r\n"
        ).encode()
        + returned
        + f"\r\n--{boundary}--\r\n".encode()
    )


def plain_message(*, sender: str, to: str, subject: str, body: str, headers: dict[str, str] | None = None) -> bytes:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="example.net")
    for key, value in (headers or {}).items():
        message[key] = value
    message.set_content(body)
    return message.as_bytes()

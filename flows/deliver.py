"""Deliver stage: each audience's email to its subscribers, exactly once. Entry point: `deliver_briefing`."""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from flows import ledger
from flows.messages import build_message, message_id, sender_domain
from flows.models import Audience, Content, Subscriber
from flows.render import RenderedBriefing, RenderedEmail
from flows.settings import Settings
from flows.store import Store, utcnow
from flows.transports import OutboxTransport, SendResult, SmtpTransport, Transport

logger = logging.getLogger(__name__)

BATCH_SIZE = 200


@dataclass
class AudienceDelivery:
    audience: str
    queued: int = 0
    states: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class DeliveryReport:
    slug: str
    audiences: dict[str, AudienceDelivery] = field(default_factory=dict)

    @property
    def sent_now(self) -> int:
        return sum(a.states[ledger.SENT] for a in self.audiences.values())

    @property
    def uncertain(self) -> int:
        return sum(a.states[ledger.UNCERTAIN] for a in self.audiences.values())


def make_transport(settings: Settings) -> Transport:
    if settings.smtp_url:
        return SmtpTransport(
            settings.smtp_url, starttls=settings.smtp_starttls, timeout=settings.smtp_timeout, rate=settings.smtp_rate
        )
    return OutboxTransport(settings.outbox_path)


def active_subscribers(audience: Audience, store: Store) -> list[Subscriber]:
    gone = store.unsubscribed(audience.id)
    return [s for s in audience.subscribers if s.email.lower() not in gone]


def _retry_at(attempts: int) -> timedelta:
    return timedelta(seconds=min(3600, 30 * 2 ** max(0, attempts - 1)) * (0.5 + random.random()))


def send_rows(
    rows: list[ledger.LedgerRow],
    rendered: RenderedEmail,
    subscribers: dict[str, Subscriber],
    audience: Audience,
    store: Store,
    settings: Settings,
    transport: Transport,
    worker: str,
    report: AudienceDelivery,
) -> None:
    """Send one leased batch; every row ends sent, deferred, failed or uncertain in the ledger."""
    for row in rows:
        subscriber = subscribers.get(row.recipient) or Subscriber(email=row.recipient)
        envelope = build_message(rendered, subscriber, settings, audience_name=audience.name)
        if not ledger.start_sending(store, row.id, worker):
            continue
        try:
            result = transport.send(envelope, f"{rendered.slug}/{rendered.audience}")
        except Exception as exc:  # any transport bug must still leave the row in a truthful state
            logger.exception("transport failed for %s", row.recipient)
            result = SendResult(ledger.UNCERTAIN, f"transport error: {exc}")
        retry = utcnow() + _retry_at(row.attempts + 1) if result.state == ledger.DEFERRED else None
        ledger.finish(store, row.id, result.state, result.reply, retry)
        report.states[result.state] += 1
        if result.state in (ledger.FAILED, ledger.DEFERRED, ledger.UNCERTAIN):
            report.failures.append((row.recipient, result.reply))


def deliver_audience(
    rendered: RenderedEmail,
    audience: Audience,
    store: Store,
    settings: Settings,
    transport: Transport,
    *,
    resend_updated: bool = False,
) -> AudienceDelivery:
    report = AudienceDelivery(audience=audience.id)
    subscribers = {s.email: s for s in active_subscribers(audience, store)}
    domain = sender_domain(settings)
    recipients = {email: message_id(rendered.slug, audience.id, email, domain) for email in subscribers}
    report.queued = ledger.enqueue(
        store, rendered.slug, audience.id, rendered.content_hash, recipients, resend_updated=resend_updated
    )
    worker = ledger.worker_id()
    try:
        while rows := ledger.claim_batch(store, rendered.slug, audience.id, worker, BATCH_SIZE):
            send_rows(rows, rendered, subscribers, audience, store, settings, transport, worker, report)
    finally:
        ledger.release(store, worker)
    return report


def deliver_briefing(
    rendered: RenderedBriefing,
    content: Content,
    store: Store,
    settings: Settings,
    *,
    audiences: list[str] | None = None,
    resend_updated: bool = False,
    resend_uncertain: bool = False,
    transport: Transport | None = None,
) -> DeliveryReport:
    """Send every audience's email to its subscribers; rows already sent are skipped."""
    ledger.mark_dead_workers_uncertain(store)
    if resend_uncertain:
        ledger.requeue_uncertain(store, rendered.briefing.slug)
    own_transport = transport is None
    transport = transport or make_transport(settings)
    report = DeliveryReport(slug=rendered.briefing.slug)
    try:
        for audience_id, email in rendered.emails.items():
            if audiences and audience_id not in audiences:
                continue
            report.audiences[audience_id] = deliver_audience(
                email, content.audience(audience_id), store, settings, transport, resend_updated=resend_updated
            )
    finally:
        if own_transport:
            transport.close()
    return report

"""Deliver stage: each audience's email to its subscribers, exactly once. Entry point: `deliver_briefing`.

Per (briefing, audience): queue one ledger row per subscriber (unsubscribed ones are recorded as skipped),
build the message once, then let `smtp_connections` workers lease batches and send them, each on its own
connection, at most `smtp_rate` messages per second together. Deferred (4xx) rows are retried in the same run
while they come due within `delivery_retry_window`; whatever is still queued or deferred at the end is
reported as pending, never as done.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Connection

from flows.core.backoff import backoff_delay
from flows.core.content import check_address
from flows.core.errors import DeliveryError
from flows.core.models import Audience, Content, Subscriber
from flows.core.settings import Settings
from flows.core.store import Store, ledger, utcnow
from flows.deliver.messages import PreparedMessage, prepare_message
from flows.deliver.transports import (
    NOT_SENT,
    OutboxTransport,
    RateLimiter,
    SendResult,
    SmtpTransport,
    Transport,
    default_ehlo_name,
)
from flows.render.email import RenderedBriefing, RenderedEmail

logger = logging.getLogger(__name__)

MAX_RETRY_DELAY = 3600.0
NOT_SENT_LIMIT = 3  # consecutive "could not reach the server" results before a worker gives up


@dataclass(frozen=True)
class Failure:
    """A recipient not delivered: its ledger state and why. Unpacks as the skeleton's (recipient, reason) pair,
    which other stages iterate over, with the state in front of the reason."""

    recipient: str
    state: str
    reason: str

    def __iter__(self) -> Iterator[str]:
        return iter((self.recipient, f"{self.state}: {self.reason}"))


@dataclass
class AudienceDelivery:
    """One audience's send: what this run did (`states`) and where the ledger stands after it (`totals`)."""

    audience: str
    queued: int = 0
    states: Counter[str] = field(default_factory=Counter)
    totals: Counter[str] = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)
    error: str = ""

    @property
    def pending(self) -> int:
        return sum(self.totals[s] for s in ledger.PENDING)

    @property
    def complete(self) -> bool:
        return not self.pending and not self.error and not self.totals[ledger.SENDING]

    def to_dict(self) -> dict[str, Any]:
        return {
            "audience": self.audience,
            "queued": self.queued,
            "this_run": dict(self.states),
            "totals": dict(self.totals),
            "pending": self.pending,
            "complete": self.complete,
            "error": self.error,
            "failures": [{"recipient": f.recipient, "state": f.state, "reason": f.reason} for f in self.failures],
        }


@dataclass
class DeliveryReport:
    slug: str
    audiences: dict[str, AudienceDelivery] = field(default_factory=dict)

    def _sum(self, attribute: str, state: str) -> int:
        return sum(getattr(a, attribute)[state] for a in self.audiences.values())

    @property
    def sent_now(self) -> int:
        return self._sum("states", ledger.SENT)

    @property
    def uncertain(self) -> int:
        """Rows left uncertain in the ledger (this run or earlier): they need the editor's decision."""
        return self._sum("totals", ledger.UNCERTAIN)

    @property
    def failed_now(self) -> int:
        return self._sum("states", ledger.FAILED)

    @property
    def pending(self) -> int:
        return sum(a.pending for a in self.audiences.values())

    @property
    def complete(self) -> bool:
        return all(a.complete for a in self.audiences.values())

    @property
    def needs_attention(self) -> bool:
        """Exit status 6: something failed in this run, is uncertain, still pending, or could not start."""
        return bool(self.failed_now or self.uncertain or not self.complete)

    def to_dict(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "sent_now": self.sent_now,
            "failed_now": self.failed_now,
            "uncertain": self.uncertain,
            "pending": self.pending,
            "complete": self.complete,
            "audiences": {k: v.to_dict() for k, v in self.audiences.items()},
        }


TransportFactory = Callable[[], Transport]


def make_transport(settings: Settings) -> Transport:
    if settings.smtp_url:
        return SmtpTransport(
            settings.smtp_url,
            tls=settings.smtp_tls,
            ehlo_name=settings.smtp_ehlo_name or default_ehlo_name(settings.from_address),
            timeout=settings.smtp_timeout,
        )
    return OutboxTransport(settings.outbox_path)


def warn_if_unsubscribe_url_is_not_https(settings: Settings) -> None:
    """Call once per run that sends over SMTP (not per briefing or email)."""
    if settings.smtp_url and not settings.base_url.startswith("https://"):
        logger.warning(
            "BRIEFING_BASE_URL is %s: one-click unsubscribe (RFC 8058) needs an https:// link; "
            "large mailbox providers ignore it otherwise",
            settings.base_url,
        )


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """Exponential backoff with ±25 % jitter, so deferred recipients of one server do not return together."""
    delay = backoff_delay(settings.delivery_retry_delay, max(0, attempts - 1), jitter=0.25, cap=MAX_RETRY_DELAY)
    return timedelta(seconds=delay)


class _TransportDownError(Exception):
    pass


class AudienceSend:
    """The send of one (briefing, audience) email: shared state of its worker threads."""

    def __init__(
        self,
        prepared: PreparedMessage,
        audience: Audience,
        store: Store,
        settings: Settings,
        report: AudienceDelivery,
    ) -> None:
        self.prepared = prepared
        self.rendered = prepared.rendered
        self.audience = audience
        self.store = store
        self.settings = settings
        self.report = report
        self.subscribers = {s.email: s for s in audience.subscribers}
        self.folder = f"{self.rendered.slug}/{self.rendered.audience}"
        self.limiter = RateLimiter(settings.smtp_rate)
        self._lock = threading.Lock()

    def batch_size(self) -> int:
        """Small enough that a rate-limited connection sends its batch well within the lease."""
        rate = self.settings.smtp_rate / max(1, self.settings.smtp_connections)
        if not rate:
            return self.settings.delivery_batch_size
        return max(1, min(self.settings.delivery_batch_size, int(rate * ledger.LEASE.total_seconds() / 2)))

    def count(self, state: str) -> None:
        with self._lock:
            self.report.states[state] += 1

    def run_worker(self, transport: Transport) -> None:
        """Lease and send batches until none is left; rows this worker did not start go back on exit."""
        _Worker(self, transport).run()

    def outcome(self, row: ledger.LedgerRow, result: SendResult, attempts: int = 0) -> ledger.Outcome:
        retry_at = utcnow() + retry_delay(self.settings, attempts) if result.state == ledger.DEFERRED else None
        return ledger.Outcome(row.id, result.state, result.reply, retry_at)


class _Worker:
    """One connection's share of an audience send. The outcome of the row it last sent is written together
    with the next row's `sending` mark (one commit per message); it is written on its own before any pause
    (a rate-limit wait, the next lease) and when the worker stops, so a sent row never waits unrecorded."""

    def __init__(self, job: AudienceSend, transport: Transport) -> None:
        self.job = job
        self.transport = transport
        self.id = ledger.worker_id()
        self.unrecorded: ledger.Outcome | None = None
        self.held: Connection | None = None

    def run(self) -> None:
        with self.job.store.writer() as self.held:
            self._send_batches()

    def _send_batches(self) -> None:
        job = self.job
        not_sent = 0
        try:
            while rows := self._claim():
                gone = job.store.unsubscribed(job.audience.id)  # honour unsubscribes that arrive mid-send
                blocked = job.store.suppressed()  # and suppressions (bounces, complaints) recorded mid-send
                for row in rows:
                    result = self.send_row(row, gone, blocked)
                    not_sent = not_sent + 1 if result.state == NOT_SENT else 0
                    if not_sent >= NOT_SENT_LIMIT:
                        raise _TransportDownError(f"{self.transport.name}: {result.reply}")
        finally:
            self.record()
            ledger.release(job.store, self.id)

    def _claim(self) -> list[ledger.LedgerRow]:
        self.record()
        job = self.job
        return ledger.claim_batch(
            job.store,
            job.rendered.slug,
            job.audience.id,
            self.id,
            job.batch_size(),
            content_hash=job.rendered.content_hash,
        )

    def send_row(self, row: ledger.LedgerRow, gone: set[str], blocked: dict[str, str] | None = None) -> SendResult:
        job = self.job
        if blocked and row.recipient.lower() in blocked:
            return self._finish(row, SendResult(ledger.SUPPRESSED, blocked[row.recipient.lower()]))
        subscriber = job.subscribers.get(row.recipient)
        if subscriber is None or row.recipient.lower() in gone:
            reason = "unsubscribed" if row.recipient.lower() in gone else "no longer in the subscriber list"
            return self._finish(row, SendResult(ledger.SKIPPED, reason))
        try:
            envelope = job.prepared.for_recipient(subscriber, mid=row.message_id)
        except DeliveryError as exc:
            return self._finish(row, SendResult(ledger.FAILED, f"cannot build the message: {exc}"))
        pause = job.limiter.reserve()
        if pause > 0:
            self.record()
            time.sleep(pause)
        if not self._start(row):
            logger.warning("lost the lease on %s before sending; another worker has it", row.recipient)
            return SendResult("", "lease lost")
        try:
            result = self.transport.send(envelope, job.folder)
        except Exception as exc:  # a transport bug must still leave the row in a truthful state
            logger.exception("transport %s failed for %s", self.transport.name, row.recipient)
            result = SendResult(ledger.UNCERTAIN, f"transport error: {exc!r}")
        if result.state == ledger.DEFERRED and row.attempts + 1 >= job.settings.delivery_max_attempts:
            result = SendResult(ledger.FAILED, f"gave up after {row.attempts + 1} temporary refusals: {result.reply}")
        if result.state == NOT_SENT:
            logger.warning("not sent to %s: %s", row.recipient, result.reply)
        self.unrecorded = job.outcome(row, result, attempts=row.attempts + 1)
        return result

    def _start(self, row: ledger.LedgerRow) -> bool:
        pending, self.unrecorded = self.unrecorded, None
        started = ledger.start_sending(self.job.store, row.id, self.id, recording=pending, held=self.held)
        if pending is not None:
            self.job.count(pending.state)
        return started

    def _finish(self, row: ledger.LedgerRow, result: SendResult) -> SendResult:
        self.record()
        self.unrecorded = self.job.outcome(row, result)
        self.record()
        return result

    def record(self) -> None:
        """Write the outcome still held in memory, if any."""
        if self.unrecorded is None:
            return
        outcome, self.unrecorded = self.unrecorded, None
        ledger.finish(
            self.job.store,
            outcome.row_id,
            outcome.state,
            outcome.reply,
            outcome.retry_at,
            worker=self.id,
            held=self.held,
        )
        self.job.count(outcome.state)


def active_subscribers(audience: Audience, store: Store) -> list[Subscriber]:
    gone = store.unsubscribed(audience.id)
    return [s for s in audience.subscribers if s.email.lower() not in gone]


def _queue(
    rendered: RenderedEmail, audience: Audience, store: Store, prepared: PreparedMessage, resend_updated: bool
) -> int:
    gone = store.unsubscribed(audience.id)
    blocked = store.suppressed()
    entries = [
        ledger.Entry(s.email, prepared.message_id_for(s.email), ledger.SUPPRESSED, blocked[s.email.lower()])
        if s.email.lower() in blocked
        else ledger.Entry(s.email, prepared.message_id_for(s.email), ledger.SKIPPED, "unsubscribed")
        if s.email.lower() in gone
        else ledger.Entry(s.email, prepared.message_id_for(s.email))
        for s in audience.subscribers
    ]
    queued = ledger.enqueue(
        store, rendered.slug, audience.id, rendered.content_hash, entries, resend_updated=resend_updated
    )
    listed = {s.email for s in audience.subscribers}
    reasons = {
        recipient: "unsubscribed" if recipient.lower() in gone else "no longer in the subscriber list"
        for recipient in ledger.pending_recipients(store, rendered.slug, audience.id)
        if recipient not in listed or recipient.lower() in gone
    }
    if reasons:
        ledger.skip_pending(store, rendered.slug, audience.id, reasons)
    for recipient in ledger.pending_recipients(store, rendered.slug, audience.id):
        if recipient.lower() in blocked:
            ledger.suppress_pending(store, recipient, blocked[recipient.lower()])
    return queued


def deliver_audience(
    rendered: RenderedEmail,
    audience: Audience,
    store: Store,
    settings: Settings,
    transport: Transport | TransportFactory,
    *,
    resend_updated: bool = False,
) -> AudienceDelivery:
    """Queue, send and retry one audience's email; the report says where every row stands afterwards."""
    report = AudienceDelivery(audience=audience.id)
    try:
        prepared = prepare_message(rendered, settings, audience_name=audience.name)
        report.queued = _queue(rendered, audience, store, prepared, resend_updated)
        _send_until_settled(AudienceSend(prepared, audience, store, settings, report), transport, settings)
    except DeliveryError as exc:
        report.error = str(exc)
        logger.error("%s/%s: %s", rendered.slug, audience.id, exc)
    _fill_totals(report, store, rendered.slug)
    return report


def _send_until_settled(job: AudienceSend, transport: Transport | TransportFactory, settings: Settings) -> None:
    deadline = time.monotonic() + settings.delivery_retry_window
    rendered = job.rendered
    while True:
        _run_workers(job, transport, settings)
        due = ledger.next_retry(job.store, rendered.slug, job.audience.id, rendered.content_hash)
        if due is None:
            return
        wait = max(0.0, (due - utcnow()).total_seconds())
        if time.monotonic() + wait > deadline:
            logger.info(
                "%s/%s: deferred rows come due after the retry window; left for the next send",
                rendered.slug,
                job.audience.id,
            )
            return
        time.sleep(wait)


def _run_workers(job: AudienceSend, transport: Transport | TransportFactory, settings: Settings) -> None:
    if not callable(transport):
        _run_one(job, transport, own=False)
        return
    connections = settings.smtp_connections if settings.smtp_url else 1
    if connections == 1:
        _run_one(job, transport(), own=True)
        return
    with ThreadPoolExecutor(max_workers=connections, thread_name_prefix="smtp") as pool:
        futures = [pool.submit(_run_one, job, transport(), own=True) for _ in range(connections)]
        errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error


def _run_one(job: AudienceSend, transport: Transport, *, own: bool) -> None:
    try:
        opener = getattr(transport, "open", None)  # wrappers written for the skeleton's Transport lack it
        if opener is not None:
            opener()
        job.run_worker(transport)
    except _TransportDownError as exc:
        raise DeliveryError(f"stopped sending: the transport kept failing ({exc})") from None
    finally:
        if own:
            transport.close()


def _fill_totals(report: AudienceDelivery, store: Store, slug: str) -> None:
    for (_slug, _audience, state), n in ledger.counts(store, slug, report.audience).items():
        report.totals[state] += n
    problem_states = (ledger.FAILED, ledger.UNCERTAIN, ledger.DEFERRED, ledger.QUEUED)
    report.failures = [
        Failure(r.recipient, r.state, r.last_reply or "not attempted yet")
        for r in ledger.rows_in_state(store, problem_states, slug, report.audience)
    ]


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
    """Send every (or the named) audience's email to its subscribers; rows already sent are skipped."""
    slug = rendered.briefing.slug
    if rendered.briefing.machine_drafts:  # last line of the review gate; `flows.edition.gate` holds these back first
        raise DeliveryError(
            f"{len(rendered.briefing.machine_drafts)} machine-drafted parts are not reviewed",
            where=slug,
            hint="review them and delete their '<!-- machine-draft … -->' lines (`briefing check` lists them)",
        )
    unknown = sorted(set(audiences or ()) - set(rendered.emails))
    if unknown:
        raise DeliveryError(
            f"no rendered email for audience {', '.join(unknown)}",
            where=slug,
            hint=f"use one of: {', '.join(sorted(rendered.emails))}",
        )
    ledger.mark_dead_workers_uncertain(store)
    if resend_uncertain:
        requeued = ledger.requeue_uncertain(store, slug, audiences)
        logger.info("%s: %d uncertain rows queued again (same Message-ID)", slug, requeued)
    report = DeliveryReport(slug=slug)
    for audience_id, email in rendered.emails.items():
        if audiences and audience_id not in audiences:
            continue
        report.audiences[audience_id] = deliver_audience(
            email,
            content.audience(audience_id),
            store,
            settings,
            transport if transport is not None else (lambda: make_transport(settings)),
            resend_updated=resend_updated,
        )
    return report


def send_test(
    rendered: RenderedEmail,
    audience: Audience,
    address: str,
    settings: Settings,
    transport: Transport | None = None,
) -> tuple[str, SendResult]:
    """Send one message marked as a test to `address`; the ledger of real recipients is not touched.

    Returns (Message-ID, result)."""
    try:
        email = check_address(address)
    except ValueError as exc:
        raise DeliveryError(f"invalid test address {address!r}: {exc}", hint="give a full address") from None
    prepared = prepare_message(rendered, settings, audience_name=audience.name, is_test=True)
    envelope = prepared.for_recipient(Subscriber(email=email, name=""))
    own = transport is None
    transport = transport or make_transport(settings)
    try:
        transport.open()
        result = transport.send(envelope, f"_test/{rendered.slug}/{rendered.audience}")
    finally:
        if own:
            transport.close()
    return envelope.message_id, result

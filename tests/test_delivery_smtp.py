"""Delivery through a real aiosmtpd server on loopback: faults, retries, exactly-once, reporting."""

from __future__ import annotations

import threading
from pathlib import Path

from flows.core.settings import load_settings
from flows.core.store import Store, ledger
from flows.deliver.send import deliver_audience, deliver_briefing, send_test
from flows.deliver.transports import SmtpTransport
from tests.delivery_support import (
    FaultyMailbox,
    SmtpServer,
    load_sample,
    render_sample,
    write_subscribers,
)

FAST_RETRIES = {
    "delivery_retry_delay": 0.05,
    "delivery_retry_window": 20.0,
    "secret": "test-secret-0123456789-abcdefghijkl",
}


def _emails(n: int, prefix: str = "reader") -> list[str]:
    return [f"{prefix}{i:04d}@example.net" for i in range(n)]


def _setup(project: Path, store: Store, n: int, **overrides):
    recipients = _emails(n)
    write_subscribers(project, "atou.csv", recipients)
    content = load_sample(project)
    settings = load_settings(**{**FAST_RETRIES, **overrides})
    rendered = render_sample(settings, store, content)
    return recipients, content, settings, rendered


def test_faults_451_550_and_drops_end_with_one_copy_each_and_reasons(project: Path, store: Store) -> None:
    recipients, content, _, rendered = _setup(project, store, 40)
    greylisted = set(recipients[3:9])
    hopeless = {recipients[10]}  # 451 forever: fails after delivery_max_attempts
    rejected = set(recipients[12:16])
    handler = FaultyMailbox(
        temporary={**dict.fromkeys(greylisted, 2), **dict.fromkeys(hopeless, 10_000)},
        permanent=rejected,
        drop_after_data={7, 25},  # the server keeps these messages but the client never hears back
        drop_at_mail={20, 31},  # the connection dies before a message: sent again on a new connection
    )
    with SmtpServer(handler) as server:
        settings = load_settings(**FAST_RETRIES, smtp_url=server.url, delivery_max_attempts=4)
        report = deliver_briefing(rendered, content, store, settings, audiences=["atou"])

    result = report.audiences["atou"]
    received = handler.by_recipient()
    deliverable = set(recipients) - rejected - hopeless
    assert set(received) == deliverable, "every deliverable recipient got the email"
    assert all(n == 1 for n in received.values()), "and exactly one copy"
    by_state = {
        state: {r.recipient for r in ledger.rows_in_state(store, state, rendered.briefing.slug)}
        for state in ledger.STATES
    }
    assert by_state[ledger.FAILED] == rejected | hopeless
    assert len(by_state[ledger.UNCERTAIN]) == 2 and by_state[ledger.UNCERTAIN] <= deliverable
    assert by_state[ledger.SENT] == deliverable - by_state[ledger.UNCERTAIN]
    assert not by_state[ledger.QUEUED] and not by_state[ledger.DEFERRED] and not by_state[ledger.SENDING]
    reasons = {f.recipient: f.reason for f in result.failures}
    for address in rejected:
        assert "550" in reasons[address] and "no such mailbox" in reasons[address]
    assert "gave up after 4" in reasons[recipients[10]] and "451" in reasons[recipients[10]]
    assert result.totals[ledger.SENT] + result.totals[ledger.UNCERTAIN] + result.totals[ledger.FAILED] == 40
    assert report.uncertain == 2 and report.needs_attention and result.complete
    for address in greylisted:
        assert handler.refusals[address] == 2


def test_uncertain_rows_are_resent_only_when_asked_with_the_same_message_id(project: Path, store: Store) -> None:
    _, content, _, rendered = _setup(project, store, 6)
    handler = FaultyMailbox(drop_after_data={2})
    with SmtpServer(handler) as server:
        settings = load_settings(**FAST_RETRIES, smtp_url=server.url)
        first = deliver_briefing(rendered, content, store, settings, audiences=["atou"])
        again = deliver_briefing(rendered, content, store, settings, audiences=["atou"])
        assert first.uncertain == again.uncertain == 1 and again.sent_now == 0
        assert handler.count() == 6
        resent = deliver_briefing(rendered, content, store, settings, audiences=["atou"], resend_uncertain=True)
    assert resent.sent_now == 1 and resent.uncertain == 0
    counts = handler.by_recipient()
    doubled = [r for r, n in counts.items() if n == 2]
    assert len(doubled) == 1 and sum(counts.values()) == 7
    ids = {r.message["Message-ID"] for r in handler.received if r.recipient == doubled[0]}
    assert len(ids) == 1, "the resend carries the same Message-ID, so the receiver can drop the copy"


def test_parallel_connections_and_concurrent_senders_never_send_a_row_twice(project: Path, store: Store) -> None:
    """Runs on SQLite and PostgreSQL (the `store` fixture is parametrised over both)."""
    _concurrent_senders(project, store)


def _concurrent_senders(project: Path, store: Store) -> None:
    recipients, content, _, rendered = _setup(project, store, 150)
    handler = FaultyMailbox()
    with SmtpServer(handler) as server:
        settings = load_settings(**FAST_RETRIES, smtp_url=server.url, smtp_connections=3, delivery_batch_size=7)
        email = rendered.emails["atou"]
        audience = content.audience("atou")
        other_store = Store(store.url)  # a second engine: as if another process were sending too
        errors: list[BaseException] = []

        def run(target_store: Store) -> None:
            try:
                deliver_audience(email, audience, target_store, settings, lambda: SmtpTransport(server.url))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(s,)) for s in (store, other_store)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        other_store.close()
    assert not errors
    counts = handler.by_recipient()
    assert set(counts) == set(recipients) and set(counts.values()) == {1}
    assert ledger.summarise(store, email.slug)[ledger.SENT] == 150


def test_second_send_sends_nothing_and_edited_briefing_waits_for_resend_updated(project: Path, store: Store) -> None:
    recipients, content, settings, rendered = _setup(project, store, 5)
    handler = FaultyMailbox()
    with SmtpServer(handler) as server:
        settings = load_settings(**FAST_RETRIES, smtp_url=server.url)
        assert deliver_briefing(rendered, content, store, settings, audiences=["atou"]).sent_now == 5
        assert deliver_briefing(rendered, content, store, settings, audiences=["atou"]).sent_now == 0
        path = Path(rendered.briefing.path)
        text = path.read_text(encoding="utf-8")
        path.write_text(
            text.replace(rendered.briefing.verdict, rendered.briefing.verdict + "（更新）", 1), encoding="utf-8"
        )
        edited_content = load_sample(project)
        edited = render_sample(settings, store, edited_content, rendered.briefing.slug)
        assert edited.briefing.content_hash() != rendered.briefing.content_hash()
        quiet = deliver_briefing(edited, edited_content, store, settings, audiences=["atou"])
        assert quiet.sent_now == 0 and handler.count() == 5 and quiet.complete
        loud = deliver_briefing(edited, edited_content, store, settings, audiences=["atou"], resend_updated=True)
    assert loud.sent_now == 5 and handler.count() == 10
    ids = [r.message["Message-ID"] for r in handler.received if r.recipient == recipients[0]]
    assert len(set(ids)) == 2, "the edited edition is a new message"
    assert "（更新）" in handler.received[-1].message["Subject"]


def test_deferred_rows_left_after_the_window_are_reported_pending_not_done(project: Path, store: Store) -> None:
    recipients, content, _, rendered = _setup(project, store, 4)
    handler = FaultyMailbox(temporary={recipients[1]: 10_000})
    with SmtpServer(handler) as server:
        settings = load_settings(**{**FAST_RETRIES, "delivery_retry_delay": 60.0}, smtp_url=server.url)
        report = deliver_briefing(rendered, content, store, settings, audiences=["atou"])
    result = report.audiences["atou"]
    assert result.pending == 1 and not result.complete and report.needs_attention
    assert [(f.recipient, f.state) for f in result.failures] == [(recipients[1], ledger.DEFERRED)]
    assert "451" in result.failures[0].reason
    ((who, why),) = result.failures  # the skeleton's (recipient, reason) pairs, which pipelines unpack
    assert who == recipients[1] and why.startswith("deferred: 451")


def test_unreachable_server_leaves_every_row_queued_with_an_error(project: Path, store: Store) -> None:
    _, content, _, rendered = _setup(project, store, 3)
    dead = SmtpServer()  # never started: nothing listens on its port
    settings = load_settings(**FAST_RETRIES, smtp_url=dead.url)
    report = deliver_briefing(rendered, content, store, settings, audiences=["atou"])
    result = report.audiences["atou"]
    assert "cannot connect" in result.error and str(dead.port) in result.error
    assert result.totals == {ledger.QUEUED: 3} and report.needs_attention


def test_unsubscribed_address_is_skipped_and_recorded(project: Path, store: Store) -> None:
    recipients, content, _, rendered = _setup(project, store, 3)
    store.unsubscribe("atou", recipients[0].upper(), "cli")
    handler = FaultyMailbox()
    with SmtpServer(handler) as server:
        settings = load_settings(**FAST_RETRIES, smtp_url=server.url)
        report = deliver_briefing(rendered, content, store, settings, audiences=["atou", "neta"])
    assert recipients[0] not in handler.by_recipient()
    assert set(recipients[1:]) <= set(handler.by_recipient())
    skipped = ledger.rows_in_state(store, ledger.SKIPPED, rendered.briefing.slug, "atou")
    assert [(r.recipient, r.last_reply) for r in skipped] == [(recipients[0], "unsubscribed")]
    assert report.audiences["atou"].totals[ledger.SKIPPED] == 1 and report.complete


def test_test_send_goes_out_marked_and_leaves_the_ledger_alone(project: Path, store: Store) -> None:
    _, content, _, rendered = _setup(project, store, 2)
    handler = FaultyMailbox()
    with SmtpServer(handler) as server:
        settings = load_settings(**FAST_RETRIES, smtp_url=server.url)
        mid, result = send_test(rendered.emails["neta"], content.audience("neta"), "editor@example.org", settings)
    assert result.state == ledger.SENT
    (received,) = handler.received
    assert received.recipient == "editor@example.org"
    assert received.message["X-Briefing-Test"] == "yes" and received.message["Message-ID"] == mid
    assert ledger.counts(store) == {}


def test_lines_starting_with_a_dot_arrive_intact() -> None:
    from flows.deliver.messages import Envelope

    data = b"Subject: dots\r\nMessage-ID: <d@x>\r\n\r\n.hidden\r\n..two dots\r\nlast line\r\n"
    handler = FaultyMailbox()
    with SmtpServer(handler) as server:
        transport = SmtpTransport(server.url)
        result = transport.send(Envelope("a@example.org", "b@example.net", "<d@x>", data), "x")
        transport.close()
    assert result.state == ledger.SENT
    (received,) = handler.received
    assert received.data == data

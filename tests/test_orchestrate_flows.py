"""The Prefect flows end to end on the sample content, with the session's Prefect harness.

Real parts: a loopback HTTP feed server that fails its first requests (to show Prefect's task retry is
real), the outbox transport, the SQLite store, and artifacts/limits read back from the Prefect API.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flows.core.content import load_content

pytestmark = pytest.mark.usefixtures("prefect_harness")

SLUG = "anthropic-ai-builds-ai"


class FlakyFeed:
    """Serves the sample feed on 127.0.0.1, answering 500 to the first `failures` requests."""

    def __init__(self, body: bytes, failures: int) -> None:
        self.body, self.failures, self.hits = body, failures, 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                if owner.hits <= owner.failures:
                    self.send_response(500)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/rss+xml")
                self.send_header("Content-Length", str(len(owner.body)))
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/feed.xml"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyFeed:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky_feed(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FlakyFeed]:
    body = (project / "content" / "samples" / "ai-news.xml").read_bytes()
    with FlakyFeed(body, failures=2) as server:
        (project / "content" / "feeds.yaml").write_text(
            f"feeds:\n  - id: frontier-notes\n    url: {server.url}\n", encoding="utf-8"
        )
        monkeypatch.setenv("BRIEFING_ALLOW_PRIVATE_ADDRESSES", "true")
        monkeypatch.setenv("BRIEFING_FETCH_RETRIES", "0")  # the stage's own retries off: only Prefect retries
        monkeypatch.setenv("BRIEFING_TASK_RETRIES", "3")
        monkeypatch.setenv("BRIEFING_TASK_RETRY_DELAY", "0.05")
        yield server


def _task_runs(flow_run_id: Any) -> list[Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with get_client(sync_client=True) as client:
        return client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
            limit=100,
        )


def _artifact(key: str) -> dict[str, Any]:
    """The newest artifact with this key, read from the API (the 3.8 client's Artifact.get sends a bad filter)."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    body = {"artifacts": {"key": {"any_": [key]}}, "sort": "UPDATED_DESC", "limit": 1, "offset": 0}
    response = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body, timeout=30)
    response.raise_for_status()
    found = response.json()
    assert found, f"no artifact {key!r}"
    return found[0]


def _outbox(project: Path, slug: str = "") -> list[Path]:
    return sorted((project / "outputs" / "outbox" / slug).rglob("*.eml"))


def _expected(project: Path, slug: str, audiences: list[str] | None = None) -> int:
    content = load_content(project / "content").content
    return sum(len(a.subscribers) for a in content.audiences if not audiences or a.id in audiences)


def test_ingest_flow_retries_the_failed_batch_on_a_flaky_server(flaky_feed: FlakyFeed) -> None:
    from flows.pipeline import ingest

    state = ingest(return_state=True)
    result = state.result()
    assert result["articles_new"] == 3
    assert result["feeds_failed"] == []
    assert flaky_feed.hits == 3  # two 500s, then the feed: each hit was a separate Prefect task run
    runs = [r for r in _task_runs(state.state_details.flow_run_id) if r.name.startswith("ingest-batch")]
    assert len(runs) == 3  # the first attempt and two re-submissions of just the failed feed
    assert all(r.run_count == 1 and r.state.is_completed() for r in runs)

    rows = json.loads(_artifact("ingest-feeds")["data"])
    assert [(r["feed"], r["status"], r["new"]) for r in rows] == [("frontier-notes", "ok", 3)]


def test_ingest_flow_reports_the_error_after_its_last_retry(flaky_feed: FlakyFeed, monkeypatch) -> None:
    from flows.pipeline import ingest

    flaky_feed.failures = 100
    monkeypatch.setenv("BRIEFING_TASK_RETRIES", "1")
    result = ingest()
    assert result["articles_new"] == 0
    assert flaky_feed.hits == 2
    assert result["feeds_failed"] and "frontier-notes" in result["feeds_failed"][0]
    assert "500" in result["feeds_failed"][0]
    rows = json.loads(_artifact("ingest-feeds")["data"])
    assert rows[0]["status"] == "error" and "500" in rows[0]["error"]


def test_brief_flow_delivers_publishes_and_leaves_artifacts(project: Path) -> None:
    from flows.pipeline import brief

    content = load_content(project / "content").content
    briefing = next(b for b in content.briefings if b.slug == SLUG)
    result = brief(slug=SLUG)
    expected = _expected(project, SLUG)
    assert result["emails_sent"] == expected == len(_outbox(project, SLUG))
    assert _outbox(project) == _outbox(project, SLUG)  # only this briefing was sent
    assert any(p.endswith(f"{SLUG}.md") for p in result["pages_written"])
    assert set(result["delivery"][SLUG]) == {a.id for a in content.audiences}

    report = _artifact(f"brief-{SLUG}")
    assert report["type"] == "markdown"
    assert briefing.verdict in report["data"]
    assert f"{SLUG}.html" in report["data"]  # link to the archive page
    for audience in content.audiences:
        assert f"| {audience.id} |" in report["data"]
    table = json.loads(_artifact(f"delivery-{SLUG}")["data"])
    assert {row["audience"]: row["sent"] for row in table} == {a.id: len(a.subscribers) for a in content.audiences}

    again = brief(slug=SLUG)
    assert again["emails_sent"] == 0
    assert len(_outbox(project)) == expected


def test_brief_flow_one_audience_dry_run_draft_and_unknown(project: Path) -> None:
    from flows.core.errors import ContentError
    from flows.pipeline import brief

    dry = brief(slug=SLUG, audience="neta", dry_run=True)
    assert dry["briefings_rendered"] == [SLUG] and dry["emails_sent"] == 0 and _outbox(project) == []

    one = brief(slug=SLUG, audience="neta")
    assert one["emails_sent"] == _expected(project, SLUG, ["neta"]) == len(_outbox(project))
    assert {p.parent.name for p in _outbox(project)} == {"neta"}

    draft = brief(slug="metr-task-horizons")
    assert draft["briefings_held"] == ["metr-task-horizons"] and draft["emails_sent"] == 0
    assert "status is draft" in _artifact("brief-metr-task-horizons")["data"]

    with pytest.raises(ContentError, match="no briefing with slug 'nope'"):
        brief(slug="nope")
    with pytest.raises(ContentError, match="no audience with id 'board'"):
        brief(slug=SLUG, audience="board")


def test_deliver_and_publish_flows(project: Path) -> None:
    from flows.pipeline import deliver, publish

    sent = deliver(audience="atou")
    content = load_content(project / "content").content
    assert sent["emails_sent"] == len(content.ready) * _expected(project, SLUG, ["atou"])
    assert {p.parent.name for p in _outbox(project)} == {"atou"}
    assert (project / "outputs" / "archive").exists() is False  # deliver does not publish

    published = publish()
    archive = project / "outputs" / "archive"
    for briefing in content.ready:
        assert next(archive.rglob(f"{briefing.slug}.md"))
    assert (archive / "index.md").exists()
    assert any(p.endswith("index.md") for p in published["pages_written"])
    listing = _artifact("archive")["data"]
    assert all(b.slug in listing for b in content.ready)
    assert publish()["pages_written"] == []


def test_limits_are_created_from_the_settings(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect import get_client

    from flows.core.settings import load_settings
    from flows.deliver.rate_limit import permit_chunk
    from flows.pipeline import SMTP_SLOTS, ensure_limits

    settings = load_settings(smtp_connections=3, smtp_rate=45)
    ensure_limits(settings)
    with get_client(sync_client=True) as client:
        slots = client.read_global_concurrency_limit_by_name(SMTP_SLOTS)
        rate = client.read_global_concurrency_limit_by_name(settings.send_rate_limit)
    assert slots.limit == 3
    assert (rate.limit, rate.slot_decay_per_second) == (permit_chunk(45), 45) == (9, 45)

    ensure_limits(load_settings(smtp_connections=1))
    with get_client(sync_client=True) as client:
        assert client.read_global_concurrency_limit_by_name(SMTP_SLOTS).limit == 1


def test_a_flow_run_holds_one_smtp_slot_from_its_first_delivery_to_its_end(settings) -> None:
    from prefect import get_client

    from flows.pipeline import SMTP_SLOTS, ensure_limits, smtp_slot

    def active_slots() -> int:
        with get_client(sync_client=True) as client:
            return client.read_global_concurrency_limit_by_name(SMTP_SLOTS).active_slots

    ensure_limits(settings)
    with smtp_slot(settings) as slot:
        assert active_slots() == 0  # nothing is taken before something is sent
        transport = slot.transport()
        assert slot.transport() is transport  # every briefing and audience of the run shares it
        assert active_slots() == 1
    assert active_slots() == 0


def test_strict_limit_is_an_error_until_created() -> None:
    from prefect.concurrency.sync import concurrency

    with (
        pytest.raises(Exception, match="must be created before acquiring"),
        concurrency("briefing-no-such-limit", strict=True),
    ):
        pass


def test_ready_is_announced_once_per_content_version(project: Path, store) -> None:
    from flows.events import announce_ready

    content = load_content(project / "content").content
    first = announce_ready(content.briefings, store)
    assert sorted(first) == sorted(b.slug for b in content.ready)
    assert announce_ready(content.briefings, store) == []  # recorded: a restart does not re-emit
    for briefing in content.ready:
        assert store.ready_announced(briefing.slug, briefing.content_hash())
    edited = content.ready[0].model_copy(update={"verdict": content.ready[0].verdict + "（更新）"})
    assert announce_ready([edited], store) == [edited.slug]  # a new version is a new readiness


def test_retry_is_decided_by_the_error_type_not_its_text(flaky_feed: FlakyFeed) -> None:
    """A 500 is a FetchError with retryable=True; a feed that is not a feed is a FetchError with retryable=False.
    The outcome carries both, and the retry decision reads the flag: the same words in the text change nothing."""
    from flows.core.models import Feed
    from flows.core.settings import load_settings
    from flows.core.store import Store
    from flows.ingest import ingest_feeds
    from flows.ingest.run import FeedOutcome
    from flows.pipeline import retryable_failures

    settings = load_settings()  # flaky_feed's: private addresses allowed, no fetch retries
    store = Store(settings.store_url)
    flaky_feed.failures = 100
    feed = Feed(id="frontier-notes", url=flaky_feed.url)
    [server_error] = ingest_feeds([feed], store, settings).outcomes
    assert (server_error.status, server_error.error_type, server_error.retryable) == ("error", "FetchError", True)
    assert "500" in server_error.error

    flaky_feed.failures, flaky_feed.body = 0, b"<html><body>HTTP 503 Timeout ConnectError</body></html>"
    [not_a_feed] = ingest_feeds([feed], store, settings).outcomes
    store.close()
    assert (not_a_feed.status, not_a_feed.error_type, not_a_feed.retryable) == ("error", "FetchError", False)
    assert retryable_failures([server_error, not_a_feed]) == [server_error]

    def outcome(error: str, retryable: bool) -> FeedOutcome:
        return FeedOutcome("f", "http://x", "error", error=error, error_type="FetchError", retryable=retryable)

    worded_transient = outcome("HTTP 503: ConnectTimeout, timed out", retryable=False)
    worded_permanent = outcome("HTTP 404", retryable=True)
    assert retryable_failures([worded_transient, worded_permanent]) == [worded_permanent]
    assert retryable_failures([FeedOutcome("f", "http://x", "ok", retryable=True)]) == []


def test_render_emails_renders_one_audience_without_an_engine(project: Path, settings) -> None:
    """A plain function of the flow, callable before any flow is built; `disable_run_logger` stands in for the run
    context."""
    from prefect.logging import disable_run_logger

    from flows.pipeline import render_emails

    loaded = load_content(project / "content")
    briefing = next(b for b in loaded.content.ready if b.slug == SLUG)
    with disable_run_logger():
        rendered = render_emails(settings, loaded, briefing, ["uota"], f"2026/06/{SLUG}.md")
    assert list(rendered.emails) == ["uota"]
    email = rendered.emails["uota"]
    assert f"{SLUG}.html" in email.html and briefing.note_for("uota").meaning[:20] in email.html


def test_a_run_over_smtp_shows_the_server_not_the_outbox_and_warns_once_about_http(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from rich.console import Console

    from flows.app.output import summary_table
    from flows.pipeline import pipeline
    from tests.delivery_support import SmtpServer

    content = load_content(project / "content").content
    messages: list[str] = []
    catcher = logging.Handler(logging.WARNING)  # on the logger itself: Prefect's logging config keeps caplog out
    catcher.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("flows.deliver").addHandler(catcher)
    try:
        with SmtpServer() as server:
            monkeypatch.setenv("BRIEFING_SMTP_URL", server.url)
            monkeypatch.setenv("BRIEFING_SECRET", "smtp-run-secret-0123456789-abcdefghijkl")  # BRIEFING_BASE_URL stays http://
            result = pipeline()
    finally:
        logging.getLogger("flows.deliver").removeHandler(catcher)
    expected = len(content.ready) * _expected(project, SLUG)
    assert result["emails_sent"] == expected == server.handler.count()
    assert len(content.ready) * len(content.audiences) > 1, "several emails: the warning could repeat"
    assert sum("RFC 8058" in m for m in messages) == 1, messages

    outbox = str(project / "outputs" / "outbox")
    assert result["outbox"] is None and result["smtp"] == server.url
    assert outbox not in json.dumps(result)
    console = Console(record=True, width=300)
    console.print(summary_table(result))
    table = console.export_text()
    assert "outbox" not in table and f"over SMTP to {server.url}" in table


def test_a_run_whose_smtp_server_is_refused_reports_it_and_exits_6(project: Path, monkeypatch) -> None:
    """A server without STARTTLS and a URL with a password: nothing is sent, every row stays queued, and the
    run says so (not "0 emails sent" and exit 0)."""
    import typer
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from flows.app.commands.orchestrate import _finish
    from flows.core.store import ledger, open_store
    from flows.pipeline import brief
    from tests.delivery_support import FaultyMailbox, free_port

    logins: list[object] = []
    handler = FaultyMailbox()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        auth_require_tls=False,
        authenticator=lambda *args: logins.append(args) or AuthResult(success=True),
    )
    controller.start()
    try:
        monkeypatch.setenv("BRIEFING_SMTP_URL", f"smtp://sender:secret-pw@127.0.0.1:{port}")
        monkeypatch.setenv("BRIEFING_SECRET", "smtp-run-secret-0123456789-abcdefghijkl")
        result = brief(slug=SLUG)
    finally:
        controller.stop()
    assert logins == [] and handler.received == []
    content = load_content(project / "content").content
    assert len(result["delivery_errors"]) == len(content.audiences)
    assert all("refusing to send the SMTP password unencrypted" in e for e in result["delivery_errors"])
    assert all(f"smtp://sender@127.0.0.1:{port}" in e and "secret-pw" not in e for e in result["delivery_errors"])
    store = open_store(f"sqlite:///{project / 'outputs' / 'store.db'}")
    queued = sum(n for (_slug, _aud, state), n in ledger.counts(store, SLUG).items() if state == ledger.QUEUED)
    assert queued == _expected(project, SLUG)
    with pytest.raises(typer.Exit) as exit_info:
        _finish(result)
    assert exit_info.value.exit_code == 6


def test_a_retried_briefing_delivery_sends_only_what_the_first_attempt_did_not(project: Path, settings) -> None:
    """Delivery is one task run per briefing, so a retry repeats every audience: the send ledger must make the
    audiences the failed attempt already sent cost nothing. The first attempt is cut short after one audience."""
    from prefect.logging import disable_run_logger

    from flows.core.store import open_store
    from flows.deliver.send import make_transport
    from flows.pipeline import deliver_task, render_emails

    loaded = load_content(project / "content")
    briefing = next(b for b in loaded.content.ready if b.slug == SLUG)
    audiences = [a.id for a in loaded.content.audiences]
    store = open_store(settings.store_url)
    with disable_run_logger():
        rendered = render_emails(settings, loaded, briefing, audiences, f"2026/06/{SLUG}.md")
        transport = make_transport(settings)
        first = deliver_task.fn(settings, store, loaded, rendered, audiences[:1], transport)
        retry = deliver_task.fn(settings, store, loaded, rendered, audiences, transport)
    first_sent = first.audiences[audiences[0]].states["sent"]
    assert first_sent == _expected(project, SLUG, audiences[:1]) > 0
    assert retry.audiences[audiences[0]].states.get("sent", 0) == 0
    assert sum(r.states.get("sent", 0) for r in retry.audiences.values()) == _expected(project, SLUG) - first_sent
    assert len(_outbox(project, SLUG)) == _expected(project, SLUG)  # every subscriber exactly once

"""Prefect flows: thin sequences of calls into the stage modules.

Flows — `ingest`, `brief` (one briefing), `deliver`, `publish` and `pipeline` (all of it) — take plain
JSON-able parameters so they can be started from the Prefect UI or a trigger. Tasks have the grain the
overhead allows (≈8 ms per task run): one per feed batch and one delivery per briefing — never one per audience,
recipient or paragraph (the send ledger makes a delivery's retry skip what it already sent). Rendering is CPU work
with nothing to retry and runs in the flow itself.
Network tasks (a feed batch, a delivery) retry with exponential backoff and jitter; publishing does not. A flow
run's sending holds one slot of the global concurrency limit `smtp-send` from its first delivery to its end (and
each message draws from the rate limit named by `send_rate_limit` when a rate is set), so parallel flow runs
together respect the configured connections and rate.
`collect` reads the inbound mailbox (flows/collect) in one call: its own exactly-once bookkeeping needs no task.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from flows.core.backoff import backoff_delay, exponential_delays
from flows.core.errors import BriefingError, ContentError, RenderError
from flows.prefect_session import build_on_first_use, lazy_flow, lazy_task

if TYPE_CHECKING:  # imported by `build_on_first_use` when a flow or task is first looked up (LATE_IMPORTS)
    from prefect.artifacts import create_markdown_artifact, create_table_artifact
    from prefect.logging import get_run_logger

    from flows.core.content import Loaded, load_content
    from flows.core.models import Briefing, Feed
    from flows.core.pages import archive_url
    from flows.core.settings import Settings, load_settings
    from flows.core.store import Store, open_store
    from flows.deliver import DeliveryReport, deliver_briefing
    from flows.deliver.transports import describe_smtp_url
    from flows.edition import Joined, gate, refuse_if_strict
    from flows.events import announce_ready, emit_article_ingested
    from flows.ingest.stubs import plan_stubs, write_stubs
    from flows.publish import PublishReport, publish_archive
    from flows.render import RenderedBriefing
    from flows.render.briefing_files import MarkdownFiles, write_markdown_briefings
    from flows.render.email import md_escape
    from flows.status import RunSummary

if TYPE_CHECKING:
    from flows.ingest.run import IngestReport

logger = logging.getLogger(__name__)

T = TypeVar("T")

LATE_IMPORTS: dict[str, tuple[str, ...]] = {  # the TYPE_CHECKING imports above (a test keeps them the same)
    "prefect.artifacts": ("create_markdown_artifact", "create_table_artifact"),
    "prefect.logging": ("get_run_logger",),
    "flows.core.content": ("Loaded", "load_content"),
    "flows.core.models": ("Briefing", "Feed"),
    "flows.core.pages": ("archive_url",),
    "flows.core.settings": ("Settings", "load_settings"),
    "flows.core.store": ("Store", "open_store"),
    "flows.deliver": ("DeliveryReport", "deliver_briefing"),
    "flows.deliver.transports": ("describe_smtp_url",),
    "flows.edition": ("Joined", "gate", "refuse_if_strict"),
    "flows.events": ("announce_ready", "emit_article_ingested"),
    "flows.ingest.stubs": ("plan_stubs", "write_stubs"),
    "flows.publish": ("PublishReport", "publish_archive"),
    "flows.render": ("RenderedBriefing",),
    "flows.render.briefing_files": ("MarkdownFiles", "write_markdown_briefings"),
    "flows.render.email": ("md_escape",),
    "flows.status": ("RunSummary",),
}

SMTP_SLOTS = "smtp-send"


@dataclass
class Context:
    settings: Settings
    store: Store
    loaded: Loaded

    def reload(self) -> None:
        self.loaded = load_content(self.settings.content_dir)


def _context() -> Context:
    settings = load_settings()
    store = open_store(settings.store_url)
    loaded = load_content(settings.content_dir)
    refuse_if_strict(settings.strict, loaded)
    return Context(settings, store, loaded)


def _summary(ctx: Context) -> RunSummary:
    settings = ctx.settings
    return RunSummary(
        outbox=None if settings.smtp_url else str(settings.outbox_path),
        smtp=describe_smtp_url(settings.smtp_url, settings.smtp_tls) if settings.smtp_url else None,
        archive=str(settings.archive_path),
        problems=[str(p) for p in ctx.loaded.problems],
        content_errors=len(ctx.loaded.errors),
    )


def quote(value: T) -> T:
    """Prefect's `quote()`, typed as the value it wraps: a task receives the value itself (Prefect unwraps it,
    without walking it for futures), but Prefect's Task typing does not model quote() and rejects the call."""
    from prefect.utilities.annotations import quote as prefect_quote

    return cast(T, prefect_quote(value))


def retry_delays(settings: Settings) -> list[float]:
    """Exponential backoff for Prefect task retries (jitter is added by `retry_jitter_factor`)."""
    return exponential_delays(settings.task_retry_delay, settings.task_retries)


# --- global concurrency and rate limits ------------------------------------------------------------------


def ensure_limits(settings: Settings) -> None:
    """Create or update the SMTP limits on the Prefect server; they do nothing until they exist.

    `smtp-send` bounds parallel SMTP connections across flow runs; the rate limit named by
    `settings.send_rate_limit` (shared with `flows.app.worker` deliverers) paces messages at `smtp_rate`/s."""
    from prefect import get_client

    from flows.deliver.rate_limit import permit_chunk

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(SMTP_SLOTS, settings.smtp_connections)
        if settings.smtp_rate > 0:
            client.upsert_global_concurrency_limit_by_name(
                settings.send_rate_limit, permit_chunk(settings.smtp_rate), slot_decay_per_second=settings.smtp_rate
            )


# --- ingest ----------------------------------------------------------------------------------------------


@lazy_task(name="ingest-batch", retry_jitter_factor=0.5)
def ingest_batch(settings: Settings, store: Store, feeds: list[Feed]) -> list[Any]:
    """Fetch and store one batch of feeds. A feed that fails is an outcome carrying its error's type and
    `retryable` flag, not an exception: the flow decides which feeds to try again (`_ingest_feeds`)."""
    from flows.ingest import ingest_feeds  # feedparser, trafilatura, lxml: not needed by a `brief` run's process

    report: IngestReport = ingest_feeds(feeds, store, settings)
    errors = sum(o.status == "error" for o in report.outcomes)
    get_run_logger().info("batch of %d feeds: %d errors", len(feeds), errors)
    return list(report.outcomes)


def retryable_failures(outcomes: list[Any]) -> list[Any]:
    """The failed feeds a later attempt may fetch: decided by the error's type (`FeedOutcome.retryable`, set from
    `FetchError.retryable`), never by its text."""
    return [o for o in outcomes if o.status == "error" and o.retryable]


def _ingest_feeds(ctx: Context, feeds: list[Feed]) -> list[Any]:
    """Ingest in batches; then, up to `task_retries` times after a backoff delay, submit a new task run for just
    the feeds whose failure is retryable. Feeds that succeeded keep their first outcome (their new articles
    count once); each attempt is a task run of its own in Prefect. An exception inside a batch (not a feed
    failure) is retried by Prefect with the same schedule."""
    batch_task = ingest_batch.with_options(
        retries=ctx.settings.task_retries, retry_delay_seconds=retry_delays(ctx.settings)
    )

    def run(todo: list[Feed]) -> dict[str, Any]:
        futures = [
            batch_task.submit(quote(ctx.settings), quote(ctx.store), quote(batch))
            for batch in _batches(todo, ctx.settings.ingest_batch_size)
        ]
        return {outcome.feed_id: outcome for future in futures for outcome in future.result()}

    outcomes = run(feeds)
    for retry in range(ctx.settings.task_retries):
        failed = {o.feed_id: o for o in retryable_failures(list(outcomes.values()))}
        if not failed:
            break
        delay = backoff_delay(ctx.settings.task_retry_delay, retry)
        names = ", ".join(f"{o.feed_id} ({o.error_type}: {o.error})" for o in failed.values())
        get_run_logger().warning(
            "%d feeds failed with retryable errors; retry %d/%d in %.2f s: %s",
            len(failed), retry + 1, ctx.settings.task_retries, delay, names,
        )
        time.sleep(delay)
        outcomes.update(run([f for f in feeds if f.id in failed]))
    return [outcomes[f.id] for f in feeds if f.id in outcomes]


def _ids(value: Any) -> list[str]:
    return list(value) if isinstance(value, list | tuple) else []


def _count(value: Any) -> int:
    return len(value) if isinstance(value, list | tuple | set) else int(value or 0)


def _batches(items: list[Feed], size: int) -> Iterator[list[Feed]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@lazy_task(name="write-stubs")
def stubs_task(settings: Settings, store: Store, loaded: Loaded, outcomes: list[Any]) -> tuple[list[str], list[str]]:
    """Draft stubs for the run's new articles within the caps (`flows.ingest.stubs.plan_stubs`); returns the paths
    written and the summary lines for the articles left without one."""
    found = (store.get_article(i) for o in outcomes for i in _ids(o.new))
    articles = {a.id: a for a in found if a is not None}
    plan = plan_stubs(
        outcomes,
        articles,
        loaded.content.briefings,
        new_feed_stubs=settings.new_feed_stubs,
        max_per_run=settings.max_stubs_per_run,
    )
    paths = write_stubs(plan.articles, loaded.content.briefings, settings.content_dir, loaded.content.audiences)
    return [str(p) for p in paths], plan.quiet


@lazy_task(name="draft-stubs")
def draft_stubs_task(settings: Settings, store: Store, paths: list[str]) -> list[dict[str, Any]]:
    """Machine drafts of new stubs' empty sections (opt-in: draft_new_stubs). A stub the model cannot draft
    stays as it was; it never stops the run. Each draft is marked for review, so none of it is sent unreviewed."""
    from flows.draft import draft_briefing  # the openai client: only loaded when drafting is switched on

    results = []
    for path in paths:
        try:
            report = draft_briefing(settings, store, path)
        except BriefingError as err:
            get_run_logger().warning("draft of %s failed: %s", path, err)
            results.append({"path": path, "filled": [], "failures": [str(err)], "requests": 0, "tokens": 0})
            continue
        failures = [f"{f.part}: {f.reason}" for f in report.failures]
        results.append(
            {
                "path": path,
                "filled": report.filled,
                "failures": failures,
                "requests": report.stats.requests,
                "tokens": report.stats.tokens,
            }
        )
    return results


def _ingest_stage(ctx: Context, summary: RunSummary, feed_ids: list[str] | None = None) -> list[Any]:
    run_logger = get_run_logger()
    feeds = list(ctx.loaded.content.feeds)
    if feed_ids:
        unknown = sorted(set(feed_ids) - {f.id for f in feeds})
        if unknown:
            raise ContentError(
                ctx.settings.content_dir / "feeds.yaml", f"no feed with id {', '.join(unknown)}", field="feeds[].id"
            )
        feeds = [f for f in feeds if f.id in feed_ids]
    outcomes = _ingest_feeds(ctx, feeds)
    new = [a for o in outcomes for a in _ids(o.new)]
    summary.articles_new = len(new)
    summary.articles_updated = sum(_count(o.updated) for o in outcomes)
    summary.feeds_failed = [f"{o.feed_id}: {o.error}" for o in outcomes if o.status == "error"]
    if new:
        summary.stubs, summary.stubs_skipped = stubs_task(
            quote(ctx.settings), quote(ctx.store), quote(ctx.loaded), quote(outcomes)
        )
    if summary.stubs and ctx.settings.draft_new_stubs:
        summary.drafts = draft_stubs_task(quote(ctx.settings), quote(ctx.store), summary.stubs)
        summary.problems += [f"{d['path']}: {f}" for d in summary.drafts for f in d["failures"]]
    emitted = emit_article_ingested(a for a in (ctx.store.get_article(i) for i in new) if a is not None)
    run_logger.info(
        "ingest: %d feeds, %d new articles (%d events), %d updated, %d failed, %d stubs",
        len(feeds),
        summary.articles_new,
        emitted,
        summary.articles_updated,
        len(summary.feeds_failed),
        len(summary.stubs),
    )
    if summary.stubs:
        ctx.reload()
    return outcomes


def _ingest_artifact(outcomes: list[Any]) -> None:
    rows = [
        {
            "feed": o.feed_id,
            "url": o.url,
            "status": o.status,
            "new": _count(o.new),
            "updated": _count(o.updated),
            "seen": _count(o.seen),
            "error": o.error or "",
        }
        for o in outcomes
    ]
    create_table_artifact(rows, key="ingest-feeds", description="Per-feed outcome of the last ingest run")


# --- render and deliver, per briefing -----------------------------------------------------------------


def render_emails(
    settings: Settings, loaded: Loaded, briefing: Briefing, audiences: list[str], page: str
) -> RenderedBriefing:
    """Every audience's email of one briefing, rendered in the flow itself, not as a task run: it is pure CPU work
    (≈ 10 ms an email) with nothing to retry, and a task run's bookkeeping cost more than the rendering. A render
    error fails the flow's handling of this briefing exactly as a failed task did. Imports its own names so that it
    also works before any flow of this module has been built (`build_on_first_use`)."""
    from prefect.logging import get_run_logger

    from flows.edition import render_for_archive

    rendered = render_for_archive(settings, loaded.content, briefing, page, audiences=audiences)
    for audience, email in rendered.emails.items():
        for warning in email.warnings:
            get_run_logger().warning("%s/%s: %s", briefing.slug, audience, warning)
    return rendered


class SmtpSlot:
    """One slot of the global `smtp-send` limit and one transport, held from a flow run's first delivery to its end.

    One acquisition per flow run (not per briefing or audience): each acquisition is a few API calls, and on the
    SQLite loopback server a write that races with the server's own writes (task-run events, logs, runner polls)
    is refused with a 503 that the Prefect client retries only after 2 s.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = ExitStack()
        self._transport: Any = None

    def transport(self) -> Any:
        if self._transport is None:
            from prefect.concurrency.sync import concurrency

            from flows.deliver.rate_limit import GlobalRateLimitedTransport, permit_chunk
            from flows.deliver.send import make_transport, warn_if_unsubscribe_url_is_not_https

            self._stack.enter_context(concurrency(SMTP_SLOTS, occupy=1, strict=True))
            warn_if_unsubscribe_url_is_not_https(self.settings)  # here: once per flow run that sends
            transport = make_transport(self.settings)
            if self.settings.smtp_url and self.settings.smtp_rate > 0:
                transport = GlobalRateLimitedTransport(
                    transport, self.settings.send_rate_limit, permit_chunk(self.settings.smtp_rate)
                )
            self._stack.callback(transport.close)
            self._transport = transport
        return self._transport

    def close(self) -> None:
        self._transport = None
        self._stack.close()


@contextmanager
def smtp_slot(settings: Settings) -> Iterator[SmtpSlot]:
    slot = SmtpSlot(settings)
    try:
        yield slot
    finally:
        slot.close()


@lazy_task(name="deliver-briefing", retry_jitter_factor=0.5)
def deliver_task(
    settings: Settings,
    store: Store,
    loaded: Loaded,
    rendered: RenderedBriefing,
    audiences: list[str],
    transport: Any,
    resend_updated: bool = False,
    resend_uncertain: bool = False,
) -> DeliveryReport:
    """Send one briefing to its audiences through the transport of the flow run's `smtp-send` slot.

    One task run per briefing, not per audience: a task run's bookkeeping costs more than a small audience's
    sending, and a retry is safe at this grain because the send ledger skips every message already sent."""
    report = deliver_briefing(
        rendered,
        loaded.content,
        store,
        settings,
        audiences=audiences,
        resend_updated=resend_updated,
        resend_uncertain=resend_uncertain,
        transport=transport,
    )
    for audience, result in report.audiences.items():
        get_run_logger().info("%s/%s: %s", report.slug, audience, dict(result.states))
    return report


def _audience_ids(ctx: Context, audience: str) -> list[str]:
    ids = [a.id for a in ctx.loaded.content.audiences]
    if audience and audience not in ids:
        raise ContentError(
            ctx.settings.content_dir / "audiences.yaml",
            f"no audience with id {audience!r}",
            field="audiences[].id",
            hint=f"use one of: {', '.join(ids)}",
        )
    return [audience] if audience else ids


@dataclass
class BriefOutcome:
    """One briefing's rendering and deliveries in this flow run, for its artifacts."""

    slug: str
    page: str
    reports: list[DeliveryReport] = field(default_factory=list)
    markdown: MarkdownFiles = field(default_factory=lambda: MarkdownFiles())  # late import: see LATE_IMPORTS
    markdown_errors: list[str] = field(default_factory=list)

    @property
    def delivered(self) -> dict[str, Counter[str]]:
        return {aid: Counter(result.states) for r in self.reports for aid, result in r.audiences.items()}

    @property
    def failures(self) -> list[str]:
        return [
            f"{aid} {who}: {why}" for r in self.reports for aid, result in r.audiences.items()
            for who, why in result.failures
        ]


def _brief_one(
    ctx: Context,
    joined: Joined,
    *,
    audiences: list[str],
    page: str,
    slot: SmtpSlot | None,
    resend_updated: bool = False,
    resend_uncertain: bool = False,
) -> BriefOutcome:
    """Render every audience's email, then (when sending, i.e. with a slot) deliver them: one briefing.

    Big objects go in `quote()`: Prefect walks every task argument recursively (to find futures, twice per
    task run) unless quoted, which costs more than the work for the whole content and rendered HTML."""
    briefing = joined.briefing
    outcome = BriefOutcome(briefing.slug, page)
    settings, loaded = quote(ctx.settings), quote(ctx.loaded)
    transport = quote(slot.transport()) if slot is not None else None
    # Rendered in the flow and delivered by one task run per briefing: a task run per audience cost more in
    # Prefect's own bookkeeping than rendering or sending a sample audience.
    rendered = render_emails(ctx.settings, ctx.loaded, briefing, audiences, page)
    # Each audience's Markdown briefing on disk (outputs/briefings/<slug>/<audience>.md), sent or not. A file that
    # cannot be written is reported; it never stops the emails.
    try:
        outcome.markdown.extend(write_markdown_briefings(ctx.settings.output_dir, rendered))
    except RenderError as err:
        get_run_logger().error("%s", err)
        outcome.markdown_errors.append(str(err))
    if slot is None:
        return outcome
    delivery = deliver_task.with_options(
        retries=ctx.settings.task_retries, retry_delay_seconds=retry_delays(ctx.settings)
    )
    report = delivery(
        settings, quote(ctx.store), loaded, quote(rendered), audiences, transport, resend_updated, resend_uncertain
    )
    outcome.reports.append(report)
    return outcome


def _artifact_key(prefix: str, slug: str) -> str:
    return f"{prefix}-{re.sub(r'[^a-z0-9-]+', '-', slug.lower()).strip('-')}"[:120]


def brief_artifacts(ctx: Context, briefing: Briefing, outcome: BriefOutcome | None, problems: list[str]) -> None:
    """A Markdown report (verdict, counts, links) and a table of delivery states for one briefing. Curated text and
    server replies are Markdown-escaped: Prefect's UI renders the report."""
    settings = ctx.settings
    lines = [
        f"# {md_escape(briefing.verdict or briefing.slug)}",
        "",
        f"`{briefing.slug}` · {briefing.status} · {briefing.date}",
        "",
    ]
    if outcome is None:
        lines.append("**Held back** — nothing rendered or sent.")
    else:
        url = archive_url(settings, outcome.page)
        lines += [
            f"- Archive page: [{outcome.page}]({url}) (`{settings.archive_path / outcome.page}`)",
            f"- Outbox: `{settings.outbox_path / briefing.slug}`" if not settings.smtp_url else "- Sent over SMTP",
            "",
        ]
        if outcome.delivered:
            states = sorted({s for c in outcome.delivered.values() for s in c})
            lines += ["| audience | " + " | ".join(states) + " |", "|---" * (len(states) + 1) + "|"]
            for aid, counts in outcome.delivered.items():
                lines.append(f"| {aid} | " + " | ".join(str(counts[s]) for s in states) + " |")
        else:
            lines.append("Rendered only (dry run): nothing sent.")
        lines += [f"- failure: {md_escape(f)}" for f in outcome.failures[:50]]
    lines += [f"- problem: {md_escape(p)}" for p in problems]
    create_markdown_artifact(
        "\n".join(lines), key=_artifact_key("brief", briefing.slug), description=f"Briefing {briefing.slug}"
    )
    if outcome is not None and outcome.delivered:
        rows = [
            {"audience": aid, **{k: int(v) for k, v in counts.items()}} for aid, counts in outcome.delivered.items()
        ]
        create_table_artifact(
            rows, key=_artifact_key("delivery", briefing.slug), description=f"Delivery states of {briefing.slug}"
        )


def _publish_stage(ctx: Context, summary: RunSummary) -> PublishReport:
    report = publish_task(quote(ctx.settings), quote(ctx.store), quote(ctx.loaded))
    summary.publish_held = list(report.held)
    summary.pages_written = [str(p) for p in report.written]
    summary.pages_unchanged = len(report.unchanged)
    return report


@lazy_task(name="publish-archive")
def publish_task(settings: Settings, store: Store, loaded: Loaded) -> PublishReport:
    """Publish the ready briefings `flows.edition.gate` lets through; the held ones are left out of it."""
    checked = gate(loaded, store, pages=False)
    report = publish_archive(loaded.content, store, settings, checked.publishable)
    report.held = [j.briefing.slug for j in checked.held]
    get_run_logger().info("archive: %d written, %d unchanged", len(report.written), len(report.unchanged))
    return report


def _join_and_brief(
    ctx: Context,
    summary: RunSummary,
    slugs: list[str] | None,
    *,
    audiences: list[str],
    send: bool,
    resend_updated: bool,
    resend_uncertain: bool,
) -> None:
    """The edition of every ready briefing (or the named ones) as tasks: `flows.edition.gate` decides what is held
    back and places the pages; the passed ones are rendered per audience and, when sending, delivered."""
    checked = gate(ctx.loaded, ctx.store, slugs)
    edition = summary.edition
    edition.held.extend(checked.held)
    listed = set(summary.problems)
    for joined in checked.held:  # never rendered, sent or published; its problems are in the summary
        summary.problems.extend(str(p) for p in joined.problems if str(p) not in listed)
        brief_artifacts(ctx, joined.briefing, None, [str(p) for p in joined.problems])
    with smtp_slot(ctx.settings) as slot:
        for joined in checked.passed:
            briefing = joined.briefing
            problems = [str(p) for p in joined.problems]
            summary.problems.extend(p for p in problems if p not in listed)
            try:
                outcome = _brief_one(
                    ctx,
                    joined,
                    audiences=audiences,
                    page=checked.pages[briefing.slug],
                    slot=slot if send else None,
                    resend_updated=resend_updated,
                    resend_uncertain=resend_uncertain,
                )
            except BriefingError as err:  # one briefing that cannot render does not stop the others
                get_run_logger().error("%s: not sent: %s", briefing.slug, err)
                edition.not_rendered.append(f"{briefing.slug}: {err}")
                brief_artifacts(ctx, briefing, None, [str(err)])
                continue
            summary.briefings_rendered.append(briefing.slug)
            summary.markdown_written.extend(str(p) for p in outcome.markdown.written)
            summary.markdown_unchanged += len(outcome.markdown.unchanged)
            summary.problems.extend(outcome.markdown_errors)
            edition.deliveries.extend(outcome.reports)
            brief_artifacts(ctx, briefing, outcome, problems)


def _find_briefing(ctx: Context, slug: str) -> Briefing:
    for briefing in ctx.loaded.content.briefings:
        if briefing.slug == slug:
            return briefing
    raise ContentError(
        ctx.settings.content_dir / "briefings",
        f"no briefing with slug {slug!r}",
        field="slug",
        hint="check the `slug:` line of the file (or run `briefing check`)",
    )


# --- flows -----------------------------------------------------------------------------------------------


@lazy_flow(name="ingest", log_prints=False)
def ingest(feed: str = "") -> dict[str, Any]:
    """Fetch every feed (or the one with id `feed`), store new articles, write draft stubs, emit events."""
    ctx = _context()
    summary = _summary(ctx)
    outcomes = _ingest_stage(ctx, summary, [feed] if feed else None)
    _ingest_artifact(outcomes)
    return summary.to_dict()


@lazy_flow(name="brief", log_prints=False)
def brief(
    slug: str, audience: str = "", dry_run: bool = False, resend_updated: bool = False, resend_uncertain: bool = False
) -> dict[str, Any]:
    """One briefing: join with its article, render per audience, deliver, publish the archive."""
    run_logger = get_run_logger()
    ctx = _context()
    summary = _summary(ctx)
    briefing = _find_briefing(ctx, slug)
    audiences = _audience_ids(ctx, audience)
    if briefing.status != "ready":
        run_logger.warning("%s is %s, not ready: nothing to send", slug, briefing.status)
        summary.briefings_not_ready.append(slug)
        brief_artifacts(ctx, briefing, None, [f"status is {briefing.status}; set `status: ready` to deliver"])
        return summary.to_dict()
    if not dry_run:
        ensure_limits(ctx.settings)
    _join_and_brief(
        ctx,
        summary,
        [slug],
        audiences=audiences,
        send=not dry_run,
        resend_updated=resend_updated,
        resend_uncertain=resend_uncertain,
    )
    if not dry_run and slug in summary.briefings_rendered:
        _publish_stage(ctx, summary)
    run_logger.info("brief %s: %d emails sent, %d pages written", slug, summary.emails_sent, len(summary.pages_written))
    return summary.to_dict()


@lazy_flow(name="deliver", log_prints=False)
def deliver(
    slug: str = "", audience: str = "", resend_updated: bool = False, resend_uncertain: bool = False
) -> dict[str, Any]:
    """Render and send every ready briefing (or the one named `slug`), to every audience (or `audience`)."""
    ctx = _context()
    summary = _summary(ctx)
    if slug:
        _find_briefing(ctx, slug)
    audiences = _audience_ids(ctx, audience)
    ensure_limits(ctx.settings)
    _join_and_brief(
        ctx,
        summary,
        [slug] if slug else None,
        audiences=audiences,
        send=True,
        resend_updated=resend_updated,
        resend_uncertain=resend_uncertain,
    )
    get_run_logger().info("deliver: %d emails sent", summary.emails_sent)
    return summary.to_dict()


@lazy_flow(name="publish", log_prints=False)
def publish() -> dict[str, Any]:
    """Write the Markdown archive: a page per ready briefing, the indexes and the Atom feed."""
    ctx = _context()
    summary = _summary(ctx)
    report = _publish_stage(ctx, summary)
    lines = ["# Archive", "", f"{len(report.written)} written, {len(report.unchanged)} unchanged", ""]
    lines += [f"- [{path}]({archive_url(ctx.settings, path)})" for path in sorted(report.pages.values())]
    create_markdown_artifact("\n".join(lines), key="archive", description="Pages of the published archive")
    return summary.to_dict()


@lazy_flow(name="pipeline", log_prints=False)
def pipeline(dry_run: bool = False, resend_updated: bool = False, resend_uncertain: bool = False) -> dict[str, Any]:
    """Everything: ingest → stubs → announce ready → join → render → deliver → publish."""
    run_logger = get_run_logger()
    ctx = _context()
    summary = _summary(ctx)
    _ingest_artifact(_ingest_stage(ctx, summary))
    summary.briefings_announced = announce_ready(ctx.loaded.content.ready, ctx.store)
    if not dry_run:
        ensure_limits(ctx.settings)
    audiences = [a.id for a in ctx.loaded.content.audiences]
    _join_and_brief(
        ctx,
        summary,
        None,
        audiences=audiences,
        send=not dry_run,
        resend_updated=resend_updated,
        resend_uncertain=resend_uncertain,
    )
    if not dry_run:
        _publish_stage(ctx, summary)
    run_logger.info(
        "pipeline done: %d new articles, %d briefings rendered, %d emails sent",
        summary.articles_new,
        len(summary.briefings_rendered),
        summary.emails_sent,
    )
    return summary.to_dict()


@lazy_flow(name="collect", log_prints=False)
def collect() -> dict[str, Any]:
    """Read the mailbox once: replies → pending discussion entries, bounces and complaints → suppressions,
    mailto unsubscribes → unsubscribes; each message moved to the folder of its class (flows/collect)."""
    from flows.collect import collect_mailbox

    settings = load_settings()
    store = open_store(settings.store_url)
    report = collect_mailbox(settings, store)
    rows = [
        {"uid": h.uid, "kind": h.kind or "(processed before)", "detail": h.detail, "folder": h.folder}
        for h in report.handled[:500]
    ]
    if rows:
        create_table_artifact(rows, key="collect-messages", description="Messages handled by the last collect run")
    get_run_logger().info(
        "collect %s: %d messages, %s, %d moved, %d suppressed, %d new entries",
        report.mailbox,
        report.seen,
        dict(report.processed),
        report.moved,
        len(report.suppressed),
        report.entries,
    )
    return report.to_dict()


__getattr__ = build_on_first_use(globals(), LATE_IMPORTS)

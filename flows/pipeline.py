"""Prefect flows: thin sequences of calls into the stage modules.

Flows take plain JSON-able parameters so they can be started from the Prefect UI. Tasks have the grain the
overhead allows (≈8 ms per task run): one per feed batch, per (briefing, audience) render, per briefing
delivery — never one per recipient or paragraph. Network tasks retry; rendering and publishing do not.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from flows.content import Loaded, load_content
from flows.deliver import DeliveryReport, deliver_briefing
from flows.errors import BriefingError
from flows.ingest import IngestReport, ingest_feeds
from flows.join import Joined, join_briefings
from flows.publish import PublishReport, archive_url, assign_paths, publish_archive
from flows.render import RenderedBriefing, render_briefing
from flows.settings import Settings, load_settings
from flows.store import Store, open_store
from flows.stubs import write_stubs

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    articles_new: int = 0
    articles_updated: int = 0
    feeds_failed: list[str] = field(default_factory=list)
    stubs: list[str] = field(default_factory=list)
    briefings_rendered: list[str] = field(default_factory=list)
    briefings_held: list[str] = field(default_factory=list)
    emails_sent: int = 0
    emails_uncertain: int = 0
    emails_failed: int = 0
    delivery: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    pages_written: list[str] = field(default_factory=list)
    pages_unchanged: int = 0
    problems: list[str] = field(default_factory=list)
    outbox: str = ""
    archive: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _context() -> tuple[Settings, Store, Loaded]:
    settings = load_settings()
    store = open_store(settings.store_url)
    loaded = load_content(settings.content_dir)
    if settings.strict and loaded.errors:
        raise BriefingError(f"{len(loaded.errors)} content problems (strict mode): {loaded.errors[0]}")
    return settings, store, loaded


@task(name="ingest-feeds", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10], retry_jitter_factor=0.5)
def ingest_task(settings: Settings, store: Store, loaded: Loaded) -> IngestReport:
    return ingest_feeds(list(loaded.content.feeds), store, settings)


@task(name="write-stubs", cache_policy=NO_CACHE)
def stubs_task(settings: Settings, store: Store, loaded: Loaded, article_ids: list[str]) -> list[str]:
    articles = [a for a in (store.get_article(i) for i in article_ids) if a is not None]
    paths = write_stubs(articles, loaded.content.briefings, settings.content_dir, loaded.content.audiences)
    return [str(p) for p in paths]


@task(name="render-briefing", cache_policy=NO_CACHE)
def render_task(settings: Settings, store: Store, loaded: Loaded, joined: Joined) -> RenderedBriefing:
    paths = assign_paths(store, loaded.content.ready)
    return render_briefing(
        joined.briefing,
        loaded.content,
        templates_dir=settings.templates_dir,
        archive_url=archive_url(settings, paths[joined.briefing.slug]),
        archive_index_url=f"{settings.base_url}/index.html",
        budget=settings.email_size_budget,
    )


@task(
    name="deliver-briefing", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[5, 30, 120], retry_jitter_factor=0.5
)
def deliver_task(
    settings: Settings,
    store: Store,
    loaded: Loaded,
    rendered: RenderedBriefing,
    resend_updated: bool = False,
    resend_uncertain: bool = False,
) -> DeliveryReport:
    return deliver_briefing(
        rendered, loaded.content, store, settings, resend_updated=resend_updated, resend_uncertain=resend_uncertain
    )


@task(name="publish-archive", cache_policy=NO_CACHE)
def publish_task(settings: Settings, store: Store, loaded: Loaded) -> PublishReport:
    return publish_archive(loaded.content, store, settings)


def _add_delivery(summary: RunSummary, report: DeliveryReport) -> None:
    per_audience = summary.delivery.setdefault(report.slug, {})
    for audience, result in report.audiences.items():
        per_audience[audience] = dict(result.states)
        summary.emails_sent += result.states["sent"]
        summary.emails_uncertain += result.states["uncertain"]
        summary.emails_failed += result.states["failed"]


@flow(name="pipeline", log_prints=False)
def pipeline(dry_run: bool = False, resend_updated: bool = False, resend_uncertain: bool = False) -> dict[str, Any]:
    """Everything: ingest → stubs → join → render → deliver → publish."""
    run_logger = get_run_logger()
    settings, store, loaded = _context()
    summary = RunSummary(
        outbox=str(settings.outbox_path), archive=str(settings.archive_path), problems=[str(p) for p in loaded.problems]
    )
    ingest = ingest_task(settings, store, loaded)
    summary.articles_new, summary.articles_updated = len(ingest.new_articles), len(ingest.updated_articles)
    summary.feeds_failed = [f"{o.feed_id}: {o.error}" for o in ingest.errors]
    summary.stubs = stubs_task(settings, store, loaded, ingest.new_articles)
    if summary.stubs:
        loaded = load_content(settings.content_dir)
    for joined in join_briefings(loaded.content, store):
        if not joined.ok:
            summary.briefings_held.append(joined.briefing.slug)
            summary.problems.extend(str(p) for p in joined.problems)
            continue
        rendered = render_task(settings, store, loaded, joined)
        summary.briefings_rendered.append(joined.briefing.slug)
        if not dry_run:
            _add_delivery(summary, deliver_task(settings, store, loaded, rendered, resend_updated, resend_uncertain))
    if not dry_run:
        report = publish_task(settings, store, loaded)
        summary.pages_written = [str(p) for p in report.written]
        summary.pages_unchanged = len(report.unchanged)
    run_logger.info(
        "pipeline done: %d new articles, %d briefings rendered, %d emails sent",
        summary.articles_new,
        len(summary.briefings_rendered),
        summary.emails_sent,
    )
    return summary.to_dict()

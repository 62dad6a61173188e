"""Ingest stage: fetch feeds, parse entries, identify articles, fill in full text, store them.

Entry points: `ingest_feeds` (every feed of feeds.yaml, used by the pipeline) and `ingest_url` (one
article outside any feed, used by `briefing add`). Both go through one shared `Fetcher`.

Per feed: conditional GET (a 304 costs no parsing) → feedparser on the bytes and response headers (JSON
Feed read directly) → entries resolved to stable article ids → teaser-only entries completed from their
page → one store transaction → the feed's outcome and validators recorded. A failure stays in its feed.
With parser processes, parsing, resolving and (when no page is needed) storing happen in one of them.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flows.core.content import FEEDS_FILE, FILE_FEED_HINT, file_feed_refusal, resolve_feed_url
from flows.core.errors import FetchError, UnsafeURLError
from flows.core.identity import canonical_url, derive_article_id, fingerprint
from flows.core.models import Article, Feed
from flows.core.settings import Settings
from flows.core.store import Store
from flows.ingest.extract import ExtractedPage, extract_article
from flows.ingest.fetch import Fetcher, FetchResult
from flows.ingest.gc_tuning import relaxed_collection
from flows.ingest.reading import (
    MAX_WARNING_CHARS,
    Entry,
    FeedJob,
    FeedOutcome,
    read_and_store,
    store_feed,
    wants_full_text,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"


@dataclass
class IngestReport:
    outcomes: list[FeedOutcome] = field(default_factory=list)

    @property
    def new_articles(self) -> list[str]:
        return [a for o in self.outcomes for a in o.new]

    @property
    def updated_articles(self) -> list[str]:
        return [a for o in self.outcomes for a in o.updated]

    @property
    def errors(self) -> list[FeedOutcome]:
        return [o for o in self.outcomes if o.status == "error"]

    @property
    def warnings(self) -> list[str]:
        return [f"{o.feed_id}: {w}" for o in self.outcomes for w in o.warnings]


# full text --------------------------------------------------------------------------------------------


async def fetch_page(fetcher: Fetcher, url: str) -> tuple[ExtractedPage, str]:
    """Fetch and extract one article page. Returns the page and its final URL; raises FetchError."""
    result = await fetcher.fetch(url, accept=PAGE_ACCEPT)
    page = await asyncio.to_thread(extract_article, _page_text(result), result.url)
    if not page.paragraphs:
        raise FetchError(url, "no article text found on the page")
    return page, result.url


def _page_text(result: FetchResult) -> str | bytes:
    """Decode with the header's charset when there is one; otherwise let trafilatura sniff the bytes."""
    content_type = result.headers.get("content-type", "")
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.lower() == "charset" and value:
            try:
                return result.body.decode(value.strip("\"' "), errors="replace")
            except LookupError:
                break
    return result.body


def merge_page(article: Article, page: ExtractedPage) -> Article:
    """The page's text replaces the teaser; the feed's metadata wins where it has any."""
    feed_title_missing = article.title in {"", article.url, "(untitled)"}
    return article.model_copy(
        update={
            "title": (page.title or article.title) if feed_title_missing else article.title,
            "author": article.author or page.author,
            "published": article.published or page.published,
            "content_html": page.html,
            "paragraphs": page.paragraphs,
        }
    )


async def complete_full_text(fetcher: Fetcher, entries: list[Entry], outcome: FeedOutcome) -> None:
    """Fetch the pages of teaser-only entries; a failed page keeps the teaser and adds a warning."""

    async def complete(entry: Entry) -> None:
        try:
            page, _final = await fetch_page(fetcher, entry.article.url)
        except FetchError as exc:
            outcome.warnings.append(f"kept the teaser of {entry.article.url}: {exc}"[:MAX_WARNING_CHARS])
            return
        outcome.pages_fetched += 1
        if len(page.text) <= entry.text_chars:
            outcome.warnings.append(f"kept the teaser of {entry.article.url}: the page had no more text")
            return
        entry.article = merge_page(entry.article, page)

    await asyncio.gather(*(complete(e) for e in entries))


# one feed ---------------------------------------------------------------------------------------------


async def _run_cpu(parsers: ParserPool | None, function: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound work in the parser processes when there are any, else in a thread."""
    if parsers is not None:
        try:
            return await parsers.run(function, *args)
        except BrokenProcessPool:
            logger.warning("the feed parser processes died; parsing in this process instead")
    return await asyncio.to_thread(function, *args)


async def ingest_one(
    fetcher: Fetcher,
    store: Store,
    feed: Feed,
    settings: Settings,
    state: dict[str, Any] | None = None,
    parsers: ParserPool | None = None,
    first_sight: bool | None = None,
) -> FeedOutcome:
    """One feed, start to end. `state` holds its stored validators (etag, last_modified) when the caller
    loaded them already; `parsers` is a process pool for parsing when the run uses one; `first_sight` says
    whether any earlier run read the feed (looked up when not given)."""
    url = resolve_feed_url(feed, settings.content_dir)
    outcome = FeedOutcome(feed_id=feed.id, url=url, status="ok")
    refusal = file_feed_refusal(feed, settings.content_dir, settings.file_feed_dirs)
    if refusal:
        feeds_file = settings.content_dir / FEEDS_FILE
        refused = UnsafeURLError(url, f"{feeds_file}: {refusal}", hint=FILE_FEED_HINT)
        return await _record_error(store, outcome, refused)
    if state is None or first_sight is None:
        stored = await asyncio.to_thread(store.feed_state, url)
        state = state if state is not None else stored
        first_sight = not stored.get("last_ok_at")
    outcome.first_sight = first_sight
    try:
        fetched = await fetcher.fetch(
            url, etag=state.get("etag"), last_modified=state.get("last_modified"), accept=FEED_ACCEPT, allow_file=True
        )
    except FetchError as exc:
        return await _record_error(store, outcome, exc)
    outcome.attempts = fetched.attempts
    if fetched.not_modified:
        outcome.status = "not_modified"  # recorded for all such feeds at once by the caller
        return outcome
    # a parser process opens the store itself (by URL) and sends back only the outcome
    where = store if parsers is None else store.url
    job = FeedJob(
        feed,
        url,
        settings.ingest_parser,
        settings.fulltext_threshold,
        fetched.url,
        fetched.headers,
        settings.max_entries_per_feed,
    )
    read = await _run_cpu(parsers, read_and_store, fetched.body, job, where)
    outcome.bozo = read.bozo
    if not read.is_feed:
        not_a_feed = FetchError(url, f"not a feed: {outcome.bozo or 'no entries and no feed format'}")
        return await _record_error(store, outcome, not_a_feed)
    outcome.warnings.extend(read.warnings)
    if read.stored is not None:
        outcome.entries, outcome.seen = read.stored.entries, read.stored.seen
        outcome.new, outcome.updated = read.stored.new, read.stored.updated
        return outcome
    entries = read.entries  # matched; some need their page
    await complete_full_text(fetcher, [e for e in entries if wants_full_text(e, feed, job.fulltext_threshold)], outcome)
    await asyncio.to_thread(store_feed, store, feed, entries, outcome, fetched.headers)
    return outcome


async def _record_error(store: Store, outcome: FeedOutcome, error: FetchError) -> FeedOutcome:
    outcome.status = "error"
    outcome.error = str(error.message) + (f" — {error.hint}" if error.hint else "")
    outcome.error_type = type(error).__name__
    outcome.retryable = error.retryable
    logger.warning("%s: %s", outcome.url, outcome.error)
    await asyncio.to_thread(
        store.record_feed,
        outcome.url,
        feed_id=outcome.feed_id,
        last_status="error",
        last_error=outcome.error,
        bozo=outcome.bozo or None,
    )
    return outcome


# all feeds --------------------------------------------------------------------------------------------


AUTO_PARSE_PROCESSES_MIN_FEEDS = 100


def parse_process_count(setting: int | str, feeds: int) -> int:
    """How many parser processes a run of `feeds` feeds gets (0: parse in this process)."""
    if setting == "auto":
        if feeds < AUTO_PARSE_PROCESSES_MIN_FEEDS:
            return 0
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        setting = cores
    workers = min(int(setting), feeds)
    return workers if workers >= 2 else 0


class ParserPool:
    """The run's parser processes (feedparser is pure Python, so threads would share one core).

    Starting them means starting a forkserver that imports `flows.ingest.reading`, then forking each worker:
    they are ready about 0.65 s into a cold run here (docs/ingest.md). `ProcessPoolExecutor` does that
    inside `submit` (one worker per submit that finds none idle), which blocked the event loop, and every
    fetch with it, for 0.7 to 1.4 s when the workers imported all of `flows.ingest`. Here the start runs
    in a thread: at once when the run has feeds without validators (their answers will need parsing),
    else at the first parse. Parses wait for it; fetches do not."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["flows.ingest.reading"])
        self._workers = workers
        self._executor = ProcessPoolExecutor(max_workers=workers, mp_context=context)
        self._started: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Begin starting the processes without waiting for them (call from the event loop)."""
        if self._started is None:
            self._started = asyncio.ensure_future(asyncio.to_thread(self._start_workers))

    def _start_workers(self) -> None:
        # A submit finding no idle worker starts one more (int() is a no-op job): one submit per worker.
        for started in [self._executor.submit(int) for _ in range(self._workers)]:
            started.result()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        self.start()
        assert self._started is not None
        await asyncio.shield(self._started)  # one feed's cancellation must not cancel the start for all
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    async def close(self) -> None:
        if self._started is not None and not self._started.done():
            await asyncio.wait([self._started])
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)


def _parser_pool(settings: Settings, states: list[dict[str, Any]]) -> ParserPool | None:
    """The run's parser processes (`states`: each feed's stored validators), started at once when some feed
    has none."""
    workers = parse_process_count(settings.ingest_parse_processes, len(states))
    if not workers:
        return None
    pool = ParserPool(workers)
    if any(not any(state.values()) for state in states):
        pool.start()
    return pool


async def ingest_feeds_async(feeds: list[Feed], store: Store, settings: Settings) -> IngestReport:
    with relaxed_collection():  # hundreds of requests in flight: see flows/ingest/gc_tuning.py
        return await _ingest_all(feeds, store, settings)


async def _ingest_all(feeds: list[Feed], store: Store, settings: Settings) -> IngestReport:
    validators = await asyncio.to_thread(store.feed_validators)
    read_before = await asyncio.to_thread(store.feeds_read_before)
    urls = [resolve_feed_url(feed, settings.content_dir) for feed in feeds]
    states = [validators.get(url, {}) for url in urls]
    parsers = _parser_pool(settings, states)
    try:
        async with Fetcher(settings) as fetcher:
            results = await asyncio.gather(
                *(
                    ingest_one(fetcher, store, feed, settings, state, parsers, url not in read_before)
                    for feed, url, state in zip(feeds, urls, states, strict=True)
                ),
                return_exceptions=True,
            )
    finally:
        if parsers is not None:
            await parsers.close()
    outcomes = []
    for feed, url, result in zip(feeds, urls, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result  # KeyboardInterrupt, SystemExit: never turned into a feed error
            logger.error("%s: ingest failed unexpectedly", feed.url, exc_info=result)
            error = f"internal error: {type(result).__name__}: {result}"
            result = FeedOutcome(
                feed_id=feed.id, url=feed.url, status="error", error=error, error_type=type(result).__name__
            )
            store.record_feed(url, feed_id=feed.id, last_status="error", last_error=result.error)
        outcomes.append(result)
    not_modified = [(o.url, o.feed_id) for o in outcomes if o.status == "not_modified"]
    if not_modified:
        await asyncio.to_thread(store.record_feeds_not_modified, not_modified)
    return IngestReport(outcomes=outcomes)


def ingest_feeds(feeds: list[Feed], store: Store, settings: Settings) -> IngestReport:
    """Fetch and store every feed; one failing feed never stops the others."""
    report = asyncio.run(ingest_feeds_async(feeds, store, settings))
    logger.info(
        "ingested %d feeds: %d new, %d updated, %d errors",
        len(report.outcomes),
        len(report.new_articles),
        len(report.updated_articles),
        len(report.errors),
    )
    return report


# one URL ----------------------------------------------------------------------------------------------


@dataclass
class AddedArticle:
    article: Article
    status: str  # new | updated | seen


async def ingest_url_async(url: str, store: Store, settings: Settings) -> AddedArticle:
    async with Fetcher(settings) as fetcher:
        page, final_url = await fetch_page(fetcher, url)
    canonical = canonical_url(final_url)
    existing = store.find_article(canonical_url=canonical) or store.find_article(canonical_url=canonical_url(url))
    title = page.title or final_url
    article = Article(
        id=existing.id if existing else derive_article_id("", final_url, title, ""),
        url=final_url,
        title=title,
        site=page.site or (urlsplit(final_url).hostname or ""),
        author=page.author,
        published=page.published,
        feed_id="",
        summary=page.paragraphs[0].text[:2000] if page.paragraphs else "",
        content_html=page.html,
        paragraphs=page.paragraphs,
        fingerprint=fingerprint(title, page.text),
    )
    status = store.save_article(article, canonical_url=canonical, guid="")
    return AddedArticle(article=store.get_article(article.id) or article, status=status)


def ingest_url(url: str, store: Store, settings: Settings) -> AddedArticle:
    """Fetch one article page, extract it and store it (same fetcher, limits and checks as feeds)."""
    return asyncio.run(ingest_url_async(url, store, settings))

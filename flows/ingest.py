"""Ingest stage: fetch feeds, parse entries, identify articles, store them. Entry point: `ingest_feeds`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from time import struct_time
from urllib.parse import urlsplit
from urllib.request import url2pathname

import feedparser
import httpx

from flows.content import resolve_feed_url
from flows.errors import FetchError
from flows.extract import html_to_paragraphs, sanitise_html
from flows.identity import canonical_url, derive_article_id, fingerprint
from flows.models import Article, Feed
from flows.settings import Settings
from flows.store import Store

logger = logging.getLogger(__name__)


@dataclass
class FeedOutcome:
    feed_id: str
    url: str
    status: str  # ok | not_modified | error
    error: str = ""
    entries: int = 0
    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    seen: int = 0
    bozo: str = ""


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


@dataclass
class Fetched:
    status: int
    body: bytes
    headers: dict[str, str]
    url: str


async def fetch_feed_bytes(client: httpx.AsyncClient, url: str, state: dict[str, str | None]) -> Fetched:
    if url.startswith("file:"):
        path = Path(url2pathname(urlsplit(url).path))
        try:
            return Fetched(200, path.read_bytes(), {}, url)
        except OSError as exc:
            raise FetchError(
                url, f"cannot read local feed: {exc.strerror}", hint="fix the path in feeds.yaml"
            ) from None
    headers = {}
    if state.get("etag"):
        headers["If-None-Match"] = str(state["etag"])
    if state.get("last_modified"):
        headers["If-Modified-Since"] = str(state["last_modified"])
    try:
        response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise FetchError(url, f"{type(exc).__name__}: {exc}", retryable=True) from None
    if response.status_code >= 400:
        raise FetchError(url, f"HTTP {response.status_code}", retryable=response.status_code >= 500)
    return Fetched(response.status_code, response.content, dict(response.headers), str(response.url))


def _entry_datetime(entry: feedparser.FeedParserDict) -> datetime | None:
    parsed: struct_time | None = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    return datetime(*parsed[:6], tzinfo=UTC)


def entry_to_article(entry: feedparser.FeedParserDict, feed: Feed, site: str) -> tuple[Article, str, str]:
    """Build an Article from a feed entry. Returns (article, canonical link, guid)."""
    link = entry.get("link", "") or ""
    guid = entry.get("id", "") or ""
    title = entry.get("title", "") or link or "(untitled)"
    contents = entry.get("content") or []
    html = max((c.get("value", "") for c in contents), key=len, default="") or entry.get("summary", "") or ""
    clean = sanitise_html(html)
    paragraphs = html_to_paragraphs(clean)
    published = _entry_datetime(entry)
    text = " ".join(p.text for p in paragraphs)
    article = Article(
        id=derive_article_id(guid, link, title, published.isoformat() if published else ""),
        url=link,
        title=title,
        site=site,
        author=entry.get("author", "") or "",
        published=published,
        feed_id=feed.id,
        summary=sanitise_html(entry.get("summary", "") or "")[:2000],
        content_html=clean,
        paragraphs=paragraphs,
        fingerprint=fingerprint(title, text),
    )
    return article, canonical_url(link), guid


def store_entries(store: Store, feed: Feed, parsed: feedparser.FeedParserDict, outcome: FeedOutcome) -> None:
    site = parsed.feed.get("title", "") or feed.title
    for entry in parsed.entries:
        try:
            article, canonical, guid = entry_to_article(entry, feed, site)
        except (ValueError, TypeError) as exc:
            logger.warning("%s: skipping an entry that cannot be read: %s", feed.url, exc)
            continue
        existing = store.find_article(canonical_url=canonical) or store.find_article(fingerprint=article.fingerprint)
        if existing is not None and existing.id != article.id:
            article = article.model_copy(update={"id": existing.id})
        result = store.save_article(article, canonical_url=canonical, guid=guid)
        outcome.entries += 1
        if result == "new":
            outcome.new.append(article.id)
        elif result == "updated":
            outcome.updated.append(article.id)
        else:
            outcome.seen += 1


async def ingest_one(client: httpx.AsyncClient, store: Store, feed: Feed, settings: Settings) -> FeedOutcome:
    url = resolve_feed_url(feed, settings.content_dir)
    outcome = FeedOutcome(feed_id=feed.id, url=url, status="ok")
    state = store.feed_state(url)
    try:
        fetched = await fetch_feed_bytes(client, url, state)
    except FetchError as exc:
        outcome.status, outcome.error = "error", exc.message
        store.record_feed(url, feed_id=feed.id, last_status="error", last_error=exc.message)
        logger.warning("%s: %s", url, exc.message)
        return outcome
    if fetched.status == 304:
        outcome.status = "not_modified"
        store.record_feed(url, feed_id=feed.id, last_status="not_modified", last_error=None)
        return outcome
    parsed = await asyncio.to_thread(feedparser.parse, fetched.body, response_headers=fetched.headers)
    if parsed.bozo:
        outcome.bozo = str(parsed.get("bozo_exception", "ill-formed feed"))[:500]
    if parsed.bozo and not parsed.entries:
        outcome.status, outcome.error = "error", f"not a feed: {outcome.bozo}"
        store.record_feed(url, feed_id=feed.id, last_status="error", last_error=outcome.error, bozo=outcome.bozo)
        return outcome
    await asyncio.to_thread(store_entries, store, feed, parsed, outcome)
    store.record_feed(
        url,
        feed_id=feed.id,
        last_status="ok",
        last_error=None,
        bozo=outcome.bozo or None,
        etag=fetched.headers.get("etag"),
        last_modified=fetched.headers.get("last-modified"),
        entries_new=len(outcome.new),
        entries_seen=outcome.seen,
    )
    return outcome


async def _ingest_all(feeds: list[Feed], store: Store, settings: Settings) -> IngestReport:
    limits = httpx.Limits(max_connections=settings.fetch_concurrency)
    timeout = httpx.Timeout(settings.fetch_timeout, connect=settings.fetch_connect_timeout)
    async with httpx.AsyncClient(
        limits=limits,
        timeout=timeout,
        follow_redirects=True,
        max_redirects=settings.max_redirects,
        headers={"User-Agent": settings.user_agent},
    ) as client:
        outcomes = await asyncio.gather(*(ingest_one(client, store, f, settings) for f in feeds))
    return IngestReport(outcomes=list(outcomes))


def ingest_feeds(feeds: list[Feed], store: Store, settings: Settings) -> IngestReport:
    """Fetch and store every feed; one failing feed never stops the others."""
    return asyncio.run(_ingest_all(feeds, store, settings))

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
import html as html_lib
import json
import logging
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from time import struct_time
from typing import Any, TypeVar
from urllib.parse import urlsplit

import feedparser
from feedparser.urls import make_safe_absolute_uri
from sqlalchemy.engine import Connection

from flows.collector import relaxed_collection
from flows.content import resolve_feed_url
from flows.errors import FetchError
from flows.extract import ExtractedPage, extract_article, html_to_paragraphs, make_urls_absolute, sanitise_html
from flows.feedparser_rs_adapter import parse_with_feedparser_rs
from flows.fetch import Fetcher, FetchResult
from flows.identity import (
    canonical_url,
    derive_article_id,
    fingerprint,
    is_meaningful_fingerprint_text,
    looks_trustworthy_guid,
)
from flows.models import Article, Feed
from flows.settings import FeedParserName, Settings
from flows.store import ArticleMatches, Store, open_store

logger = logging.getLogger(__name__)
T = TypeVar("T")

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
)
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
MAX_WARNING_CHARS = 500
UNAPPLIED_BASE_URL = "briefing_base_url"  # set on feedparser results parsed without the feed's URL (see parse_feed)


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
    warnings: list[str] = field(default_factory=list)
    pages_fetched: int = 0
    attempts: int = 0


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


@dataclass
class Entry:
    """One feed entry read into an article, before its id is resolved against the store."""

    article: Article
    canonical: str  # empty when the link does not identify this entry alone
    guid: str  # empty when the GUID is not trustworthy
    text_chars: int
    status: str = "new"  # new | changed | seen | duplicate
    fingerprint_usable: bool = False  # enough text for the fingerprint to identify it (see identity)


# reading feeds ----------------------------------------------------------------------------------------


def parse_feed(
    body: bytes, headers: dict[str, str], url: str, parser: FeedParserName = "feedparser"
) -> feedparser.FeedParserDict:
    """Parse the bytes with the response headers (charset, base URL); JSON Feed read directly.

    `parser`: "feedparser", "feedparser-rs", or "auto" (feedparser-rs, and feedparser for a feed it finds
    ill-formed or without entries)."""
    content_type = headers.get("content-type", "").lower()
    if "json" in content_type or body.lstrip()[:1] == b"{":
        parsed = parse_json_feed(body)
        if parsed is not None:
            return parsed
    response_headers = dict(headers)
    response_headers.pop("content-encoding", None)  # httpx already decoded the body
    if parser != "feedparser":
        parsed = parse_with_feedparser_rs(body, {"content-location": url, **response_headers})
        if parser == "feedparser-rs" or (parsed.entries and not parsed.bozo):
            return parsed
    # feedparser's sanitiser and link resolver each re-parse every entry's HTML in pure Python (≈2/3 of its
    # time): nh3 sanitises afterwards (allow-list) and make_urls_absolute resolves links only when needed.
    # Given the feed's URL as Content-Location, feedparser re-joins the base URL at every element (≈ a
    # quarter of its time); read_entries resolves the few URLs it uses against that URL instead.
    parsed = feedparser.parse(body, response_headers=response_headers, sanitize_html=False, resolve_relative_uris=False)
    parsed[UNAPPLIED_BASE_URL] = url
    return parsed


def parse_json_feed(body: bytes) -> feedparser.FeedParserDict | None:
    """JSON Feed 1.0/1.1 (jsonfeed.org) mapped onto feedparser's shape; None when it is not one."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or "jsonfeed.org" not in str(data.get("version", "")):
        return None
    entries = []
    for item in data.get("items") or []:
        if not isinstance(item, dict):
            continue
        content_html = item.get("content_html") or ""
        if not content_html and item.get("content_text"):
            content_html = _text_to_html(str(item["content_text"]))
        authors = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else [])
        published = _iso_to_struct(item.get("date_published") or item.get("date_modified"))
        entries.append(
            feedparser.FeedParserDict(
                id=str(item.get("id", "")),
                link=str(item.get("url") or item.get("external_url") or ""),
                title=str(item.get("title") or ""),
                content=[{"value": str(content_html), "type": "text/html"}] if content_html else [],
                summary=str(item.get("summary") or ""),
                author=str(authors[0].get("name", "")) if authors and isinstance(authors[0], dict) else "",
                published_parsed=published,
            )
        )
    return feedparser.FeedParserDict(
        feed=feedparser.FeedParserDict(title=str(data.get("title") or "")),
        entries=entries,
        bozo=False,
        version="json" + str(data.get("version", "")).rstrip("/").rsplit("/", 1)[-1],
    )


def _iso_to_struct(value: Any) -> struct_time | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC).timetuple() if parsed.tzinfo else parsed.timetuple()


def _text_to_html(text: str) -> str:
    chunks = [c.strip() for c in text.split("\n\n") if c.strip()]
    return "".join(f"<p>{html_lib.escape(c)}</p>" for c in chunks)


def _entry_datetime(entry: feedparser.FeedParserDict) -> datetime | None:
    # dict.get: feedparser's own .get maps a missing updated_parsed to published_parsed with a DeprecationWarning
    parsed: struct_time | None = dict.get(entry, "published_parsed") or dict.get(entry, "updated_parsed")
    if not parsed:
        return None
    try:
        return datetime(*parsed[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def _entry_html(entry: feedparser.FeedParserDict) -> tuple[str, str]:
    """The entry's richest HTML and the base URL its relative links resolve against."""
    contents = [c for c in entry.get("content") or [] if isinstance(c, dict)]
    best = max(contents, key=lambda c: len(c.get("value") or ""), default=None)
    if best is not None and best.get("value"):
        value = str(best["value"])
        html = _text_to_html(value) if best.get("type") == "text/plain" else value
        return html, str(best.get("base") or "")
    summary = str(entry.get("summary") or "")
    detail = entry.get("summary_detail") or {}
    html = _text_to_html(summary) if detail.get("type") == "text/plain" else summary
    return html, str(detail.get("base") or "")


def read_entries(parsed: feedparser.FeedParserDict, feed: Feed) -> tuple[list[Entry], list[str]]:
    """Every readable entry as an article with a candidate id; unreadable entries become warnings."""
    site = str(parsed.feed.get("title", "") or feed.title or feed.id)
    raw = list(parsed.entries)
    base_url = str(parsed.get(UNAPPLIED_BASE_URL) or "")
    links = [_entry_link(e, base_url) for e in raw]
    link_counts = Counter(canonical for _link, canonical in links)
    guid_counts = Counter(str(e.get("id") or "") for e in raw)
    entries, warnings = [], []
    for position, (entry, (link, canonical)) in enumerate(zip(raw, links, strict=True), start=1):
        try:
            guid = str(entry.get("id") or "")
            trusted_guid = guid if looks_trustworthy_guid(guid, canonical) and guid_counts[guid] == 1 else ""
            unique_link = canonical if canonical and link_counts[canonical] == 1 else ""
            entries.append(_entry_to_article(entry, link, feed, site, unique_link, trusted_guid, base_url))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            warnings.append(f"entry {position} skipped: {type(exc).__name__}: {exc}"[:MAX_WARNING_CHARS])
    return entries, warnings


def _entry_link(entry: feedparser.FeedParserDict, base_url: str = "") -> tuple[str, str]:
    """The entry's link and its canonical form; ("", "") when it is no URL ("http://[oops", a port out of
    range): such a link names nothing, and every later use of it (identity, full text, stubs) would fail on
    it. feedparser drops such links itself; feedparser-rs keeps them. With `base_url`, a relative link is
    resolved against it and a link in a scheme feedparser finds unsafe (`javascript:`) is dropped, as
    feedparser does with a base."""
    link = str(entry.get("link") or "")
    if base_url and link:
        link = make_safe_absolute_uri(base_url, link)
    try:
        return link, canonical_url(link)  # parses scheme, host and port
    except ValueError:
        return "", ""


def _entry_to_article(
    entry: feedparser.FeedParserDict, link: str, feed: Feed, site: str, canonical: str, guid: str, base_url: str = ""
) -> Entry:
    title = _one_line(str(entry.get("title") or "")) or link or "(untitled)"
    raw_html, base = _entry_html(entry)
    if base_url:  # the content's xml:base, if any, is relative to the feed's URL
        base = make_safe_absolute_uri(base_url, base) if base else base_url
    clean = sanitise_html(make_urls_absolute(raw_html, base or link))
    paragraphs = html_to_paragraphs(clean, sanitised=True)
    raw_summary = str(entry.get("summary") or "")
    summary = clean if raw_summary == raw_html else sanitise_html(make_urls_absolute(raw_summary, base or link))
    text = " ".join(p.text for p in paragraphs)
    published = _entry_datetime(entry)
    article = Article(
        id=derive_article_id(
            guid, link, title, published.isoformat() if published else "", link_is_unique=bool(canonical)
        ),
        url=link,
        title=title,
        site=site,
        author=_one_line(str(entry.get("author") or "")),
        published=published,
        feed_id=feed.id,
        summary=summary[:2000],
        content_html=clean,
        paragraphs=paragraphs,
        fingerprint=fingerprint(title, text),
    )
    usable = is_meaningful_fingerprint_text(title, text)
    return Entry(article=article, canonical=canonical, guid=guid, text_chars=len(text), fingerprint_usable=usable)


def _one_line(text: str) -> str:
    """Collapse whitespace but keep the characters as written (no NFKC: full-width punctuation stays)."""
    return " ".join(text.split())


# identity ---------------------------------------------------------------------------------------------


def match_entries(store: Store, feed: Feed, entries: list[Entry]) -> None:
    """Give each entry the id of the stored article it already is (by id, GUID, link or fingerprint)."""
    matches = store.match_articles(
        ids={e.article.id for e in entries},
        guids={e.guid for e in entries if e.guid},
        canonical_urls={e.canonical for e in entries if e.canonical},
        fingerprints={e.article.fingerprint for e in entries if e.fingerprint_usable},
        feed_id=feed.id,
    )
    used: set[str] = set()
    for entry in entries:
        article_id = _existing_id(entry, matches) or entry.article.id
        if article_id in used:
            entry.status = "duplicate"  # the feed lists the same article twice
            continue
        used.add(article_id)
        if article_id != entry.article.id:
            entry.article = entry.article.model_copy(update={"id": article_id})
        stored = matches.fingerprint_of.get(article_id)
        owner = matches.feed_of.get(article_id, "")
        if stored is None:
            entry.status = "new"
        elif stored == entry.article.fingerprint or owner not in {"", feed.id}:
            # another feed carries this article too (often as a teaser): the first feed's version stays,
            # or the two would overwrite each other on every run
            entry.status = "seen"
        else:
            entry.status = "changed"


def _existing_id(entry: Entry, matches: ArticleMatches) -> str | None:
    if entry.article.id in matches.fingerprint_of:
        return entry.article.id
    if entry.guid and entry.guid in matches.by_guid:
        return matches.by_guid[entry.guid]
    if entry.canonical and entry.canonical in matches.by_canonical_url:
        return matches.by_canonical_url[entry.canonical]
    if entry.fingerprint_usable:
        return matches.by_fingerprint.get(entry.article.fingerprint)
    return None


# full text --------------------------------------------------------------------------------------------


def wants_full_text(entry: Entry, feed: Feed, threshold: int) -> bool:
    """Whether the entry's page should be fetched: a new or changed entry with under `threshold` characters
    of text (the `fulltext_threshold` setting), or any entry of a feed set to `fulltext: true`."""
    if entry.status not in {"new", "changed"} or feed.fulltext is False:
        return False
    if urlsplit(entry.article.url).scheme.lower() not in {"http", "https"}:
        return False
    return feed.fulltext is True or entry.text_chars < threshold


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


@dataclass
class ReadFeed:
    """A parsed feed's entries, or what storing them gave (picklable: it may come from a parser process)."""

    is_feed: bool
    bozo: str = ""
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stored: FeedOutcome | None = None  # set when read_and_store stored the feed itself (entries then empty)


def read_feed(
    body: bytes, headers: dict[str, str], url: str, feed: Feed, parser: FeedParserName = "feedparser"
) -> ReadFeed:
    """Parse the bytes and read every entry (the CPU-heavy half of ingesting a feed)."""
    parsed = parse_feed(body, headers, url, parser)
    bozo = _bozo_text(parsed) if parsed.get("bozo") else ""
    if not parsed.entries and not parsed.get("version"):
        return ReadFeed(is_feed=False, bozo=bozo)
    entries, warnings = read_entries(parsed, feed)
    return ReadFeed(is_feed=True, bozo=bozo, entries=entries, warnings=warnings)


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
) -> FeedOutcome:
    """One feed, start to end. `state` holds its stored validators (etag, last_modified) when the caller
    loaded them already; `parsers` is a process pool for parsing when the run uses one."""
    url = resolve_feed_url(feed, settings.content_dir)
    outcome = FeedOutcome(feed_id=feed.id, url=url, status="ok")
    if state is None:
        state = await asyncio.to_thread(store.feed_state, url)
    try:
        fetched = await fetcher.fetch(
            url, etag=state.get("etag"), last_modified=state.get("last_modified"), accept=FEED_ACCEPT, allow_file=True
        )
    except FetchError as exc:
        return await _record_error(store, outcome, str(exc.message), exc.hint)
    outcome.attempts = fetched.attempts
    if fetched.not_modified:
        outcome.status = "not_modified"  # recorded for all such feeds at once by the caller
        return outcome
    # a parser process opens the store itself (by URL) and sends back only the outcome
    where = store if parsers is None else store.url
    job = FeedJob(feed, url, settings.ingest_parser, settings.fulltext_threshold, replace(fetched, body=b""))
    read = await _run_cpu(parsers, read_and_store, fetched.body, job, where)
    outcome.bozo = read.bozo
    if not read.is_feed:
        return await _record_error(store, outcome, f"not a feed: {outcome.bozo or 'no entries and no feed format'}")
    outcome.warnings.extend(read.warnings)
    if read.stored is not None:
        outcome.entries, outcome.seen = read.stored.entries, read.stored.seen
        outcome.new, outcome.updated = read.stored.new, read.stored.updated
        return outcome
    entries = read.entries  # matched; some need their page
    await complete_full_text(fetcher, [e for e in entries if wants_full_text(e, feed, job.fulltext_threshold)], outcome)
    await asyncio.to_thread(_store_feed, store, feed, entries, outcome, fetched)
    return outcome


@dataclass(frozen=True)
class FeedJob:
    """What `read_and_store` needs besides the body (picklable: it goes to a parser process)."""

    feed: Feed
    state_url: str  # the feed's key in feed_state (its URL as configured, before redirects)
    parser: FeedParserName
    fulltext_threshold: int
    fetched: FetchResult  # final URL, headers and validators; the body travels separately


def read_and_store(body: bytes, job: FeedJob, store: Store | str) -> ReadFeed:
    """Parse a fetched feed, match its entries against the store and, when none needs its page fetched,
    store them with the feed's state. In a parser process this keeps the articles out of the ingest
    process (no pickling back, no storing there). A feed with teaser-only entries comes back matched and
    unsaved: the ingest process fetches the pages and stores it. `store`: the Store, or its URL."""
    fetched = job.fetched
    read = read_feed(body, fetched.headers, fetched.url, job.feed, job.parser)
    if not read.is_feed:
        return read
    db = open_store(store) if isinstance(store, str) else store
    match_entries(db, job.feed, read.entries)
    if any(wants_full_text(e, job.feed, job.fulltext_threshold) for e in read.entries):
        return read
    stored = FeedOutcome(feed_id=job.feed.id, url=job.state_url, status="ok", bozo=read.bozo)
    stored.warnings.extend(read.warnings)
    _store_feed(db, job.feed, read.entries, stored, fetched)
    return ReadFeed(is_feed=True, bozo=read.bozo, warnings=read.warnings, stored=stored)


def _store_feed(store: Store, feed: Feed, entries: list[Entry], outcome: FeedOutcome, fetched: FetchResult) -> None:
    """The entries and then the feed's state with its validators, in one transaction: a crash never leaves
    new validators (so the next run gets a 304) without the entries they stand for."""
    outcome.entries = len(entries)
    outcome.seen = sum(1 for e in entries if e.status in {"seen", "duplicate"})
    to_save = [e for e in entries if e.status in {"new", "changed"}]
    with store.begin() as conn:
        results = store.save_articles([(e.article, e.canonical, e.guid) for e in to_save], conn=conn)
        for entry, result in zip(to_save, results, strict=True):
            if result == "new":
                outcome.new.append(entry.article.id)
            elif result == "updated":
                outcome.updated.append(entry.article.id)
            else:
                outcome.seen += 1
        _record_ok(store, feed, outcome, fetched, conn)


def _record_ok(store: Store, feed: Feed, outcome: FeedOutcome, fetched: FetchResult, conn: Connection) -> None:
    store.record_feed(
        outcome.url,
        conn=conn,
        feed_id=feed.id,
        last_status="ok",
        last_error=None,
        bozo=outcome.bozo or None,
        etag=fetched.etag,
        last_modified=fetched.last_modified,
        entries_new=len(outcome.new),
        entries_updated=len(outcome.updated),
        entries_seen=outcome.seen,
        warnings="\n".join(outcome.warnings) or None,
        last_ok_at=_now(),
    )


async def _record_error(store: Store, outcome: FeedOutcome, message: str, hint: str = "") -> FeedOutcome:
    outcome.status = "error"
    outcome.error = message + (f" — {hint}" if hint else "")
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


def _bozo_text(parsed: feedparser.FeedParserDict) -> str:
    exc = parsed.get("bozo_exception")
    text = f"{type(exc).__name__}: {exc}" if exc is not None else "ill-formed feed"
    return text[:MAX_WARNING_CHARS]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


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

    Starting them means starting a forkserver that imports the parsers, then forking each worker: 0.7 to
    1.4 s here. `ProcessPoolExecutor` does that inside `submit` (one worker per submit that finds none
    idle), which blocked the event loop, and every fetch with it, for that long. Here the start runs in a
    thread: at once when the run has feeds without validators (their answers will need parsing), else at
    the first parse. Parses wait for it; fetches do not."""

    def __init__(self, workers: int) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["flows.ingest"])
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
    with relaxed_collection():  # hundreds of requests in flight: see flows/collector.py
        return await _ingest_all(feeds, store, settings)


async def _ingest_all(feeds: list[Feed], store: Store, settings: Settings) -> IngestReport:
    validators = await asyncio.to_thread(store.feed_validators)
    urls = [resolve_feed_url(feed, settings.content_dir) for feed in feeds]
    states = [validators.get(url, {}) for url in urls]
    parsers = _parser_pool(settings, states)
    try:
        async with Fetcher(settings) as fetcher:
            results = await asyncio.gather(
                *(
                    ingest_one(fetcher, store, feed, settings, state, parsers)
                    for feed, state in zip(feeds, states, strict=True)
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
            result = FeedOutcome(feed_id=feed.id, url=feed.url, status="error", error=error)
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

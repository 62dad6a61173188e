"""Reading a fetched feed: parse it, read its entries into articles, resolve their ids against the store
and store them. This is the CPU-heavy half of ingesting a feed, the part the parser processes run.

It imports no HTTP client, trafilatura or content loader: a parser process imports this module before it
can take its first feed, and a run's first feeds arrive within half a second (docs/ingest.md, "Parser
processes ready sooner").
"""

from __future__ import annotations

import html as html_lib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import struct_time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import feedparser
from feedparser.urls import make_safe_absolute_uri
from sqlalchemy.engine import Connection

from flows.core.identity import (
    canonical_url,
    derive_article_id,
    fingerprint,
    is_meaningful_fingerprint_text,
    looks_trustworthy_guid,
)
from flows.core.models import Article, Feed
from flows.core.safe_urls import has_script_scheme
from flows.core.store import ArticleMatches, Store, open_store
from flows.ingest.extract import html_to_paragraphs, make_urls_absolute, sanitise_html
from flows.ingest.feedparser_rs import parse_with_feedparser_rs

if TYPE_CHECKING:
    from flows.core.settings import FeedParserName

MAX_WARNING_CHARS = 500
UNAPPLIED_BASE_URL = "briefing_base_url"  # set on feedparser results parsed without the feed's URL (see parse_feed)


@dataclass
class FeedOutcome:
    feed_id: str
    url: str
    status: str  # ok | not_modified | error
    error: str = ""
    error_type: str = ""  # the failure's class (FetchError, UnsafeURLError, ...); empty unless status is "error"
    retryable: bool = False  # a later attempt may succeed (5xx, 429, timeouts, refused connections): decided by type
    entries: int = 0
    new: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    seen: int = 0
    bozo: str = ""
    warnings: list[str] = field(default_factory=list)
    pages_fetched: int = 0
    attempts: int = 0
    first_sight: bool = False  # no earlier run read this feed successfully: its entries are its back catalogue


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
    link = str(entry.get("link") or "").strip()
    if base_url and link:
        link = make_safe_absolute_uri(base_url, link).strip()
    if has_script_scheme(link):  # feedparser-rs resolves nothing: it keeps javascript:, data: and vbscript: links
        return "", ""
    try:
        return link, canonical_url(link)  # parses scheme, host and port
    except ValueError:
        return "", ""


def _entry_to_article(
    entry: feedparser.FeedParserDict, link: str, feed: Feed, site: str, canonical: str, guid: str, base_url: str = ""
) -> Entry:
    title = _one_line(str(entry.get("title") or "")) or _one_line(link) or "(untitled)"
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


# one feed ---------------------------------------------------------------------------------------------


def wants_full_text(entry: Entry, feed: Feed, threshold: int) -> bool:
    """Whether the entry's page should be fetched: a new or changed entry with under `threshold` characters
    of text (the `fulltext_threshold` setting), or any entry of a feed set to `fulltext: true`."""
    if entry.status not in {"new", "changed"} or feed.fulltext is False:
        return False
    if urlsplit(entry.article.url).scheme.lower() not in {"http", "https"}:
        return False
    return feed.fulltext is True or entry.text_chars < threshold


@dataclass
class ReadFeed:
    """A parsed feed's entries, or what storing them gave (picklable: it may come from a parser process)."""

    is_feed: bool
    bozo: str = ""
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stored: FeedOutcome | None = None  # set when read_and_store stored the feed itself (entries then empty)


def read_feed(
    body: bytes,
    headers: dict[str, str],
    url: str,
    feed: Feed,
    parser: FeedParserName = "feedparser",
    max_entries: int | None = None,
) -> ReadFeed:
    """Parse the bytes and read every entry, or the newest `max_entries` (the CPU-heavy half of ingesting a feed)."""
    parsed = parse_feed(body, headers, url, parser)
    bozo = _bozo_text(parsed) if parsed.get("bozo") else ""
    if not parsed.entries and not parsed.get("version"):
        return ReadFeed(is_feed=False, bozo=bozo)
    cut = newest_entries(parsed, max_entries)
    entries, warnings = read_entries(parsed, feed)
    if cut:
        warnings.insert(0, f"the feed lists {cut + len(parsed.entries):,} entries; only the newest "
                        f"{len(parsed.entries):,} were read (BRIEFING_MAX_ENTRIES_PER_FEED)")
    return ReadFeed(is_feed=True, bozo=bozo, entries=entries, warnings=warnings)


def newest_entries(parsed: feedparser.FeedParserDict, limit: int | None) -> int:
    """Keep only the newest `limit` entries (dated ones by date, undated ones after them in the feed's order),
    in the feed's order; returns how many were left out."""
    entries = list(parsed.entries)
    if limit is None or len(entries) <= limit:
        return 0
    oldest = datetime.min.replace(tzinfo=UTC)

    def age(position: int) -> tuple[bool, datetime, int]:
        when = _entry_datetime(entries[position])
        return (when is not None, when or oldest, -position)

    keep = sorted(sorted(range(len(entries)), key=age, reverse=True)[:limit])
    parsed["entries"] = [entries[i] for i in keep]
    return len(entries) - limit


@dataclass(frozen=True)
class FeedJob:
    """What `read_and_store` needs besides the body (picklable: it goes to a parser process)."""

    feed: Feed
    state_url: str  # the feed's key in feed_state (its URL as configured, before redirects)
    parser: FeedParserName
    fulltext_threshold: int
    final_url: str  # after redirects: the base for relative links
    headers: dict[str, str]  # the response's, lower-case names: charset, ETag, Last-Modified
    max_entries: int | None = None  # BRIEFING_MAX_ENTRIES_PER_FEED


def read_and_store(body: bytes, job: FeedJob, store: Store | str) -> ReadFeed:
    """Parse a fetched feed, match its entries against the store and, when none needs its page fetched,
    store them with the feed's state. In a parser process this keeps the articles out of the ingest
    process (no pickling back, no storing there). A feed with teaser-only entries comes back matched and
    unsaved: the ingest process fetches the pages and stores it. `store`: the Store, or its URL."""
    read = read_feed(body, job.headers, job.final_url, job.feed, job.parser, job.max_entries)
    if not read.is_feed:
        return read
    db = open_store(store) if isinstance(store, str) else store
    match_entries(db, job.feed, read.entries)
    if any(wants_full_text(e, job.feed, job.fulltext_threshold) for e in read.entries):
        return read
    stored = FeedOutcome(feed_id=job.feed.id, url=job.state_url, status="ok", bozo=read.bozo)
    stored.warnings.extend(read.warnings)
    store_feed(db, job.feed, read.entries, stored, job.headers)
    return ReadFeed(is_feed=True, bozo=read.bozo, warnings=read.warnings, stored=stored)


def store_feed(store: Store, feed: Feed, entries: list[Entry], outcome: FeedOutcome, headers: dict[str, str]) -> None:
    """The entries and then the feed's state with its validators (from the response `headers`), in one
    transaction: a crash never leaves new validators (so the next run gets a 304) without the entries they
    stand for."""
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
        _record_ok(store, feed, outcome, headers, conn)


def _record_ok(store: Store, feed: Feed, outcome: FeedOutcome, headers: dict[str, str], conn: Connection) -> None:
    store.record_feed(
        outcome.url,
        conn=conn,
        feed_id=feed.id,
        last_status="ok",
        last_error=None,
        bozo=outcome.bozo or None,
        etag=headers.get("etag"),
        last_modified=headers.get("last-modified"),
        entries_new=len(outcome.new),
        entries_updated=len(outcome.updated),
        entries_seen=outcome.seen,
        warnings="\n".join(outcome.warnings) or None,
        last_ok_at=_now(),
    )


def _bozo_text(parsed: feedparser.FeedParserDict) -> str:
    exc = parsed.get("bozo_exception")
    text = f"{type(exc).__name__}: {exc}" if exc is not None else "ill-formed feed"
    return text[:MAX_WARNING_CHARS]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)

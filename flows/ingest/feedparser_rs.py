"""feedparser-rs (a Rust feed parser with a feedparser-like API) behind feedparser's result shape.

Used only when `ingest_parser` asks for it (docs/ingest.md has the comparison that decides the default).
The bytes are first decoded by feedparser's own encoding rules (`convert_to_utf8`: HTTP charset, XML
declaration, BOM, then fallbacks, RFC 3023) because feedparser-rs takes no response headers: given
ISO-8859-1 or GBK bytes declared in the header only, it would replace every non-ASCII character. Relative
links resolve against the feed's URL, as feedparser resolves them against Content-Location.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
import feedparser_rs
from feedparser.encodings import convert_to_utf8

# feedparser maps C1 control characters to the Windows-1252 characters they almost always stand for
# (a feed declared ISO-8859-1 but written in Windows-1252); feedparser-rs does not.
CP1252_C1 = {c: bytes([c]).decode("cp1252") for c in range(0x80, 0xA0) if c not in {0x81, 0x8D, 0x8F, 0x90, 0x9D}}


class FeedparserRsError(Exception):
    """feedparser-rs found the feed ill-formed (its message as text)."""


def parse_with_feedparser_rs(body: bytes, response_headers: dict[str, str]) -> feedparser.FeedParserDict:
    """Parse with feedparser-rs; the result has the fields `read_entries` reads, as feedparser names them."""
    encoding: dict[str, Any] = {}
    data = convert_to_utf8(response_headers, body, encoding)
    parsed = feedparser_rs.parse(data, sanitize_html=False, resolve_relative_uris=False)
    base = response_headers.get("content-location", "")
    bozo_exception = encoding.get("bozo_exception")
    if parsed.bozo and bozo_exception is None:
        bozo_exception = FeedparserRsError(str(parsed.bozo_exception or "ill-formed feed"))
    return feedparser.FeedParserDict(
        feed=feedparser.FeedParserDict(title=_text(parsed.feed.get("title")).translate(CP1252_C1)),
        entries=[_entry(entry, base) for entry in parsed.entries],
        bozo=bozo_exception is not None,
        bozo_exception=bozo_exception,
        version=parsed.version or "",
        encoding=encoding.get("encoding", ""),
    )


def _entry(entry: Any, base: str) -> feedparser.FeedParserDict:
    summary_detail = entry.summary_detail
    return feedparser.FeedParserDict(
        id=_text(entry.id),
        link=_absolute(_text(entry.link), base) if entry.link else "",
        title=_text(entry.title).translate(CP1252_C1),
        content=[
            {
                "value": _text(c.value).translate(CP1252_C1),
                "type": _text(c.type) or "text/html",
                "base": _absolute(_text(c.base), base),
            }
            for c in entry.content or []
        ],
        summary=_text(entry.summary).translate(CP1252_C1),
        summary_detail={
            "type": _text(summary_detail.type) if summary_detail else "text/html",
            "base": _absolute(_text(summary_detail.base) if summary_detail else "", base),
        },
        author=_text(entry.author).translate(CP1252_C1),
        published_parsed=entry.published_parsed,
        updated_parsed=entry.updated_parsed,
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _absolute(url: str, base: str) -> str:
    """A relative URL resolved against the feed's URL; an empty one becomes the feed's URL (feedparser's base)."""
    if not url:
        return base
    try:
        return url if not base or urlsplit(url).scheme else urljoin(base, url)
    except ValueError:  # not a URL at all ("http://[oops"): kept as written; ingest drops such an entry link
        return url

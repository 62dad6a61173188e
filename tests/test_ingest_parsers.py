"""feedparser and feedparser-rs side by side through the real ingest, on feeds that are easy to get wrong.

Each feed is served from loopback and ingested once per parser into its own store; what both parsers
store must be the same article for article (id, link, title, author, date, paragraphs). Where they are
known to differ (an ill-formed feed), the test says what each keeps, and that `auto` then uses feedparser.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.core.models import Feed
from flows.core.settings import FeedParserName
from flows.core.store import Store
from flows.ingest.run import ingest_feeds, parse_process_count
from tests.ingest_support import Item, LoopbackServer, long_text, malformed_rss, rss
from tests.test_ingest_fetch import make_settings

LATIN = "Café déjà vu, naïve façade"
CHINESE = "人工智能周报：模型与算力"

ATOM = f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Atom news</title>
<entry><title type="html">Chips &amp;amp; rivers</title><link href="http://atom.invalid/1"/>
<id>tag:atom.invalid,2026:1</id><updated>2026-05-01T08:00:00Z</updated><author><name>Ann Atom</name></author>
<content type="html">&lt;p&gt;{long_text("atom")}&lt;/p&gt;&lt;h2&gt;Next&lt;/h2&gt;&lt;p&gt;More.&lt;/p&gt;
</content></entry>
<entry><title>Plain summary</title><link href="http://atom.invalid/2"/><id>tag:atom.invalid,2026:2</id>
<updated>2026-05-02T08:00:00Z</updated><summary>{long_text("summary")}</summary></entry>
</feed>"""

RSS1 = f"""<?xml version="1.0" encoding="utf-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="http://rdf.invalid/"><title>RDF news</title><link>http://rdf.invalid/</link>
<description>d</description></channel>
<item rdf:about="http://rdf.invalid/1"><title>RDF one</title><link>http://rdf.invalid/1</link>
<description>{long_text("rdf")}</description><dc:date>2026-05-03T10:00:00Z</dc:date><dc:creator>Rita</dc:creator></item>
</rdf:RDF>"""

JSON_FEED = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "JSON news",
        "items": [{"id": "j1", "url": "http://json.invalid/1", "title": "Json one", "content_text": long_text("j")}],
    }
)

MALFORMED = malformed_rss()


AUTHORS = {LATIN: "Zoë Ça", CHINESE: "张伟"}


def _encoded(title: str, xml_encoding: str | None, body_encoding: str) -> bytes:
    item = Item(title, "http://enc.invalid/1", "enc-guid-1", long_text("encoding"), author=AUTHORS[title])
    return rss([item], encoding=xml_encoding).encode(body_encoding)


AGREEING = {
    "latin-1 in the header only": (_encoded(LATIN, None, "iso-8859-1"), "application/rss+xml; charset=iso-8859-1"),
    "latin-1 in the XML only": (_encoded(LATIN, "ISO-8859-1", "iso-8859-1"), "application/rss+xml"),
    "gbk in the header only": (_encoded(CHINESE, None, "gbk"), "application/rss+xml; charset=gbk"),
    "gb2312 in the XML only": (_encoded(CHINESE, "gb2312", "gb2312"), "text/xml; charset=gb2312"),
    "windows-1252 declared latin-1": (
        rss([Item("It\x92s \x93quoted\x94", "http://cp.invalid/1", "cp-guid-1", long_text("cp"))], encoding=None)
        .replace("\x92", "’")
        .replace("\x93", "“")
        .replace("\x94", "”")
        .encode("cp1252"),
        "application/rss+xml; charset=iso-8859-1",
    ),
    "latin-1 declared utf-8 (wrong)": (_encoded(LATIN, "utf-8", "iso-8859-1"), "application/rss+xml; charset=utf-8"),
    "atom 1.0": (ATOM.encode(), "application/atom+xml"),
    "rss 1.0 (rdf)": (RSS1.encode(), "application/rdf+xml"),
    "json feed": (JSON_FEED.encode(), "application/feed+json"),
}


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, str]]:
    with LoopbackServer() as server:
        urls = {}
        for n, (name, (body, content_type)) in enumerate([*AGREEING.items(), ("malformed", (MALFORMED, ""))]):
            urls[name] = server.static(f"/f{n}.xml", body, content_type or "application/rss+xml")
        yield urls


def _ingest(project: Path, url: str, parser: FeedParserName) -> tuple[Any, list[tuple[Any, ...]]]:
    settings = make_settings(project, ingest_parser=parser, output_dir=project / f"out-{parser}")
    store = Store(settings.store_url)
    try:
        report = ingest_feeds([Feed(id="feed", url=url, fulltext=False)], store, settings)
        stored = sorted(
            (a.id, a.url, a.title, a.author, a.published, tuple((p.id, p.text) for p in a.paragraphs))
            for a in store.all_articles()
        )
        return report.outcomes[0], stored
    finally:
        store.close()


@pytest.mark.parametrize("name", list(AGREEING))
def test_both_parsers_store_the_same_articles(served: dict[str, str], project: Path, name: str) -> None:
    reference, expected = _ingest(project, served[name], "feedparser")
    outcome, stored = _ingest(project, served[name], "feedparser-rs")
    assert reference.status == outcome.status == "ok", (reference.error, outcome.error)
    assert expected and stored == expected
    assert bool(outcome.bozo) == bool(reference.bozo)  # the wrong declaration is flagged by both
    if name.startswith(("latin-1 in", "gb")):
        assert stored[0][2] in AUTHORS and stored[0][3] == AUTHORS[stored[0][2]]


def test_ill_formed_feed_keeps_entries_with_either_parser_and_auto_uses_feedparser(
    served: dict[str, str], project: Path
) -> None:
    reference, expected = _ingest(project, served["malformed"], "feedparser")
    outcome, stored = _ingest(project, served["malformed"], "feedparser-rs")
    assert reference.bozo and outcome.bozo
    assert outcome.status == "ok" and stored, "feedparser-rs keeps the entries it could read"
    assert "Second & last" in {a[2] for a in expected}
    _auto, by_auto = _ingest(project, served["malformed"], "auto")
    assert by_auto == expected


def test_auto_parser_processes_only_for_long_feed_lists() -> None:
    cores = len(os.sched_getaffinity(0))
    assert parse_process_count("auto", 10) == 0
    assert parse_process_count("auto", 500) == (cores if cores >= 2 else 0)
    assert parse_process_count(0, 500) == 0 and parse_process_count(1, 500) == 0
    assert parse_process_count(4, 3) == 3

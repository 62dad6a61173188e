"""Feed contents through the whole ingest: encodings, broken XML, identity, updates, sanitising, full text."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from flows.core.models import Feed, ParagraphKind
from flows.core.settings import Settings
from flows.core.store import Store
from flows.core.store.schema import articles, feed_state
from flows.ingest import ingest_feeds
from flows.ingest.extract import make_urls_absolute, sanitise_html
from flows.ingest.stubs import write_stubs
from tests.ingest_support import Item, LoopbackServer, Reply, long_text, malformed_rss, rss
from tests.test_ingest_fetch import make_settings

ARTICLE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Chips and rivers | Test Site</title>
<meta name="author" content="Ada Page"><meta property="article:published_time" content="2026-05-02T08:00:00Z">
<script>window.tracking = true;</script></head><body>
<nav><a href="/">Home</a> <a href="/topics">Topics</a> <a href="/about">About us</a></nav>
<div class="cookie-banner">We use cookies. Accept all cookies?</div>
<article><h1>Chips and rivers</h1>
<p>The first paragraph of the full article explains why chip plants need so much clean water, and how the new
plant on the river plans to recycle most of it instead of drawing more from the town's supply every summer.</p>
<p>The second paragraph quotes the engineers, who say the recycling loop was the most expensive part of the design
and the one the regulators asked about first, long before they asked about power or about jobs in the region.</p>
<figure><img src="https://img.example.org/plant.jpg" alt="The plant seen from the river">
<figcaption>The plant, seen from the east bank of the river.</figcaption></figure>
<h2>What happens next</h2>
<p>The third paragraph looks ahead: permits are due in the autumn, construction would start next spring, and the
first wafers would leave the line two years later if the schedule holds <img src="x" onerror="alert(1)">.</p>
<p>The fourth paragraph, with <a href="javascript:alert(1)">a link that must not survive</a>, closes the story with the
town council's vote, which passed by a wide margin after a long evening of questions from residents.</p>
</article>
<footer><p>Copyright 2026 Test Site. All rights reserved.</p><ul><li>Privacy</li><li>Terms</li></ul></footer>
</body></html>"""


@pytest.fixture
def cfg(project: Path) -> Settings:
    return make_settings(project)


@pytest.fixture
def db(cfg: Settings) -> Iterator[Store]:
    store = Store(cfg.store_url)
    yield store
    store.close()


def _versions(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {r.id: r.version for r in conn.execute(select(articles.c.id, articles.c.version))}


LATIN = "Café déjà vu, naïve façade"
CHINESE = "人工智能周报：模型与算力"


def _encoded_feed(title: str, xml_encoding: str | None, body_encoding: str) -> bytes:
    return rss(
        [Item(title, "http://enc.invalid/1", "enc-guid-1", long_text("encoding"))], encoding=xml_encoding
    ).encode(body_encoding)


@pytest.mark.parametrize(
    ("title", "charset_header", "xml_encoding", "body_encoding"),
    [
        (LATIN, "iso-8859-1", None, "iso-8859-1"),  # declared in the header only
        (LATIN, None, "ISO-8859-1", "iso-8859-1"),  # declared in the XML only
        (CHINESE, "gb2312", None, "gb2312"),
        (CHINESE, None, "GBK", "gbk"),
    ],
)
def test_declared_encodings_are_honoured(
    server: LoopbackServer,
    cfg: Settings,
    db: Store,
    title: str,
    charset_header: str | None,
    xml_encoding: str | None,
    body_encoding: str,
) -> None:
    content_type = "application/rss+xml" + (f"; charset={charset_header}" if charset_header else "")
    url = server.static("/enc.xml", _encoded_feed(title, xml_encoding, body_encoding), content_type)
    report = ingest_feeds([Feed(id="enc", url=url)], db, cfg)
    assert report.outcomes[0].status == "ok", report.outcomes[0].error
    stored = db.get_article(report.new_articles[0])
    assert stored is not None and stored.title == title


@pytest.mark.parametrize(
    ("title", "body_encoding"),
    [(LATIN, "iso-8859-1"), (CHINESE, "gbk")],
)
def test_wrongly_declared_encoding_keeps_the_entry_and_records_the_warning(
    server: LoopbackServer, cfg: Settings, db: Store, title: str, body_encoding: str
) -> None:
    body = _encoded_feed(title, "utf-8", body_encoding)  # says UTF-8 in the header and the XML; it is not
    url = server.static("/wrong.xml", body, "application/rss+xml; charset=utf-8")
    report = ingest_feeds([Feed(id="wrong", url=url)], db, cfg)
    outcome = report.outcomes[0]
    assert outcome.status == "ok" and len(report.new_articles) == 1
    assert outcome.bozo
    assert db.feed_state(url)["bozo"] == outcome.bozo


def test_malformed_xml_keeps_the_entries_that_parse(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    broken = malformed_rss()
    url = server.static("/broken.xml", broken)
    report = ingest_feeds([Feed(id="broken", url=url)], db, cfg)
    outcome = report.outcomes[0]
    assert outcome.status == "ok"
    assert outcome.bozo and db.feed_state(url)["bozo"]
    titles = {db.get_article(i).title for i in report.new_articles}
    assert len(report.new_articles) >= 2 and "Second & last" in titles


def test_reordered_feed_brings_nothing_new(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    items = [Item(f"Story {n}", f"http://order.invalid/{n}", f"order-guid-{n}", long_text(f"o{n}")) for n in range(4)]

    def route(request):
        order = items if request.hit == 1 else [items[2], items[0], items[3], items[1]]
        return Reply(200, {"Content-Type": "application/rss+xml"}, rss(order).encode())

    feed = Feed(id="order", url=server.route("/order.xml", route))
    assert len(ingest_feeds([feed], db, cfg).new_articles) == 4
    second = ingest_feeds([feed], db, cfg)
    assert second.new_articles == [] and second.updated_articles == []
    assert second.outcomes[0].seen == 4


def test_guids_regenerated_on_every_fetch_bring_nothing_new(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    def route(request):
        linked = [
            Item(f"Linked {n}", f"http://guid.invalid/{n}", str(uuid.uuid4()), long_text(f"l{n}")) for n in range(3)
        ]
        unlinked = [Item(f"Unlinked {n}", "", f"urn:uuid:{uuid.uuid4()}", long_text(f"u{n}")) for n in range(2)]
        return Reply(200, {"Content-Type": "application/rss+xml"}, rss(linked + unlinked).encode())

    feed = Feed(id="regen", url=server.route("/regen.xml", route))
    first = ingest_feeds([feed], db, cfg)
    assert len(first.new_articles) == 5
    for _ in range(2):
        again = ingest_feeds([feed], db, cfg)
        assert again.new_articles == [] and again.updated_articles == []
    assert len(db.all_articles()) == 5


def test_tracking_parameters_do_not_make_a_new_article(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    links = ["http://track.invalid/a?utm_source=rss&id=7", "HTTP://Track.invalid/a?fbclid=xyz&id=7&utm_medium=x#top"]

    def route(request):
        link = links[min(request.hit, 2) - 1]
        return Reply(
            200, {"Content-Type": "application/rss+xml"}, rss([Item("Tracked", link, "", long_text("t"))]).encode()
        )

    feed = Feed(id="track", url=server.route("/track.xml", route))
    first = ingest_feeds([feed], db, cfg)
    second = ingest_feeds([feed], db, cfg)
    assert len(first.new_articles) == 1 and second.new_articles == [] and second.outcomes[0].seen == 1


def test_changed_entry_is_an_update_not_a_new_article(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    def route(request):
        text = long_text("draft") if request.hit == 1 else long_text("corrected")
        return Reply(
            200,
            {"Content-Type": "application/rss+xml"},
            rss([Item("Story", "http://upd.invalid/1", "upd-1", text)]).encode(),
        )

    feed = Feed(id="upd", url=server.route("/upd.xml", route))
    first = ingest_feeds([feed], db, cfg)
    second = ingest_feeds([feed], db, cfg)
    assert second.new_articles == [] and second.updated_articles == first.new_articles
    article_id = first.new_articles[0]
    assert _versions(db)[article_id] == 2
    assert "corrected" in db.get_article(article_id).paragraphs[0].text
    assert db.feed_state(feed.url)["entries_updated"] == 1


def test_entries_sharing_one_link_stay_separate_articles(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    items = [Item(f"Note {n}", "http://home.invalid/", f"note-guid-{n}", long_text(f"n{n}")) for n in range(3)]
    url = server.static("/shared.xml", rss(items))
    report = ingest_feeds([Feed(id="shared", url=url)], db, cfg)
    assert len(set(report.new_articles)) == 3


def test_script_and_event_handlers_are_stripped(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    hostile = (
        "<p>Safe words before.</p><script>alert('x')</script>"
        '<p onclick="steal()">Click <a href="javascript:alert(1)">here</a></p>'
        '<img src="http://img.invalid/a.png" alt="chart" onerror="alert(1)">'
        f"<p>{long_text('safe')}</p>"
    )
    url = server.static("/hostile.xml", rss([Item("Hostile", "http://x.invalid/h", "hostile-1", hostile)]))
    report = ingest_feeds([Feed(id="hostile", url=url)], db, cfg)
    article = db.get_article(report.new_articles[0])
    stored = article.content_html + json.dumps([p.model_dump() for p in article.paragraphs])
    for bad in ("<script", "alert('x')", "onerror", "onclick", "javascript:"):
        assert bad not in stored
    assert any(p.kind is ParagraphKind.IMAGE and p.image_alt == "chart" for p in article.paragraphs)
    # the sanitiser itself, on HTML that feedparser never saw
    assert sanitise_html(hostile).count("<script") == 0 and "onerror" not in sanitise_html(hostile)


@pytest.mark.parametrize("processes", [0, 2], ids=["in-process", "parser-processes"])
def test_teaser_entry_gets_the_full_text_of_its_page(
    server: LoopbackServer, project: Path, db: Store, processes: int
) -> None:
    """With parser processes the teaser feed comes back matched but unsaved; the ingest process fetches
    the page and stores it (a full feed beside it is stored by the parser process)."""
    cfg = make_settings(project, ingest_parse_processes=processes)
    page = server.static("/chips.html", ARTICLE_PAGE, "text/html; charset=utf-8")
    teaser = Item("Chips and rivers", page, "chips-1", description="A new plant wants the river's water.")
    url = server.static("/teaser.xml", rss([teaser]))
    full_feed = rss([Item("Full", "http://f.invalid/1", "", long_text("f"))])
    full = Feed(id="full", url=server.static("/full.xml", full_feed))
    report = ingest_feeds([Feed(id="teaser", url=url), full], db, cfg)
    assert [len(o.new) for o in report.outcomes] == [1, 1]
    assert db.feed_state(full.url)["entries_new"] == 1 and db.feed_state(url)["entries_new"] == 1
    outcome = report.outcomes[0]
    assert outcome.pages_fetched == 1 and outcome.warnings == []
    article = db.get_article(report.new_articles[0])
    texts = [p.text for p in article.paragraphs]
    assert any(t.startswith("The first paragraph of the full article") for t in texts)
    assert any(t.startswith("The fourth paragraph") for t in texts)
    assert not any("cookies" in t or "Copyright" in t for t in texts)
    images = [p for p in article.paragraphs if p.kind is ParagraphKind.IMAGE]
    assert [(i.image_src, i.image_alt, i.text) for i in images] == [
        (
            "https://img.example.org/plant.jpg",
            "The plant seen from the river",
            "The plant, seen from the east bank of the river.",
        )
    ]
    assert any(p.kind is ParagraphKind.HEADING and p.text == "What happens next" for p in article.paragraphs)
    assert article.author == "Ada Page"
    assert "javascript:" not in article.content_html and "onerror" not in article.content_html
    assert len({p.id for p in article.paragraphs}) == len(article.paragraphs)

    second = ingest_feeds([Feed(id="teaser", url=url), full], db, cfg)
    assert second.outcomes[0].seen == 1 and server.hits["/chips.html"] == 1  # a seen entry costs no page fetch
    assert second.outcomes[1].seen == 1 and db.feed_state(full.url)["entries_seen"] == 1


def test_failed_page_fetch_keeps_the_teaser_and_warns(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    teaser = Item("Lost page", server.url("/gone.html"), "lost-1", description="Only this teaser survives.")
    url = server.static("/lost.xml", rss([teaser]))
    report = ingest_feeds([Feed(id="lost", url=url)], db, cfg)
    outcome = report.outcomes[0]
    assert outcome.status == "ok" and len(report.new_articles) == 1
    assert any("kept the teaser" in w and "HTTP 404" in w for w in outcome.warnings)
    assert "kept the teaser" in db.feed_state(url)["warnings"]
    assert db.get_article(report.new_articles[0]).paragraphs[0].text == "Only this teaser survives."


def test_file_feed_fetches_only_allowed_http_pages(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    page = server.static("/local-page.html", ARTICLE_PAGE, "text/html; charset=utf-8")
    items = [
        Item("From a local feed", page, "local-1", description="Teaser of a web page."),
        Item("Local file link", "file:///etc/hostname", "local-2", description="Teaser of a local file."),
    ]
    (cfg.content_dir / "samples" / "local.xml").write_text(rss(items), encoding="utf-8")
    feed = Feed(id="local", url="file:samples/local.xml")
    report = ingest_feeds([feed], db, cfg)
    assert report.outcomes[0].status == "ok" and len(report.new_articles) == 2
    assert server.hits["/local-page.html"] == 1
    by_title = {a.title: a for a in db.all_articles()}
    assert by_title["Local file link"].paragraphs[0].text == "Teaser of a local file."
    assert len(by_title["From a local feed"].paragraphs) > 3
    assert ingest_feeds([feed], db, cfg).outcomes[0].status == "not_modified"


def test_json_feed(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    body = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "JSON news",
        "items": [
            {
                "id": "j1",
                "url": "http://json.invalid/1",
                "title": "Json one",
                "content_html": f"<p>{long_text('j')}</p>",
                "date_published": "2026-05-01T10:00:00Z",
                "authors": [{"name": "Jay"}],
            },
            {"id": "j2", "url": "http://json.invalid/2", "title": "Json two", "content_text": long_text("k")},
        ],
    }
    url = server.static("/feed.json", json.dumps(body), "application/feed+json")
    report = ingest_feeds([Feed(id="json", url=url)], db, cfg)
    assert report.outcomes[0].status == "ok"
    stored = {a.title: a for a in db.all_articles()}
    assert stored["Json one"].author == "Jay" and stored["Json one"].published.year == 2026
    assert stored["Json two"].paragraphs[0].text.startswith("k sentence 0")


def test_old_store_gets_the_new_columns(project: Path) -> None:
    settings = make_settings(project)
    path = settings.output_dir / "store.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE feed_state (feed_url VARCHAR(2000) PRIMARY KEY, feed_id VARCHAR(64) NOT NULL,"
            " etag VARCHAR(500), last_modified VARCHAR(100), last_status VARCHAR(32), last_error TEXT,"
            " bozo TEXT, entries_new INTEGER, entries_seen INTEGER, last_fetched_at DATETIME)"
        )
        conn.execute("INSERT INTO feed_state (feed_url, feed_id, etag) VALUES ('http://old.invalid/f', 'old', 'x')")
    store = Store(settings.store_url)
    try:
        store.record_feed("http://old.invalid/f", feed_id="old", entries_updated=3, warnings="w")
        state = store.feed_state("http://old.invalid/f")
        assert (state["etag"], state["entries_updated"], state["warnings"]) == ("x", 3, "w")
        assert {c.name for c in feed_state.columns} <= set(state)
    finally:
        store.close()


def test_relative_links_in_entries_are_made_absolute(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    atom = f"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="http://rel.invalid/blog/"><title>Relative</title>
<entry><title>Relative links</title><link href="posts/1"/><id>tag:rel.invalid,2026:1</id>
<updated>2026-05-01T00:00:00Z</updated>
<content type="html">&lt;p&gt;{long_text("rel")} &lt;a href="../about"&gt;about&lt;/a&gt;&lt;/p&gt;
&lt;img src="img/chart.png" alt="chart"&gt;</content></entry></feed>"""
    url = server.static("/rel.xml", atom, "application/atom+xml")
    report = ingest_feeds([Feed(id="rel", url=url)], db, cfg)
    article = db.get_article(report.new_articles[0])
    assert article.url == "http://rel.invalid/blog/posts/1"
    assert 'href="http://rel.invalid/about"' in article.content_html
    assert [p.image_src for p in article.paragraphs if p.kind is ParagraphKind.IMAGE] == [
        "http://rel.invalid/blog/img/chart.png"
    ]


def test_relative_links_without_xml_base_resolve_against_the_feed_url(
    server: LoopbackServer, cfg: Settings, db: Store
) -> None:
    items = [
        Item("Relative to the feed", "stories/7", "", f"<p>{long_text('seven')}</p><img src='img/seven.png' alt='s'>"),
        Item("Script link", "javascript:alert(1)", "", long_text("script")),
    ]
    url = server.static("/news/feed.xml", rss(items))
    report = ingest_feeds([Feed(id="relfeed", url=url)], db, cfg)
    articles = {a.title: a for a in (db.get_article(i) for i in report.new_articles)}
    base = url.rsplit("/", 1)[0]
    assert articles["Relative to the feed"].url == f"{base}/stories/7"
    assert [p.image_src for p in articles["Relative to the feed"].paragraphs if p.kind is ParagraphKind.IMAGE] == [
        f"{base}/img/seven.png"
    ]
    assert articles["Script link"].url == ""  # an unsafe scheme is dropped, never stored or linked to


@pytest.mark.parametrize(
    ("html", "resolved"),
    [
        ("<a href='/about'>a</a>", '<a href="https://site.example/about">a</a>'),
        ('<IMG SRC="img/c.png">', '<img src="https://site.example/blog/img/c.png">'),
        ("<a href=../up>u</a>", '<a href="https://site.example/up">u</a>'),
        ('<a href="//cdn.example/x">x</a>', '<a href="https://cdn.example/x">x</a>'),
        # A footnote link stays inside the entry even when a real relative link sends it through lxml.
        (
            '<p><a href="notes">n</a><sup id="r1"><a href="#n1">1</a></sup></p>',
            '<p><a href="https://site.example/blog/notes">n</a><sup id="r1"><a href="#n1">1</a></sup></p>',
        ),
        # A relative link urljoin cannot resolve is dropped; the good one beside it is still resolved.
        ("<a href='//[bad'>x</a><a href=ok>y</a>", '<a>x</a><a href="https://site.example/blog/ok">y</a>'),
        # A malformed same-scheme link is left as it is, as when no relative link is beside it.
        (
            '<a href="HTTPS:/page">p</a><a href=x>x</a>',
            '<a href="HTTPS:/page">p</a><a href="https://site.example/blog/x">x</a>',
        ),
        # An entry's own <base> is not followed (the sanitiser drops it afterwards).
        (
            '<base href="https://other.example/x/"><a href="rel">r</a>',
            '<base href="https://other.example/x/"><a href="https://site.example/blog/rel">r</a>',
        ),
    ],
)
def test_relative_links_are_found_quoted_or_not_and_in_any_case(html: str, resolved: str) -> None:
    assert make_urls_absolute(html, "https://site.example/blog/post") == resolved


@pytest.mark.parametrize(
    "html",
    [
        "<p>No links at all, only text.</p>",
        '<p><a href=\'https://site.example/a\'>a</a> <img src="HTTP://cdn.example/i.png"> <a href="#n1">1</a></p>',
        '<a href = "mailto:ed@site.example">mail</a><img src="data:image/png;base64,AAAA">',
    ],
)
def test_html_with_only_absolute_links_is_returned_as_it_is(html: str) -> None:
    """Not re-serialised through lxml: the quoted-scheme case once matched as relative, and each such entry
    paid a parse and serialisation (and had its markup rewritten) for nothing."""
    assert make_urls_absolute(html, "https://site.example/blog/post") is html


def test_an_article_in_two_feeds_is_stored_once_and_not_flip_flopped(
    server: LoopbackServer, cfg: Settings, db: Store
) -> None:
    full = server.static(
        "/full.xml", rss([Item("Shared story", "http://shared.invalid/s?utm_source=a", "a-1", long_text("full"))])
    )
    teaser = server.static(
        "/tease.xml", rss([Item("Shared story", "http://shared.invalid/s", "b-1", long_text("other"))])
    )
    feeds = [Feed(id="full", url=full), Feed(id="tease", url=teaser)]
    first = ingest_feeds(feeds, db, cfg)
    assert len(first.new_articles) == 1
    for _ in range(2):
        again = ingest_feeds(feeds, db, cfg)
        assert again.new_articles == [] and again.updated_articles == []
    assert _versions(db) == {first.new_articles[0]: 1}


@pytest.mark.parametrize("parser", ["feedparser", "feedparser-rs"])
def test_an_entry_whose_link_is_no_url_is_kept_and_gets_its_stub(
    server: LoopbackServer, cfg: Settings, db: Store, parser: str
) -> None:
    """A link Python cannot parse (an unclosed IPv6 bracket) has no canonical form; it identifies nothing, and
    neither the feed, its other entries nor the curation stubs fail over it (feedparser drops such a link,
    feedparser-rs keeps it as written)."""
    items = [
        Item("Broken link", "http://[oops/story", "broken-link-guid", long_text("broken")),
        Item("Fine link", "http://fine.invalid/story", "fine-link-guid", long_text("fine")),
    ]
    url = server.static("/badlink.xml", rss(items))
    settings = cfg.model_copy(update={"ingest_parser": parser})
    report = ingest_feeds([Feed(id="badlink", url=url)], db, settings)
    assert len(report.new_articles) == 2 and not report.errors
    articles = [a for a in (db.get_article(i) for i in report.new_articles) if a is not None]
    written = write_stubs(articles, (), cfg.content_dir, ())
    assert len(written) == 2

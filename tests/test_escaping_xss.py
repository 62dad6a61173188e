"""The XSS corpus through every curated field and every feed field, into every output a person or a program reads:
email HTML, its text part, the per-audience Markdown (rendered with raw HTML on), the Markdown and HTML archive with
its indexes and feed, a site built by MkDocs from the archive, and the preview server's pages over HTTP.

Every output is parsed as a browser would parse it (html5lib) and must hold no live script (tests/xss_support.py:
`findings`), and every field's text must still be shown where the field is shown: escaped, not dropped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from flows.app.preview import create_app
from flows.core.content import load_content
from flows.core.models import Audience, Briefing, Content, Feed
from flows.core.safe_urls import web_url
from flows.core.settings import Settings, load_settings
from flows.core.store import Store
from flows.ingest import ingest_feeds
from flows.ingest.stubs import write_stubs
from flows.publish.archive import front_matter_text, mkdocs_config, publish_archive
from flows.render import render_briefing
from tests.asgi_support import serve_asgi
from tests.ingest_support import LoopbackServer, Reply
from tests.render_support import TEMPLATES, sample_content
from tests.xss_support import (
    FILE_PAYLOADS,
    MKDOCS_THEME,
    PAYLOADS,
    URL_PAYLOADS,
    Allowed,
    attribute_values,
    bare,
    briefing_file,
    findings,
    markdown_to_html,
    missing,
    packed_briefings,
    rotated_briefings,
    visible_text,
)

pytestmark = pytest.mark.slow
BASE = "https://briefing.example.org"
ATOM = "{http://www.w3.org/2005/Atom}"
TEXT_LINK = re.compile(r"(?<![\w+.\-/?=&#%~@])(?:javascript|vbscript|data):", re.IGNORECASE)
PREVIEW_SCRIPTS = ("// Live reload", "// Width toggle")
HTML_TYPE = {"Content-Type": "text/html; charset=utf-8"}


def hostile_audiences(base: tuple[Audience, ...], payloads: tuple[str, str]) -> tuple[Audience, ...]:
    """The sample audiences with a payload in every display name and subject prefix."""
    name, prefix = payloads
    return tuple(
        a.model_copy(update={"name": f"{a.name} {name}", "subject_prefix": f"【{prefix}】", "subscribers": ()})
        for a in base
    )


def email_fields(briefing: Briefing, audience: Audience, content: Content) -> list[str]:
    """Every curated value the email (and its text part and Markdown) shows for `audience`."""
    own = briefing.note_for(audience.id)
    assert own is not None
    values = [briefing.verdict, briefing.judgement, briefing.source.title, briefing.source.site, audience.name]
    values += [own.meaning, own.next_step, *briefing.prompts]
    values += [text for p in briefing.core_points for text in (p.lead, p.explanation)]
    if audience.show_other_notes:
        names = {a.id: a.name for a in content.audiences}
        others = [n for n in briefing.notes if n.audience != audience.id and n.audience in names]
        values += [text for n in others for text in (names[n.audience], n.meaning, n.next_step)]
    return values


def archive_fields(briefing: Briefing, content: Content) -> list[str]:
    """Every curated value the archive page shows (all five views)."""
    names = {a.id: a.name for a in content.audiences}
    values = [briefing.verdict, briefing.judgement, briefing.source.site, *briefing.prompts]
    values += [text for p in briefing.core_points for text in (p.lead, p.explanation)]
    values += [text for n in briefing.notes for text in (names.get(n.audience, n.audience), n.meaning, n.next_step)]
    values += [text for b in briefing.aligned for text in (b.source, b.translation)]
    values += [text for d in briefing.discussion for text in (d.author, d.text)]
    return values


def image_alts(briefing: Briefing) -> list[str]:
    return [b.image_alt for b in briefing.aligned if b.image_alt]


def check_text_part(text: str, values: list[str], where: str) -> list[str]:
    problems = [f"{where}: a mail client would link {m.group(0)!r}" for m in TEXT_LINK.finditer(text)]
    return problems + [f"{where}: not shown: {v!r}" for v in missing(values, bare(text))]


def check_html(
    document: str, values: list[str], where: str, allowed: Allowed | None = None, alts: list[str] | None = None
) -> list[str]:
    """No live script, every value in the visible text and every one of `alts` as an image's alt text."""
    problems = findings(document, where, allowed)
    problems += [f"{where}: not shown: {v!r}" for v in missing(values, visible_text(document))]
    shown_alts = [" ".join(alt.split()) for alt in attribute_values(document, "alt")]
    wanted = [" ".join(alt.split()) for alt in alts or ()]
    return problems + [f"{where}: no image with alt {alt!r}" for alt in wanted if alt not in shown_alts]


def check_links(document: str, url: str, where: str) -> list[str]:
    """A web address becomes a link as it is; anything else never becomes one."""
    hrefs = attribute_values(document, "href")
    safe = web_url(url, "")
    if safe and safe not in hrefs:
        return [f"{where}: the source link {safe!r} is missing (links: {hrefs[:6]})"]
    return []


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("xss")
    shutil.copytree(Path(__file__).resolve().parent.parent / "content", root / "content")
    for stale in (root / "content" / "briefings").glob("*.md"):
        stale.unlink()
    (root / "outputs").mkdir()
    return root


def make_settings(root: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "content_dir": root / "content",
        "output_dir": root / "outputs",
        "base_url": BASE,
        "fetch_allowed_networks": ["127.0.0.1/32"],
        "fetch_retries": 0,
    }
    values.update(overrides)
    return load_settings(**values)


# --- emails: every payload in every curated field ------------------------------------------------------------


def test_emails_text_parts_and_markdown_of_every_payload_in_every_field() -> None:
    content = sample_content()
    problems: list[str] = []
    for briefing in rotated_briefings():
        rendered = render_briefing(
            briefing, content, templates_dir=TEMPLATES, archive_url=f"{BASE}/x.html", archive_index_url=BASE
        )
        for audience in content.audiences:
            email = rendered.emails[audience.id]
            where = f"{briefing.slug}/{audience.id}"
            values = email_fields(briefing, audience, content)
            problems += check_html(email.html, [*values, email.subject], f"{where}.html")
            problems += check_links(email.html, briefing.source.url, f"{where}.html")
            problems += check_text_part(email.text, values, f"{where}.txt")
            problems += check_html(markdown_to_html(email.markdown), values, f"{where}.md")
    assert not problems, "\n".join(problems[:40])


def test_audience_names_and_subject_prefixes_carry_every_payload() -> None:
    content = sample_content()
    briefing = content.briefings[0]
    problems: list[str] = []
    for number, payload in enumerate(PAYLOADS):
        audiences = hostile_audiences(content.audiences, (payload, PAYLOADS[(number + 7) % len(PAYLOADS)]))
        hostile = content.model_copy(update={"audiences": audiences})
        rendered = render_briefing(
            briefing, hostile, templates_dir=TEMPLATES, archive_url=f"{BASE}/x.html", archive_index_url=BASE
        )
        for audience in audiences:
            email = rendered.emails[audience.id]
            where = f"audience payload {number}/{audience.id}"
            values = email_fields(briefing, audience, hostile)
            problems += check_html(email.html, [*values, email.subject], f"{where}.html")
            problems += check_text_part(email.text, values, f"{where}.txt")
            problems += check_html(markdown_to_html(email.markdown), values, f"{where}.md")
    assert not problems, "\n".join(problems[:40])


# --- the archive, its feed and a MkDocs site ---------------------------------------------------------------


@dataclass
class Archive:
    settings: Settings
    content: Content
    briefings: tuple[Briefing, ...]


@pytest.fixture(scope="module")
def archive(project: Path) -> Iterator[Archive]:
    settings = make_settings(project)
    base = sample_content()
    content = base.model_copy(
        update={"audiences": hostile_audiences(base.audiences, (PAYLOADS[2], PAYLOADS[27])), "briefings": ()}
    )
    briefings = tuple(rotated_briefings())
    store = Store(settings.store_url)
    try:
        publish_archive(content, store, settings, briefings)
        yield Archive(settings, content, briefings)
    finally:
        store.close()


def split_page(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    head, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(head), body


def test_archive_pages_indexes_and_front_matter(archive: Archive) -> None:
    root = archive.settings.archive_path
    problems: list[str] = []
    for briefing in archive.briefings:
        stem = root / f"{briefing.date:%Y/%m}" / briefing.slug
        values = archive_fields(briefing, archive.content)
        html = stem.with_suffix(".html").read_text("utf-8")
        problems += check_html(html, values, f"{briefing.slug}.html", alts=image_alts(briefing))
        problems += check_links(html, briefing.source.url, f"{briefing.slug}.html")
        image_sources = attribute_values(html, "src")
        if web_url(briefing.aligned[2].image_src, ""):
            assert briefing.aligned[2].image_src in image_sources, image_sources
        meta, body = split_page(stem.with_suffix(".md").read_text("utf-8"))
        problems += check_html(markdown_to_html(body), values, f"{briefing.slug}.md", alts=image_alts(briefing))
        for key, value in (("title", briefing.verdict), ("summary", briefing.judgement)):
            if meta[key] != front_matter_text(value) or re.search(r"[<>\"']|&[#A-Za-z]", meta[key]):
                problems.append(f"{briefing.slug}.md front matter {key}: {meta[key]!r}")
        if set(meta) != {"title", "date", "updated", "lastmod", "slug", "briefing", "summary", "source_url"} | {
            "source_title",
            "tags",
            "audiences",
            "url",
            "permalink",
        }:
            problems.append(f"{briefing.slug}.md front matter keys: {sorted(meta)}")
    verdicts = [b.verdict for b in archive.briefings] + [b.judgement for b in archive.briefings]
    for index in ("index.html", "2026/06/index.html"):
        problems += check_html((root / index).read_text("utf-8"), verdicts, index)
    for index in ("index.md", "2026/06/index.md"):
        _meta, body = split_page((root / index).read_text("utf-8"))
        problems += check_html(markdown_to_html(body), verdicts, index)
    assert not problems, "\n".join(problems[:40])


def test_archive_feed_entries(archive: Archive) -> None:
    feed = ElementTree.parse(archive.settings.archive_path / "feed.xml").getroot()
    by_title = {b.verdict: b for b in archive.briefings}
    problems: list[str] = []
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == archive.settings.archive_feed_entries
    for entry in entries:
        title = entry.findtext(f"{ATOM}title") or ""
        briefing = by_title[title]  # the title is text (type="text"): the verdict exactly
        assert entry.findtext(f"{ATOM}summary") == briefing.judgement
        content = entry.find(f"{ATOM}content")
        assert content is not None and content.get("type") == "html"
        # the entry's content is the page without its headline (the entry's title) and site line
        values = [v for v in archive_fields(briefing, archive.content) if v not in (title, briefing.source.site)]
        problems += check_html(content.text or "", values, f"feed {briefing.slug}", alts=image_alts(briefing))
    assert not problems, "\n".join(problems[:40])


def test_mkdocs_site_built_from_the_archive(archive: Archive, tmp_path: Path) -> None:
    site = tmp_path / "site"
    config = tmp_path / "mkdocs.yml"
    config.write_text(mkdocs_config(archive.settings, site), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--config-file", str(config)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > len(archive.briefings)
    problems: list[str] = []
    for page in pages:
        problems += findings(page.read_text("utf-8"), str(page.relative_to(site)), MKDOCS_THEME)
    for briefing in archive.briefings:
        html = (site / f"{briefing.date:%Y/%m}" / f"{briefing.slug}.html").read_text("utf-8")
        values = [*archive_fields(briefing, archive.content), front_matter_text(briefing.verdict)]
        problems += check_html(html, values, f"mkdocs {briefing.slug}", MKDOCS_THEME, image_alts(briefing))
    assert not problems, "\n".join(problems[:40])


# --- the preview server ------------------------------------------------------------------------------------


def write_content(root: Path, briefings: list[Briefing], audiences: tuple[Audience, ...]) -> None:
    folder = root / "content" / "briefings"
    for briefing in briefings:
        (folder / f"{briefing.slug}.md").write_text(briefing_file(briefing), encoding="utf-8")
    data = yaml.safe_load((root / "content" / "audiences.yaml").read_text("utf-8"))
    for entry, audience in zip(data["audiences"], audiences, strict=True):
        entry.update(name=audience.name, subject_prefix=audience.subject_prefix)
    (root / "content" / "audiences.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")


def csp_nonce(policy: str) -> str:
    match = re.search(r"script-src 'nonce-([\w-]+)'", policy)
    assert match, policy
    return match.group(1)


def test_preview_pages_over_http(tmp_path: Path) -> None:
    shutil.copytree(Path(__file__).resolve().parent.parent / "content", tmp_path / "content")
    for stale in (tmp_path / "content" / "briefings").glob("*.md"):
        stale.unlink()
    (tmp_path / "outputs").mkdir()
    base = sample_content()
    audiences = hostile_audiences(base.audiences, (PAYLOADS[3], PAYLOADS[28]))
    write_content(tmp_path, list(packed_briefings(6, payloads=FILE_PAYLOADS)), audiences)
    settings = make_settings(tmp_path)
    loaded = load_content(settings.content_dir)
    assert len(loaded.content.briefings) == 6, loaded.problems
    content = loaded.content
    store = Store(settings.store_url)
    publish_archive(content, store, settings, content.briefings[:1])
    problems: list[str] = []
    try:
        with serve_asgi(create_app(settings, store)) as http:
            index = http.get("/")
            allowed = Allowed(csp_nonce(index.headers["content-security-policy"]), PREVIEW_SCRIPTS, frames=True)
            problems += check_html(index.text, [b.verdict for b in content.briefings], "/", allowed)
            for briefing in content.briefings:
                page = http.get(f"/b/{briefing.slug}")
                assert page.status_code == 200
                allowed = Allowed(csp_nonce(page.headers["content-security-policy"]), PREVIEW_SCRIPTS, frames=True)
                shown = [briefing.verdict, briefing.source.title]
                problems += check_html(page.text, shown, f"/b/{briefing.slug}", allowed)
                frames = re.findall(r"<iframe [^>]*>", page.text)
                assert frames and all('sandbox=""' in frame for frame in frames), frames
                for audience in content.audiences:
                    where = f"/email/{briefing.slug}/{audience.id}"
                    values = email_fields(briefing, audience, content)
                    email = http.get(f"{where}.html")
                    assert email.status_code == 200, email.text
                    policy = email.headers["content-security-policy"]
                    assert re.search(r"(^|; )sandbox(;|$)", policy) and "script-src" not in policy, policy
                    assert "default-src 'none'" in policy
                    problems += check_html(email.text, values, f"{where}.html")
                    for kind in ("txt", "md"):
                        part = http.get(f"{where}.{kind}")
                        assert "sandbox" in part.headers["content-security-policy"]
                        assert part.headers["x-content-type-options"] == "nosniff"
                    problems += check_text_part(http.get(f"{where}.txt").text, values, f"{where}.txt")
                archive_page = http.get(f"/archive/{briefing.slug}")
                if archive_page.history:  # published: the static page under /published
                    assert "sandbox" in archive_page.headers["content-security-policy"]
                    problems += check_html(archive_page.text, archive_fields(briefing, content), "/published")
                else:
                    allowed = Allowed(csp_nonce(archive_page.headers["content-security-policy"]), PREVIEW_SCRIPTS)
                    problems += check_html(
                        archive_page.text, archive_fields(briefing, content), f"/archive/{briefing.slug}", allowed
                    )
    finally:
        store.close()
    assert not problems, "\n".join(problems[:40])


# --- feed fields: title, author, link, content, summary ------------------------------------------------------


def hostile_entry_html(number: int) -> str:
    """An entry's content: payloads as text, as markup the sanitiser must take apart, in an image and a link."""
    text = PAYLOADS[number % len(PAYLOADS)]
    markup = PAYLOADS[(number + 1) % len(PAYLOADS)]
    url = URL_PAYLOADS[number % len(URL_PAYLOADS)]
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    attribute = escaped.replace('"', "&quot;")
    return (
        f"<p>Body {number}: {escaped}</p><p>Markup {number}: {markup}</p>"
        f'<figure><img src="{url.replace(chr(34), "&quot;")}" alt="{attribute}"><figcaption>{escaped}</figcaption>'
        f'</figure><p><a href="{url.replace(chr(34), "&quot;")}">link {number}</a> and more words to read.</p>'
    )


def xml_text(value: str) -> str:
    cleaned = "".join(ch for ch in value if ch in "\t\n\r" or ord(ch) >= 0x20)
    return cleaned.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def attribute(value: str) -> str:
    return xml_text(value).replace('"', "&quot;")


def hostile_rss(server: LoopbackServer) -> str:
    items = []
    for number, payload in enumerate(PAYLOADS):
        # every fifth entry links to a URL payload as it is; the others to a loopback page, half of them with a
        # hostile query (an entry without a usable link makes no readable stub, and its other fields go nowhere)
        link_payload = URL_PAYLOADS[number // 5 % len(URL_PAYLOADS)]
        link = link_payload if number % 5 == 0 else server.url(f"/a/{number}")
        if number % 5 and number % 2:
            link += "?q=" + PAYLOADS[(number + 3) % len(PAYLOADS)]
        items.append(
            "<item>"
            f"<title>{xml_text(f'T{number} {payload}')}</title>"
            f"<link>{xml_text(link)}</link><guid isPermaLink=\"false\">g{number}</guid>"
            f"<dc:creator>{xml_text(PAYLOADS[(number + 2) % len(PAYLOADS)])}</dc:creator>"
            "<pubDate>Thu, 04 Jun 2026 09:30:00 +0000</pubDate>"
            f"<description>{xml_text(hostile_entry_html(number))}</description>"
            "</item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<channel><title>{xml_text('Feed ' + PAYLOADS[0])}</title><link>http://127.0.0.1/</link>"
        f"<description>d</description>{''.join(items)}</channel></rss>"
    )


def hostile_atom() -> str:
    entries = []
    for number, payload in enumerate(PAYLOADS[::3]):
        entries.append(
            "<entry>"
            f'<title type="html">{xml_text(xml_text(f"A{number} {payload}"))}</title>'
            f"<id>urn:x:{number}</id><updated>2026-06-04T09:30:00Z</updated>"
            f'<link rel="alternate" href="{attribute(URL_PAYLOADS[number % len(URL_PAYLOADS)])}"/>'
            f"<author><name>{xml_text(payload)}</name></author>"
            f'<content type="html">{xml_text(hostile_entry_html(number + 5))}</content>'
            "</entry>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>Atom {xml_text(PAYLOADS[1])}</title><id>urn:x</id><updated>2026-06-04T09:30:00Z</updated>"
        f"{''.join(entries)}</feed>"
    )


def filled(briefing: Briefing) -> Briefing:
    """A stub with its curated sections filled in plainly, so every audience's email renders from it."""
    audiences = ("atou", "neta", "uota", "investors")
    notes = tuple({"audience": a, "meaning": f"means {a}", "next_step": f"next {a}"} for a in audiences)
    return briefing.model_validate(
        {
            **briefing.model_dump(),
            "status": "ready",
            "verdict": "verdict",
            "judgement": "judgement",
            "core_points": [{"lead": "lead", "explanation": "explanation"}],
            "notes": notes,
            "prompts": ["prompt"],
            "aligned": [{**b.model_dump(), "translation": b.translation or "译文"} for b in briefing.aligned],
        }
    )


def test_feed_fields_through_ingest_stubs_emails_archive_and_mkdocs(tmp_path: Path) -> None:
    shutil.copytree(Path(__file__).resolve().parent.parent / "content", tmp_path / "content")
    for stale in (tmp_path / "content" / "briefings").glob("*.md"):
        stale.unlink()
    (tmp_path / "outputs").mkdir()
    settings = make_settings(tmp_path, allow_private_addresses=True)
    store = Store(settings.store_url)
    with LoopbackServer() as server:
        rss_url = server.static("/rss.xml", hostile_rss(server))
        atom_url = server.static("/atom.xml", hostile_atom(), "application/atom+xml")
        for number in range(len(PAYLOADS)):
            page = f"<html><body><article><h1>{PAYLOADS[number]}</h1>{hostile_entry_html(number)}</article></body>"
            server.route(f"/a/{number}", lambda _r, body=page.encode(): Reply(headers=HTML_TYPE, body=body))
        feeds = [Feed(id="rss", url=rss_url, fulltext=False), Feed(id="atom", url=atom_url, fulltext=False)]
        report = ingest_feeds(feeds, store, settings)
    try:
        outcomes = {o.feed_id: o for o in report.outcomes}
        assert all(o.status == "ok" for o in outcomes.values()), outcomes
        articles = [store.get_article(i) for o in outcomes.values() for i in o.new]
        assert len(articles) >= len(PAYLOADS)
        base = load_content(settings.content_dir).content
        stubs = write_stubs([a for a in articles if a is not None], (), settings.content_dir, base.audiences)
        loaded = load_content(settings.content_dir)
        stub_errors = [p for p in loaded.problems if p.severity == "error"]
        stored_urls = {a.url for a in articles if a is not None}
        problems = [f"stored a script URL: {url!r}" for url in stored_urls if url and not web_url(url, "")]
        by_id = {a.id: a for a in articles if a is not None}
        for briefing in loaded.content.briefings:
            article = by_id[briefing.article_id]
            if briefing.source.title != article.title or briefing.source.author != article.author:
                problems.append(f"{briefing.path}: stub source differs from the feed entry: {briefing.source}")
            if [b.source for b in briefing.aligned] != [p.text for p in article.paragraphs]:
                problems.append(f"{briefing.path}: stub paragraphs differ from the feed entry's")
        readable = {b.article_id for b in loaded.content.briefings}
        unreadable = [a.url for a in articles if a is not None and a.id not in readable]
        assert len(stubs) == len(articles)
        # the only stubs that may not load are entries without a usable link (a script URL the reader dropped)
        assert all(not web_url(url, "") for url in unreadable), (unreadable, stub_errors)
        ready = tuple(filled(b) for b in loaded.content.briefings)
        content = loaded.content.model_copy(update={"briefings": ready})
        for briefing in ready:
            rendered = render_briefing(
                briefing, content, templates_dir=TEMPLATES, archive_url=f"{BASE}/x.html", archive_index_url=BASE
            )
            for audience in content.audiences:
                email = rendered.emails[audience.id]
                where = f"feed {briefing.slug}/{audience.id}"
                values = [briefing.source.title]
                problems += check_html(email.html, values, f"{where}.html")
                problems += check_links(email.html, briefing.source.url, f"{where}.html")
                problems += check_text_part(email.text, values, f"{where}.txt")
                problems += check_html(markdown_to_html(email.markdown), values, f"{where}.md")
        publish_archive(content, store, settings, ready)
        root = settings.archive_path
        for briefing in ready:
            stem = root / f"{briefing.date:%Y/%m}" / briefing.slug
            values, alts = [b.source for b in briefing.aligned], image_alts(briefing)
            page = stem.with_suffix(".html").read_text("utf-8")
            problems += check_html(page, values, f"feed {briefing.slug}.html", alts=alts)
            meta, body = split_page(stem.with_suffix(".md").read_text("utf-8"))
            problems += check_html(markdown_to_html(body), values, f"feed {briefing.slug}.md", alts=alts)
            if meta["source_title"] != front_matter_text(briefing.source.title):
                problems.append(f"feed {briefing.slug}.md source_title {meta['source_title']!r}")
        site = tmp_path / "site"
        (tmp_path / "mkdocs.yml").write_text(mkdocs_config(settings, site), encoding="utf-8")
        built = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--config-file", str(tmp_path / "mkdocs.yml")],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert built.returncode == 0, built.stdout + built.stderr
        for page in sorted(site.rglob("*.html")):
            problems += findings(page.read_text("utf-8"), f"mkdocs {page.relative_to(site)}", MKDOCS_THEME)
        problems += preview_of_stubs(settings, store, loaded.content)
    finally:
        store.close()
    assert not problems, "\n".join(problems[:40])


def preview_of_stubs(settings: Settings, store: Store, content: Content) -> list[str]:
    """The draft stubs as the preview shows them: the list, and every fourth stub's briefing and archive pages
    (each request reads and renders every stub; test_preview_pages_over_http sends every payload through every
    field the preview shows)."""
    problems: list[str] = []
    with serve_asgi(create_app(settings, store)) as http:
        index = http.get("/")
        allowed = Allowed(csp_nonce(index.headers["content-security-policy"]), PREVIEW_SCRIPTS, frames=True)
        problems += findings(index.text, "preview /", allowed)
        for briefing in content.briefings[::4]:
            for path in (f"/b/{briefing.slug}", f"/archive/{briefing.slug}"):
                page = http.get(path)
                policy = page.headers["content-security-policy"]
                # a published page is served as it is under /published, in a sandbox without scripts
                allowed = Allowed() if page.history else Allowed(csp_nonce(policy), PREVIEW_SCRIPTS, frames=True)
                values = [briefing.source.title] if path.startswith("/b/") else [b.source for b in briefing.aligned]
                problems += check_html(page.text, values, f"preview {path}", allowed)
    return problems

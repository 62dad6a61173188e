"""The Markdown + HTML archive: layout, front matter, links, views, feed, idempotence, stable paths, safety."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import date, datetime

import feedparser
import pytest
from markdown_it import MarkdownIt
from sqlalchemy import select

from flows.core.errors import PublishError, RenderError
from flows.core.models import Briefing, ParagraphKind
from flows.core.pages import archive_url, assign_paths
from flows.core.settings import load_settings
from flows.core.store import Store
from flows.core.store.schema import published
from flows.publish.archive import entry_id, safe_join
from tests.publish_support import (
    FIRST,
    LATER,
    broken_relative_links,
    html_links,
    markdown_links,
    publish,
    sample_content,
    snapshot,
    split_front_matter,
)

FRONT_MATTER_KEYS = {
    "title",
    "date",
    "updated",
    "lastmod",
    "slug",
    "briefing",
    "summary",
    "source_url",
    "source_title",
    "tags",
    "audiences",
    "url",
    "permalink",
}


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def test_layout_and_front_matter(settings, store) -> None:
    content = sample_content(settings)
    report = publish(settings, store)
    root = settings.archive_path
    assert set(report.pages) == {b.slug for b in content.ready}
    for briefing in content.ready:
        path = f"{briefing.date:%Y/%m}/{briefing.slug}.md"
        assert report.pages[briefing.slug] == path
        assert (root / path).is_file() and (root / path.replace(".md", ".html")).is_file()
        meta, _ = split_front_matter((root / path).read_text(encoding="utf-8"))
        assert set(meta) == FRONT_MATTER_KEYS
        assert meta["title"] == briefing.verdict and meta["summary"] == briefing.judgement
        assert meta["date"] == briefing.date
        assert datetime.fromisoformat(meta["updated"]).replace(tzinfo=None) == FIRST
        assert meta["slug"] == briefing.slug and meta["source_url"] == briefing.source.url
        assert meta["tags"] == list(briefing.tags)
        assert meta["audiences"] == [a.name for a in content.audiences]
        assert meta["url"] == meta["permalink"] == "/" + path.replace(".md", ".html")
        assert archive_url(settings, path) == f"{settings.base_url}/{path[:-3]}.html"
    for name in ("index.md", "index.html", "feed.xml", "2026/06/index.md", "2026/06/index.html"):
        assert (root / name).is_file(), name


def test_every_relative_link_resolves(settings, store) -> None:
    publish(settings, store)
    root = settings.archive_path
    md_files = sorted(root.rglob("*.md"))
    html_files = sorted(root.rglob("*.html"))
    assert len(md_files) == len(html_files) == 4
    for page in md_files:
        text = page.read_text(encoding="utf-8")
        targets = markdown_links(text)
        anchors = {t[1:] for t in targets if t.startswith("#")}
        assert all(f'<a id="{a}"></a>' in text for a in anchors), page
        assert broken_relative_links(root, page, targets) == [], page
        assert any(t.endswith("feed.xml") for t in targets), f"{page} does not link to the feed"
    for page in html_files:
        targets, ids = html_links(page.read_text(encoding="utf-8"))
        assert broken_relative_links(root, page, targets, ids) == [], page


def test_pages_link_back_to_the_list_and_to_their_neighbours(settings, store) -> None:
    content = sample_content(settings)
    report = publish(settings, store)
    newer, older = content.ready[0], content.ready[1]
    root = settings.archive_path
    for ext in (".md", ".html"):
        newer_page = root / report.pages[newer.slug].replace(".md", ext)
        older_page = root / report.pages[older.slug].replace(".md", ext)
        newer_text, older_text = newer_page.read_text(encoding="utf-8"), older_page.read_text(encoding="utf-8")
        links_of = markdown_links if ext == ".md" else (lambda t: html_links(t)[0])
        assert f"../../index{ext}" in links_of(newer_text)
        assert older_page.name in links_of(newer_text)
        assert newer_page.name in links_of(older_text)


def test_index_is_newest_first_with_verdict_date_and_judgement(settings, store) -> None:
    content = sample_content(settings)
    publish(settings, store)
    root = settings.archive_path
    for index in ("index.md", "2026/06/index.md"):
        meta, body = split_front_matter((root / index).read_text(encoding="utf-8"))
        assert meta["title"]
        rendered = MarkdownIt("commonmark").render(body)
        positions = [rendered.index(_esc(b.verdict)) for b in content.ready]
        assert positions == sorted(positions)
        for briefing in content.ready:
            assert briefing.date.isoformat() in rendered and _esc(briefing.judgement) in rendered
    assert [b.date for b in content.ready] == sorted((b.date for b in content.ready), reverse=True)


def test_markdown_page_carries_every_view(settings, store) -> None:
    content = sample_content(settings)
    report = publish(settings, store)
    briefing = next(b for b in content.ready if b.footnotes and b.discussion)
    _, body = split_front_matter((settings.archive_path / report.pages[briefing.slug]).read_text(encoding="utf-8"))
    tokens = MarkdownIt("commonmark").parse(body)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    for label in ("阅读简报", "双语对照", "完整翻译", "原文", "📋 讨论归档", "核心观点", "跟我们的关联", "讨论引子"):
        assert label in headings, label
    html = MarkdownIt("commonmark").render(body)
    for point in briefing.core_points:
        assert f"<strong>{_esc(point.lead)}</strong>" in html
    for note in briefing.notes:
        assert _esc(note.meaning) in html and _esc(note.next_step) in html
    for prompt in briefing.prompts:
        assert f"<li>{_esc(prompt)}</li>" in html
    bilingual = html[html.index("<h2>双语对照</h2>") : html.index("<h2>完整翻译</h2>")]
    translation = html[html.index("<h2>完整翻译</h2>") : html.index("<h2>原文</h2>")]
    original = html[html.index("<h2>原文</h2>") : html.index("<h2>📋 讨论归档</h2>")]
    for block in briefing.body:
        if block.kind is ParagraphKind.TEXT and "[^" not in block.source:
            pair = f"<blockquote>\n<p>{_esc(block.source)}</p>\n</blockquote>\n<p>{_esc(block.translation)}</p>"
            assert pair in bilingual, block.id
            assert f"<p>{_esc(block.translation)}</p>" in translation
            assert f"<p>{_esc(block.source)}</p>" in original
        elif block.kind is ParagraphKind.TEXT:  # its [^n] markers are links to the view's footnotes
            before = _esc(block.source.split("[^")[0])
            assert before in original and before in bilingual and _esc(block.translation.split("[^")[0]) in translation
        elif block.kind is ParagraphKind.IMAGE:
            assert f'src="{block.image_src}"' in translation and _esc(block.translation) in translation
            assert f'alt="{_esc(block.image_alt)}"' in original and _esc(block.source) in original
    for view, html_view in (("original", original), ("translation", translation), ("bilingual", bilingual)):
        for number, note in enumerate(briefing.footnotes, start=1):
            link = f'<a id="{view}-fnref-{number}-1" href="#{view}-fn-{number}">{note.footnote_label}</a>'
            marker = f'<sup class="fnref">{link}</sup>'
            assert marker in html_view, (view, number)
            assert f'<a id="{view}-fn-{number}"></a><strong>{note.footnote_label}</strong>' in html_view
            assert f'<a href="#{view}-fnref-{number}-1">↩</a>' in html_view
    for note in briefing.footnotes:
        assert _esc(note.source) in original and _esc(note.translation) in translation
        assert _esc(note.source) in bilingual and _esc(note.translation) in bilingual
    assert f'<a href="{briefing.source.url}">原文链接 ↗</a>' in original
    for entry in briefing.discussion:
        assert _esc(entry.text) in html and entry.date.isoformat() in html


def test_atom_feed_has_full_content_and_stable_ids(settings, store) -> None:
    content = sample_content(settings)
    report = publish(settings, store)
    feed = feedparser.parse((settings.archive_path / "feed.xml").read_bytes())
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.feed.language == "zh-CN" and feed.feed.updated_parsed is not None
    ids = [e.id for e in feed.entries]
    assert len(ids) == len(set(ids)) == len(content.ready)
    for entry, briefing in zip(feed.entries, content.ready, strict=True):
        path = report.pages[briefing.slug]
        assert entry.id == entry_id(settings, path) and entry.id.startswith("tag:127.0.0.1,2026-06:/2026/06/")
        assert entry.link == archive_url(settings, path)
        assert entry.title == briefing.verdict
        assert datetime(*entry.updated_parsed[:6]) == FIRST
        assert date(*entry.published_parsed[:3]) == briefing.date
        html = entry.content[0].value
        assert briefing.core_points[0].lead in html and briefing.body[0].translation in html
        assert briefing.body[0].source in html
        if briefing.footnotes:
            assert f'href="{entry.link}#original-fn-1"' in html and 'id="original-fn-1"' in html
    first_ids = ids
    publish(settings, store, now=LATER)
    assert [e.id for e in feedparser.parse(settings.archive_path / "feed.xml").entries] == first_ids


def test_feed_carries_only_the_latest_n(project, store) -> None:
    settings = load_settings(archive_feed_entries=1)
    content = sample_content(settings)
    publish(settings, store)
    feed = feedparser.parse(settings.archive_path / "feed.xml")
    assert [e.title for e in feed.entries] == [content.ready[0].verdict]


def test_republishing_unchanged_content_changes_no_file(settings, store) -> None:
    first = publish(settings, store)
    assert len(first.written) == 9 and not first.unchanged
    before = snapshot(settings.archive_path)
    again = publish(settings, store, now=LATER)
    assert again.written == [] and len(again.unchanged) == 9
    assert snapshot(settings.archive_path) == before


def test_changed_briefing_updates_its_page_updated_time_and_feed_entry(settings, store) -> None:
    content = sample_content(settings)
    publish(settings, store)
    root = settings.archive_path
    before = snapshot(root)
    edited, other = content.ready[0], content.ready[1]
    changed = edited.model_copy(update={"judgement": edited.judgement + "（已更正）"})
    report = publish(settings, store, (changed, other), now=LATER)
    written = {str(p.relative_to(root.resolve())) for p in report.written}
    path = report.pages[edited.slug]
    assert written == {
        path,
        path.replace(".md", ".html"),
        "index.md",
        "index.html",
        "2026/06/index.md",
        "2026/06/index.html",
        "feed.xml",
    }
    meta, _ = split_front_matter((root / path).read_text(encoding="utf-8"))
    assert datetime.fromisoformat(meta["updated"]).replace(tzinfo=None) == LATER
    assert "（已更正）" in meta["summary"]
    assert '更新于 <time datetime="2026-06-09">' in (root / path.replace(".md", ".html")).read_text(encoding="utf-8")
    assert "更新于 2026-06-09" in (root / path).read_text(encoding="utf-8")
    other_path = report.pages[other.slug]
    assert snapshot(root)[other_path] == before[other_path]
    entries = {e.id: e for e in feedparser.parse(root / "feed.xml").entries}
    assert datetime(*entries[entry_id(settings, path)].updated_parsed[:6]) == LATER
    assert datetime(*entries[entry_id(settings, other_path)].updated_parsed[:6]) == FIRST


def test_slug_and_date_edits_keep_the_first_path(settings, store) -> None:
    content = sample_content(settings)
    first = publish(settings, store)
    briefing, other = content.ready[0], content.ready[1]
    old_path = first.pages[briefing.slug]
    renamed = briefing.model_copy(update={"slug": "renamed-after-sending", "date": date(2026, 7, 2)})
    assert assign_paths(store, (renamed, other))["renamed-after-sending"] == old_path
    report = publish(settings, store, (renamed, other), now=LATER)
    assert report.pages["renamed-after-sending"] == old_path
    root = settings.archive_path
    assert not list(root.rglob("renamed-after-sending*"))
    meta, _ = split_front_matter((root / old_path).read_text(encoding="utf-8"))
    assert meta["slug"] == briefing.slug and meta["briefing"] == "renamed-after-sending"
    with store.engine.connect() as conn:
        slugs = {r.slug for r in conn.execute(select(published.c.slug))}
    assert slugs == {"renamed-after-sending", other.slug}


def test_slug_clash_names_both_files_and_writes_nothing(settings, store) -> None:
    content = sample_content(settings)
    a, b = content.ready[0], content.ready[1]
    clash = b.model_copy(update={"slug": a.slug, "date": a.date})
    with pytest.raises(PublishError) as err:
        publish(settings, store, (a, clash))
    assert a.path in str(err.value) and b.path in str(err.value)
    assert not settings.archive_path.exists() or not any(settings.archive_path.rglob("*"))

    publish(settings, store, (a, b))
    before = snapshot(settings.archive_path)
    renamed = a.model_copy(update={"slug": "moved-on"})
    newcomer = b.model_copy(
        update={"slug": a.slug, "date": a.date, "article_id": "0123456789abcdef", "path": "content/briefings/new.md"}
    )
    with pytest.raises(PublishError) as err:
        publish(settings, store, (renamed, newcomer, b), now=LATER)
    assert a.path in str(err.value) and "content/briefings/new.md" in str(err.value)
    assert snapshot(settings.archive_path) == before


@pytest.mark.parametrize(
    "relative",
    [
        "../escape.md",
        "/etc/passwd",
        "2026/../../escape.md",
        "2026/06/..\uff0fescape.md",  # fullwidth solidus
        "2026/06/\u2024\u2024/escape.md",  # one-dot leaders look like ".."
        "2026/06/\uff0e\uff0e/escape.md",  # fullwidth full stops
        "2026/06/a\x00b.md",
        "2026\\06\\a.md",
        "2026//a.md",
        "./a.md",
        ".hidden.md",
        "a\u200b.md",  # zero-width space
        "",
    ],
)
def test_safe_join_refuses_paths_that_could_leave_the_archive(tmp_path, relative) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    with pytest.raises(PublishError):
        safe_join(root, relative)


def test_safe_join_refuses_a_symlink_out_of_the_archive(tmp_path) -> None:
    root, outside = tmp_path / "archive", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "2026").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PublishError, match="outside the archive"):
        safe_join(root, "2026/06/page.md")
    assert safe_join(root, "2027/01/page.md") == (root / "2027/01/page.md").resolve()


@pytest.mark.parametrize("slug", ["../../escaped", "/tmp/escaped", "..\uff0fescaped", "\u2024\u2024/escaped", "a\x00b"])
def test_publish_refuses_a_traversal_slug_that_bypassed_validation(settings, store, slug) -> None:
    content = sample_content(settings)
    good = content.ready[0]
    evil = Briefing.model_construct(**{**dict(good), "slug": slug, "article_id": "feedfacefeedface"})
    with pytest.raises(PublishError):
        publish(settings, store, (evil, content.ready[1]))
    project_root = settings.output_dir.parent
    assert not any("escaped" in p.name for p in project_root.rglob("*"))
    assert not any("escaped" in p.name for p in (project_root.parent).glob("*"))
    with store.engine.connect() as conn:
        assert conn.execute(select(published)).first() is None


def test_a_render_failure_leaves_no_half_written_archive(project, store) -> None:
    templates = project / "templates"
    shutil.copytree(load_settings().templates_dir, templates)
    page = templates / "html" / "page.html.j2"
    page.write_text(page.read_text(encoding="utf-8").replace("</body>", "{{ page.no_such_field }}</body>"))
    settings = load_settings(templates_dir=templates)
    with pytest.raises(RenderError, match=r"page\.html\.j2"):
        publish(settings, store)
    assert not settings.archive_path.exists() or not any(settings.archive_path.rglob("*"))
    with store.engine.connect() as conn:
        assert conn.execute(select(published)).first() is None


def test_an_older_store_gains_the_new_published_column(tmp_path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE published (slug VARCHAR(128) PRIMARY KEY, path VARCHAR(500) NOT NULL UNIQUE, "
            "content_hash VARCHAR(64) NOT NULL, first_published DATETIME NOT NULL, updated DATETIME NOT NULL)"
        )
        conn.execute("INSERT INTO published VALUES ('old', '2026/05/old.md', 'x', '2026-05-01', '2026-05-01')")
    store = Store(f"sqlite:///{db}")
    try:
        with store.engine.connect() as conn:
            row = conn.execute(select(published)).mappings().one()
        assert row["path"] == "2026/05/old.md" and row["article_key"] is None
    finally:
        store.close()


def test_two_briefings_that_swap_slugs_keep_their_own_pages(settings, store) -> None:
    content = sample_content(settings)
    a, b = content.ready[0], content.ready[1]
    first = publish(settings, store)
    swapped = (a.model_copy(update={"slug": b.slug}), b.model_copy(update={"slug": a.slug}))
    report = publish(settings, store, swapped, now=LATER)
    assert report.pages == {b.slug: first.pages[a.slug], a.slug: first.pages[b.slug]}
    meta, _ = split_front_matter((settings.archive_path / first.pages[a.slug]).read_text(encoding="utf-8"))
    assert meta["title"] == a.verdict and meta["briefing"] == b.slug
    assert publish(settings, store, swapped, now=LATER).written == []


def test_only_http_links_reach_the_pages(settings, store) -> None:
    content = sample_content(settings)
    a, b = content.ready
    hostile = a.model_copy(
        update={
            "source": a.source.model_copy(update={"url": "javascript:alert(1)"}),
            "verdict": '<script>alert("x")</script> & [link](javascript:alert(2))',
        }
    )
    report = publish(settings, store, (hostile, b))
    root = settings.archive_path
    md_text = (root / report.pages[a.slug]).read_text(encoding="utf-8")
    meta, body = split_front_matter(md_text)
    assert meta["source_url"] == "#"
    assert not any(t.startswith("javascript:") for t in markdown_links(body))
    assert "<script>" not in MarkdownIt("commonmark").render(body)
    for name in (report.pages[a.slug].replace(".md", ".html"), "index.html"):
        text = (root / name).read_text(encoding="utf-8")
        targets, _ = html_links(text)
        assert not any(t.startswith("javascript:") for t in targets), name
        assert "<script>" not in text and "&lt;script&gt;" in text, name
    assert "javascript:alert(1)" not in (root / "feed.xml").read_text(encoding="utf-8")


def test_templates_use_only_documented_context_fields(settings) -> None:
    """Like Datasette's template-context test: a field used in a template must exist on the context class."""
    import dataclasses
    import re

    from flows.publish.archive import IndexContext, PageContext

    # fields, plus the methods and properties the class defines (footnote_links, discussion_mailto)
    own = {name for name in vars(PageContext) if not name.startswith("_")}
    fields = {"page": {f.name for f in dataclasses.fields(PageContext)} | own}
    fields["index"] = {f.name for f in dataclasses.fields(IndexContext)}
    templates = [settings.templates_dir / "markdown" / n for n in ("archive_page.md.j2", "index.md.j2")]
    templates += sorted((settings.templates_dir / "html").glob("*.j2"))
    used: dict[str, set[str]] = {"page": set(), "index": set()}
    for template in templates:
        code = " ".join(re.findall(r"\{[{%](.*?)[}%]\}", template.read_text(encoding="utf-8"), flags=re.DOTALL))
        for name, attribute in re.findall(r"\b(page|index)\.([a-z_]+)", code):
            used[name].add(attribute)
    assert used["page"] and used["index"]
    assert used["page"] <= fields["page"], used["page"] - fields["page"]
    assert used["index"] <= fields["index"], used["index"] - fields["index"]

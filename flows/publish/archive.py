"""Publish stage: the archive — Markdown pages for static site generators, the same pages as static HTML, monthly
and main indexes, and an Atom feed — at URLs fixed when a briefing is first published.

Entry point: `publish_archive`. It plans every page (`flows.core.pages.plan_pages`: a briefing keeps its first path
even after a slug or date edit; it is recognised by its source article), renders every file in memory, checks every
path, and only then writes — atomically, and only the files whose bytes changed — so republishing unchanged content is a
no-op and a failure leaves no half-written archive. Optional git publishing commits and pushes what changed.
"""

from __future__ import annotations

import logging
import posixpath
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
import yaml
from feedgen.feed import FeedGenerator
from markupsafe import Markup, escape

from flows.core.briefing_format import FOOTNOTE_REF, dump_yaml
from flows.core.discussion import with_approved_entries
from flows.core.errors import PublishError, RenderError
from flows.core.files import atomic_write_bytes
from flows.core.models import AlignedParagraph, Briefing, Content
from flows.core.pages import PlannedPage, archive_url, plan_pages
from flows.core.safe_urls import web_url
from flows.core.settings import Settings
from flows.core.store import Store, published
from flows.publish.git import commit_and_push, prepare_repository
from flows.render.email import labels_for, md_escape, md_url, template_environment

logger = logging.getLogger(__name__)

ARCHIVE_LOCALE = "zh-CN"
SOURCE_LANG = "en"
FEED_PATH = "feed.xml"
INDEX_STEM = "index"
# Conservative on purpose: every path the archive writes is made of these components, so `..`, absolute paths,
# backslashes, NUL and Unicode lookalikes (fullwidth solidus, one-dot leader, ...) can never reach the disk.
SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
FOOTNOTE_MARKER = re.compile(r"\[(\d{1,3})\]")
# The same markers after md_escape: "[^1]" is written "\[&#94;1\]", "[1]" "\[1\]", "*" "\*".
MD_FOOTNOTE_MARKER = re.compile(r"\\\[&#94;([0-9]{1,3}|\\\*|[†‡§a-z][a-z0-9-]{0,15})\\\]")
MD_LEGACY_MARKER = re.compile(r"\\\[(\d{1,3})\\\]")
# Front matter text is shown by MkDocs (page title, navigation) without HTML escaping, and by Hugo and Jekyll themes
# with it: the characters that would be markup or a character reference for the one are written as look-alikes that
# read the same in all three (docs/archive.md, "Front matter"). The page body keeps the exact text.
FRONT_MATTER_LOOKALIKES = str.maketrans({"<": "＜", ">": "＞", '"': "＂", "'": "’"})
REFERENCE_START = re.compile(r"&(?=[#A-Za-z])")
VIEWS: tuple[tuple[str, str], ...] = (
    ("briefing", "view_briefing"),
    ("bilingual", "view_bilingual"),
    ("translation", "view_translation"),
    ("original", "view_original"),
    ("discussion", "view_discussion"),
)


@dataclass(frozen=True)
class NoteLine:
    """One audience's note on the page: lead form (`lead` + `paragraphs`) or structured (`meaning`, `next_step`)."""

    audience_name: str
    meaning: str
    next_step: str
    lead: str = ""
    paragraphs: tuple[str, ...] = ()
    hook: str = ""

    @property
    def lead_form(self) -> bool:
        return bool(self.lead or self.paragraphs)


class FootnoteLinks:
    """One view's footnote markers as links, each with its own id (`{view}-fnref-{n}-{k}`: the k-th reference to
    footnote n), so every footnote can link back to each of its references. Made once per view and called on its
    texts in document order; `backs(n)` then lists footnote n's references.

    `labels` maps a marker's label to the footnote's position n. Briefings written with GFM markers (`[^1]`,
    `[^*]`) show the label as written; older ones use `[1]` markers, numbered by the footnotes' order."""

    def __init__(self, view: str, labels: dict[str, int], *, legacy: bool, base: str = "", markdown: bool = False):
        self.view, self.labels, self.legacy, self.base, self.markdown = view, labels, legacy, base, markdown
        self.refs: dict[int, int] = {}

    def _marker(self, label: str, original: str) -> str:
        number = self.labels.get(label)
        if number is None:
            return original
        self.refs[number] = k = self.refs.get(number, 0) + 1
        shown = f"[{label}]" if self.legacy else str(escape(label))
        return (
            f'<sup class="fnref"><a id="{self.view}-fnref-{number}-{k}" '
            f'href="{escape(self.base)}#{self.view}-fn-{number}">{shown}</a></sup>'
        )

    def __call__(self, text: str) -> Markup:
        if self.markdown:
            escaped = md_escape(text)
            pattern = MD_LEGACY_MARKER if self.legacy else MD_FOOTNOTE_MARKER
            linked = pattern.sub(lambda m: self._marker(m.group(1).replace("\\", ""), m.group(0)), escaped)
            return Markup(linked)
        pattern = FOOTNOTE_MARKER if self.legacy else FOOTNOTE_REF
        return Markup(pattern.sub(lambda m: self._marker(m.group(1), m.group(0)), str(escape(text))))

    def backs(self, number: int) -> list[str]:
        """The fragments of footnote `number`'s references in this view (at least one target: its first)."""
        count = max(self.refs.get(number, 0), 0)
        return [f"{self.base}#{self.view}-fnref-{number}-{k}" for k in range(1, count + 1)]


@dataclass(frozen=True)
class Neighbour:
    title: str
    link: str


@dataclass(frozen=True)
class View:
    anchor: str
    label: str


@dataclass(frozen=True)
class PageContext:
    """Context of templates/markdown/archive_page.md.j2 and templates/html/page.html.j2 (as `page`).

    briefing: the curated briefing; labels: the archive's label table; notes: one line per audience, with the
    audience's display name; body/footnotes: the aligned source and translation blocks; views: the five views
    (anchor, label) in order; footnote_count: how many numbered footnotes the markers may point to;
    footnote_labels: each footnote's label in order (as written, or its number for older briefings) and
    legacy_footnotes: the briefing uses `[n]` markers, not `[^label]`; footnote_links(view): a FootnoteLinks for
    one view; reply_address / discussion_mailto: where readers send replies that join the discussion view;
    index_link/month_link/feed_link: relative links to the list, the month's list and the feed, in the page's
    own format (.md or .html); previous/next: the older and newer neighbour, or None; updated: ISO date of the
    last content change after first publication, else empty; url: the page's absolute web address (the
    emails' "read online" link).
    """

    briefing: Briefing
    labels: dict[str, str]
    notes: tuple[NoteLine, ...]
    body: tuple[AlignedParagraph, ...]
    footnotes: tuple[AlignedParagraph, ...]
    views: tuple[View, ...]
    footnote_count: int
    index_link: str
    month_link: str
    feed_link: str
    previous: Neighbour | None
    next: Neighbour | None
    updated: str
    url: str
    lang: str = ARCHIVE_LOCALE
    source_lang: str = SOURCE_LANG
    footnote_labels: tuple[str, ...] = ()
    legacy_footnotes: bool = True
    reply_address: str = ""

    def footnote_links(self, view: str, base: str = "", markdown: bool = False) -> FootnoteLinks:
        labels = {label: number for number, label in enumerate(self.footnote_labels, start=1)}
        return FootnoteLinks(view, labels, legacy=self.legacy_footnotes, base=base, markdown=markdown)

    @property
    def discussion_mailto(self) -> str:
        """A reply link for the discussion view: mailto the reply address, the verdict as the subject."""
        if not self.reply_address:
            return ""
        return f"mailto:{quote(self.reply_address, safe='@')}?subject={quote('Re: ' + self.briefing.verdict)}"


@dataclass(frozen=True)
class IndexEntry:
    title: str
    link: str
    date: str
    summary: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class MonthLink:
    label: str
    link: str
    count: int = 0


@dataclass(frozen=True)
class IndexContext:
    """Context of templates/markdown/index.md.j2 and templates/html/index.html.j2 (as `index`).

    title: page title; labels: the archive's label table; entries: newest first (verdict, link, date,
    judgement); months: links to the monthly lists (main index only); feed_link: relative link to the feed;
    up_link: link back to the main list (monthly lists only, else empty); lang: the page language.
    """

    title: str
    labels: dict[str, str]
    entries: tuple[IndexEntry, ...]
    months: tuple[MonthLink, ...]
    feed_link: str
    up_link: str
    lang: str = ARCHIVE_LOCALE


@dataclass
class PublishReport:
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)  # slug → archive-relative Markdown path
    commit: str = ""  # git commit made by git publishing, empty when none
    held: list[str] = field(default_factory=list)  # ready briefings left out: `briefing check` rejects them

    def to_dict(self, root: Path) -> dict[str, Any]:
        return {
            "archive": str(root),
            "written": [str(p.relative_to(root.resolve())) for p in self.written],
            "unchanged": len(self.unchanged),
            "pages": self.pages,
            "commit": self.commit,
            "held": self.held,
        }


# --- paths -----------------------------------------------------------------------------------------------


def safe_join(root: Path, relative: str) -> Path:
    """Join an archive-relative POSIX path under root; refuse anything that could land outside it."""
    if not isinstance(relative, str) or not relative:
        raise PublishError(f"path {relative!r} is empty", where=str(root))
    if "\x00" in relative or "\\" in relative or unicodedata.normalize("NFKC", relative) != relative:
        raise PublishError(
            f"path {relative!r} contains characters that are not allowed (NUL, backslash or Unicode lookalikes)",
            where=str(root),
            hint="slugs may use a-z, 0-9 and '-'",
        )
    if posixpath.isabs(relative) or any(part in ("..", ".", "") for part in relative.split("/")):
        raise PublishError(f"path {relative!r} would leave the archive folder", where=str(root))
    bad = [part for part in relative.split("/") if not SAFE_COMPONENT.match(part)]
    if bad:
        raise PublishError(
            f"path {relative!r} has a component that is not allowed: {bad[0]!r}",
            where=str(root),
            hint="slugs may use a-z, 0-9 and '-'",
        )
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base) or target == base:
        raise PublishError(f"path {relative!r} resolves outside the archive folder", where=str(root))
    return target


def relative_link(from_path: str, to_path: str) -> str:
    return posixpath.relpath(to_path, posixpath.dirname(from_path) or ".")


def entry_id(settings: Settings, md_path: str) -> str:
    """Atom id of a page: a tag: URI built from the site's host and the fixed path, so it never changes."""
    host = urlsplit(settings.base_url).hostname or "localhost"
    stem = md_path[:-3] if md_path.endswith(".md") else md_path
    return f"tag:{host},{stem[:4]}-{stem[5:7]}:/{stem}"


# --- planning --------------------------------------------------------------------------------------------


# --- rendering -------------------------------------------------------------------------------------------


def archive_labels(templates_dir: Path, locale: str = ARCHIVE_LOCALE, brand: str = "") -> dict[str, str]:
    """The shared label table plus the archive's own labels (templates/html/labels.yaml); `brand` (the setting)
    replaces the locale's brand label when given."""
    labels = dict(labels_for(templates_dir, locale))
    labels.update(_archive_only_labels(templates_dir).get(locale) or _archive_only_labels(templates_dir)["en"])
    if brand:
        labels["brand"] = brand
    return labels


@cache
def _archive_only_labels(templates_dir: Path) -> dict[str, dict[str, str]]:
    with (templates_dir / "html" / "labels.yaml").open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@cache
def archive_environment(templates_dir: Path, markup: str) -> jinja2.Environment:
    """The archive's jinja2 environments: 'html' escapes everything; 'markdown' escapes through the md filter."""
    filters: dict[str, Callable[..., Any]] = {
        "table_rows": table_rows,
        "web_url": web_url,
        "md": md_escape,
        "mdurl": md_url,
    }
    return template_environment(templates_dir, autoescape=markup == "html", filters=filters)


def render_archive_template(templates_dir: Path, name: str, **context: Any) -> str:
    markup = "markdown" if name.endswith(".md.j2") else "html"
    try:
        return archive_environment(templates_dir, markup).get_template(name).render(**context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {name}: {exc}", hint="fix the template under templates/") from exc


def _tidy(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def page_context(
    plan: PlannedPage,
    content: Content,
    labels: dict[str, str],
    neighbours: tuple[PlannedPage | None, PlannedPage | None],
    settings: Settings,
    *,
    html: bool,
) -> PageContext:
    own = plan.html_path if html else plan.path
    ext = ".html" if html else ".md"
    names = {a.id: a.name for a in content.audiences}
    briefing = plan.briefing

    def neighbour(other: PlannedPage | None) -> Neighbour | None:
        if other is None:
            return None
        return Neighbour(other.briefing.verdict, relative_link(own, other.html_path if html else other.path))

    return PageContext(
        briefing=briefing,
        labels=labels,
        notes=tuple(
            NoteLine(names.get(n.audience, n.audience), n.meaning, n.next_step, n.lead, n.paragraphs, n.hook)
            for n in briefing.notes
        ),
        body=briefing.body,
        footnotes=briefing.footnotes,
        views=tuple(View(anchor, labels[key]) for anchor, key in VIEWS),
        footnote_count=len(briefing.footnotes),
        index_link=relative_link(own, INDEX_STEM + ext),
        month_link=relative_link(own, f"{plan.month}/{INDEX_STEM}{ext}"),
        feed_link=relative_link(own, FEED_PATH),
        previous=neighbour(neighbours[0]),
        next=neighbour(neighbours[1]),
        updated=plan.updated.date().isoformat() if plan.updated != plan.first_published else "",
        url=archive_url(settings, plan.path),
        footnote_labels=tuple(f.footnote_label or str(n) for n, f in enumerate(briefing.footnotes, start=1)),
        legacy_footnotes=not any(f.footnote_label for f in briefing.footnotes),
        reply_address=settings.reply_to or settings.from_address,
    )


def table_rows(text: str) -> list[list[str]]:
    """A GFM pipe table's rows as cells (the `---` delimiter row left out; `\\|` is a literal bar)."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        if cells and all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
            continue
        rows.append(cells)
    return rows


def front_matter_text(value: str) -> str:
    """Curated text as front matter carries it: one line, and nothing a generator that shows it unescaped (MkDocs)
    could read as a tag, an attribute boundary or a character reference (FRONT_MATTER_LOOKALIKES)."""
    return REFERENCE_START.sub("＆", " ".join(value.split()).translate(FRONT_MATTER_LOOKALIKES))


def front_matter(plan: PlannedPage, audience_names: list[str]) -> str:
    """YAML front matter read by Hugo (title, date, lastmod, slug, summary, tags, url), MkDocs (title, meta) and
    Jekyll (title, date, tags, permalink); `slug` is the fixed URL slug, `briefing` the current content slug.
    Text goes through `front_matter_text`; the `source_url:` key is an http(s) address with its quotes and brackets
    percent-encoded (or '#')."""
    briefing = plan.briefing
    stamp = plan.updated.replace(microsecond=0).isoformat() + "Z"
    web_path = "/" + plan.html_path
    meta: dict[str, Any] = {
        "title": front_matter_text(briefing.verdict),
        "date": briefing.date,
        "updated": stamp,
        "lastmod": stamp,
        "slug": posixpath.basename(plan.path)[:-3],
        "briefing": briefing.slug,
        "summary": front_matter_text(briefing.judgement),
        "source_url": md_url(web_url(briefing.source.url)),
        "source_title": front_matter_text(briefing.source.title),
        "tags": [front_matter_text(tag) for tag in briefing.tags],
        "audiences": [front_matter_text(name) for name in audience_names],
        "url": web_path,
        "permalink": web_path,
    }
    return _yaml_block(meta)


def _yaml_block(meta: dict[str, Any]) -> str:
    # One line per value: no continuation line can look like a '---' or '...' delimiter to a generator.
    return "---\n" + dump_yaml(meta) + "---\n\n"


def _index_front_matter(title: str) -> str:
    return _yaml_block({"title": front_matter_text(title)})


def render_pages(
    plans: tuple[PlannedPage, ...], content: Content, settings: Settings, labels: dict[str, str]
) -> dict[str, bytes]:
    """Every briefing's Markdown page and HTML page, in memory."""
    files: dict[str, bytes] = {}
    names = [a.name for a in content.audiences]
    for position, plan in enumerate(plans):
        newer = plans[position - 1] if position > 0 else None
        older = plans[position + 1] if position + 1 < len(plans) else None
        md_ctx = page_context(plan, content, labels, (older, newer), settings, html=False)
        body = render_archive_template(settings.templates_dir, "markdown/archive_page.md.j2", page=md_ctx)
        files[plan.path] = (front_matter(plan, names) + _tidy(body)).encode("utf-8")
        html_ctx = page_context(plan, content, labels, (older, newer), settings, html=True)
        page = render_archive_template(settings.templates_dir, "html/page.html.j2", page=html_ctx)
        files[plan.html_path] = page.encode("utf-8")
    return files


def _entries(plans: list[PlannedPage], from_path: str, *, html: bool) -> tuple[IndexEntry, ...]:
    return tuple(
        IndexEntry(
            title=p.briefing.verdict,
            link=relative_link(from_path, p.html_path if html else p.path),
            date=p.briefing.date.isoformat(),
            summary=p.briefing.judgement,
            tags=p.briefing.tags,
        )
        for p in plans
    )


def render_indexes(plans: tuple[PlannedPage, ...], settings: Settings, labels: dict[str, str]) -> dict[str, bytes]:
    """The main list and one list per month, as Markdown and HTML, newest first."""
    files: dict[str, bytes] = {}
    months: dict[str, list[PlannedPage]] = {}
    for plan in plans:
        months.setdefault(plan.month, []).append(plan)
    for html in (False, True):
        ext = ".html" if html else ".md"
        root_index = INDEX_STEM + ext
        month_links = tuple(
            MonthLink(labels["month_archive"].format(month=m), f"{m}/{root_index}", len(months[m]))
            for m in sorted(months, reverse=True)
        )
        pages = [(root_index, labels["archive_title"], list(plans), month_links, "")]
        for month in sorted(months, reverse=True):
            month_index = f"{month}/{root_index}"
            title = labels["month_archive"].format(month=month)
            pages.append((month_index, title, months[month], (), relative_link(month_index, root_index)))
        for path, title, items, links, up in pages:
            ctx = IndexContext(
                title=title,
                labels=labels,
                entries=_entries(items, path, html=html),
                months=links,
                feed_link=relative_link(path, FEED_PATH),
                up_link=up,
            )
            if html:
                page = render_archive_template(settings.templates_dir, "html/index.html.j2", index=ctx)
                files[path] = page.encode("utf-8")
            else:
                text = render_archive_template(settings.templates_dir, "markdown/index.md.j2", index=ctx)
                files[path] = (_index_front_matter(title) + _tidy(text)).encode("utf-8")
    return files


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def build_feed(plans: tuple[PlannedPage, ...], content: Content, settings: Settings, labels: dict[str, str]) -> bytes:
    """Atom feed of the latest briefings with their full content; ids are tag: URIs of the fixed paths."""
    latest = sorted(plans, key=lambda p: (p.briefing.date, p.updated, p.path), reverse=True)
    latest = latest[: settings.archive_feed_entries]
    feed = FeedGenerator()
    feed.id(f"{settings.base_url}/{FEED_PATH}")
    feed.title(labels["archive_title"])
    feed.subtitle(labels["brand"])
    feed.author(name=settings.from_name)
    feed.link(href=f"{settings.base_url}/{INDEX_STEM}.html", rel="alternate", type="text/html")
    feed.link(href=f"{settings.base_url}/{FEED_PATH}", rel="self", type="application/atom+xml")
    feed.language(ARCHIVE_LOCALE)
    newest = max((p.updated for p in latest), default=datetime(2000, 1, 1))
    feed.updated(newest.replace(tzinfo=UTC))
    # feedgen prepends each new entry, so add the oldest first to list the newest first.
    for plan in reversed(latest):
        briefing = plan.briefing
        ctx = page_context(plan, content, labels, (None, None), settings, html=True)
        entry = feed.add_entry()
        entry.id(entry_id(settings, plan.path))
        entry.title(briefing.verdict)
        entry.link(href=archive_url(settings, plan.path), rel="alternate", type="text/html")
        entry.summary(briefing.judgement)
        entry.published(_midnight(briefing.date))
        entry.updated(plan.updated.replace(tzinfo=UTC))
        for tag in briefing.tags:
            entry.category(term=tag)
        entry.content(render_archive_template(settings.templates_dir, "html/feed_entry.html.j2", page=ctx), type="html")
    return feed.atom_str(pretty=True)


def render_archive(plans: tuple[PlannedPage, ...], content: Content, settings: Settings) -> dict[str, bytes]:
    """Every file of the archive, keyed by archive-relative path, rendered in memory."""
    labels = archive_labels(settings.templates_dir, brand=settings.brand)
    files = render_pages(plans, content, settings, labels)
    files.update(render_indexes(plans, settings, labels))
    files[FEED_PATH] = build_feed(plans, content, settings, labels)
    return files


def preview_page(briefing: Briefing, content: Content, store: Store, settings: Settings) -> tuple[str, str]:
    """One briefing's archive page as (path, Markdown), rendered in memory: nothing written, nothing recorded.

    Used by the preview server for briefings that are not published yet (drafts included)."""
    plans = plan_pages(store, with_approved_entries((briefing,), store, content, settings))
    files = render_pages(plans, content, settings, archive_labels(settings.templates_dir, brand=settings.brand))
    return plans[0].path, files[plans[0].path].decode("utf-8")


# --- writing ---------------------------------------------------------------------------------------------


def write_if_changed(target: Path, data: bytes, report: PublishReport) -> None:
    if target.is_file() and target.read_bytes() == data:
        report.unchanged.append(target)
        return
    atomic_write_bytes(target, data)
    report.written.append(target)


def _write_order(path: str) -> tuple[int, str]:
    # Pages before the lists that link to them, the feed last: a reader never follows a link to a missing page.
    if path == FEED_PATH:
        return (2, path)
    return (1 if posixpath.basename(path).startswith(INDEX_STEM + ".") else 0, path)


def publish_archive(
    content: Content,
    store: Store,
    settings: Settings,
    briefings: tuple[Briefing, ...] | None = None,
    *,
    now: datetime | None = None,
) -> PublishReport:
    """Publish every ready briefing (or the given ones): pages, lists and feed; unchanged files are left alone.

    Readers' replies approved by an editor (flows/collect) join each page's discussion view; a rejected one is
    gone from the next publish.

    `now` (naive UTC) stamps first publications and changes; it defaults to the current time.
    """
    root = settings.archive_path
    selected = with_approved_entries(briefings if briefings is not None else content.ready, store, content, settings)
    plans = plan_pages(store, selected, now)
    for plan in plans:  # refuse unsafe paths before rendering anything from them
        safe_join(root, plan.path)
        safe_join(root, plan.html_path)
    files = render_archive(plans, content, settings)
    targets = {path: safe_join(root, path) for path in files}
    report = PublishReport(pages={p.slug: p.path for p in plans})
    try:
        root.mkdir(parents=True, exist_ok=True)
        if settings.archive_git_remote:
            prepare_repository(root, settings)
        for path in sorted(files, key=_write_order):
            write_if_changed(targets[path], files[path], report)
    except OSError as exc:
        raise PublishError(
            f"cannot write the archive: {exc.strerror or exc}",
            where=str(exc.filename or root),
            hint="make the folder writable by this user, or point BRIEFING_ARCHIVE_DIR somewhere writable",
        ) from None
    published.record(store, plans)
    if settings.archive_git_remote:
        report.commit = commit_and_push(root, settings)
    logger.info("archive: %d written, %d unchanged", len(report.written), len(report.unchanged))
    return report


def mkdocs_config(settings: Settings, site_dir: Path) -> str:
    """A mkdocs.yml that builds the Markdown archive as it is (`mkdocs build --strict`): the HTML version and
    .git are left out of the docs, and `use_directory_urls: false` gives the same URLs as the HTML version."""
    labels = archive_labels(settings.templates_dir, brand=settings.brand)
    config = {
        "site_name": f"{labels['brand']} · {labels['archive_title']}",
        "site_url": settings.base_url + "/",
        "docs_dir": str(settings.archive_path.resolve()),
        "site_dir": str(site_dir.resolve()),
        "use_directory_urls": False,
        "exclude_docs": "*.html\n.git/\n",
        "validation": {
            "omitted_files": "warn",
            "absolute_links": "warn",
            "unrecognized_links": "warn",
            "anchors": "warn",
        },
    }
    return yaml.safe_dump(config, allow_unicode=True, sort_keys=False)

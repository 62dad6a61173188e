"""Publish stage: the Markdown archive (index, monthly indexes, one page per briefing, Atom feed) with stable URLs.

Entry point: `publish_archive`. Paths are fixed at first publication (recorded in the store), writes are
atomic, and an unchanged file is never rewritten, so republishing is a no-op.
"""

from __future__ import annotations

import logging
import posixpath
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from feedgen.feed import FeedGenerator
from sqlalchemy import insert, select, update

from flows.errors import PublishError
from flows.models import AlignedParagraph, Briefing, Content
from flows.render import labels_for, render_template
from flows.settings import Settings
from flows.store import Store, published, utcnow
from flows.transports import atomic_write_bytes

logger = logging.getLogger(__name__)

ARCHIVE_LOCALE = "zh-CN"


@dataclass(frozen=True)
class NoteLine:
    audience_name: str
    meaning: str
    next_step: str


@dataclass(frozen=True)
class Neighbour:
    title: str
    link: str


@dataclass(frozen=True)
class PageContext:
    """Context of templates/markdown/archive_page.md.j2 (as `page`)."""

    briefing: Briefing
    labels: dict[str, str]
    notes: tuple[NoteLine, ...]
    body: tuple[AlignedParagraph, ...]
    footnotes: tuple[AlignedParagraph, ...]
    index_link: str
    previous: Neighbour | None
    next: Neighbour | None


@dataclass(frozen=True)
class IndexEntry:
    title: str
    link: str
    date: str
    summary: str


@dataclass(frozen=True)
class MonthLink:
    label: str
    link: str


@dataclass(frozen=True)
class IndexContext:
    """Context of templates/markdown/index.md.j2 (as `index`)."""

    title: str
    labels: dict[str, str]
    entries: tuple[IndexEntry, ...]
    months: tuple[MonthLink, ...]
    feed_link: str
    up_link: str


@dataclass
class PublishReport:
    written: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)  # slug → archive-relative path


def safe_join(root: Path, relative: str) -> Path:
    """Join a relative POSIX path under root; refuse anything that would land outside it."""
    normalised = unicodedata.normalize("NFKC", relative)
    if normalised != relative or "\\" in relative or "\x00" in relative:
        raise PublishError(f"path {relative!r} contains characters that are not allowed", where=str(root))
    if posixpath.isabs(relative) or any(part in ("..", "") for part in relative.split("/")):
        raise PublishError(f"path {relative!r} would leave the archive folder", where=str(root))
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()):
        raise PublishError(f"path {relative!r} resolves outside the archive folder", where=str(root))
    return target


def page_path_for(briefing: Briefing) -> str:
    return f"{briefing.date:%Y/%m}/{briefing.slug}.md"


def assign_paths(store: Store, briefings: tuple[Briefing, ...]) -> dict[str, str]:
    """Slug → archive path. A path is fixed when first published; a later date edit does not move it."""
    with store.engine.connect() as conn:
        known = {r.slug: r.path for r in conn.execute(select(published.c.slug, published.c.path))}
    return {b.slug: known.get(b.slug) or page_path_for(b) for b in briefings}


def html_link(md_path: str) -> str:
    return md_path[:-3] + ".html" if md_path.endswith(".md") else md_path


def archive_url(settings: Settings, md_path: str) -> str:
    return f"{settings.base_url}/{html_link(md_path)}"


def relative_link(from_path: str, to_path: str) -> str:
    return posixpath.relpath(to_path, posixpath.dirname(from_path) or ".")


def front_matter(briefing: Briefing, updated: datetime, audience_names: list[str]) -> str:
    meta: dict[str, Any] = {
        "title": briefing.verdict,
        "date": briefing.date.isoformat(),
        "updated": updated.replace(microsecond=0).isoformat() + "Z",
        "slug": briefing.slug,
        "summary": briefing.judgement,
        "source_url": briefing.source.url,
        "source_title": briefing.source.title,
        "tags": list(briefing.tags),
        "audiences": audience_names,
    }
    return "---\n" + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=1000) + "---\n\n"


def render_page(
    briefing: Briefing,
    content: Content,
    path: str,
    neighbours: tuple[Neighbour | None, Neighbour | None],
    settings: Settings,
) -> str:
    labels = labels_for(settings.templates_dir, ARCHIVE_LOCALE)
    names = {a.id: a.name for a in content.audiences}
    notes = tuple(NoteLine(names.get(n.audience, n.audience), n.meaning, n.next_step) for n in briefing.notes)
    page = PageContext(
        briefing=briefing,
        labels=labels,
        notes=notes,
        body=briefing.body,
        footnotes=briefing.footnotes,
        index_link=relative_link(path, "index.md"),
        previous=neighbours[0],
        next=neighbours[1],
    )
    return render_template(settings.templates_dir, "markdown/archive_page.md.j2", page=page)


def write_if_changed(root: Path, relative: str, data: bytes, report: PublishReport) -> None:
    target = safe_join(root, relative)
    if target.exists() and target.read_bytes() == data:
        report.unchanged.append(target)
        return
    atomic_write_bytes(target, data)
    report.written.append(target)


def record_publication(store: Store, briefing: Briefing, path: str) -> datetime:
    """Store the path and content hash; return the `updated` time (unchanged unless the content changed)."""
    content_hash = briefing.content_hash()
    now = utcnow().replace(microsecond=0)
    with store.begin() as conn:
        row = conn.execute(select(published).where(published.c.slug == briefing.slug)).mappings().first()
        if row is None:
            clash = conn.execute(select(published.c.slug).where(published.c.path == path)).first()
            if clash:
                raise PublishError(
                    f"archive path {path} is already used by briefing '{clash.slug}'",
                    where=briefing.path,
                    hint="give one of the two briefings another slug",
                )
            conn.execute(
                insert(published).values(
                    slug=briefing.slug, path=path, content_hash=content_hash, first_published=now, updated=now
                )
            )
            return now
        if row["content_hash"] != content_hash:
            conn.execute(
                update(published)
                .where(published.c.slug == briefing.slug)
                .values(content_hash=content_hash, updated=now)
            )
            return now
        return row["updated"]


def check_clashes(briefings: tuple[Briefing, ...], paths: dict[str, str]) -> None:
    seen: dict[str, Briefing] = {}
    for briefing in briefings:
        path = paths[briefing.slug]
        if path in seen:
            raise PublishError(
                f"{briefing.path} and {seen[path].path} would both publish to {path}",
                hint="give one of them another slug",
            )
        seen[path] = briefing


def build_feed(entries: list[tuple[Briefing, str, datetime]], settings: Settings) -> bytes:
    feed = FeedGenerator()
    feed.id(f"{settings.base_url}/")
    feed.title(labels_for(settings.templates_dir, ARCHIVE_LOCALE)["archive_title"])
    feed.link(href=f"{settings.base_url}/", rel="alternate")
    feed.link(href=f"{settings.base_url}/feed.xml", rel="self")
    feed.language(ARCHIVE_LOCALE)
    latest = max((u for _, _, u in entries), default=datetime(2000, 1, 1))
    feed.updated(latest.replace(tzinfo=UTC))
    for briefing, path, updated in reversed(entries[: settings.archive_feed_entries]):
        entry = feed.add_entry()
        url = archive_url(settings, path)
        entry.id(url)
        entry.title(briefing.verdict)
        entry.link(href=url)
        entry.summary(briefing.judgement)
        entry.published(datetime(briefing.date.year, briefing.date.month, briefing.date.day, tzinfo=UTC))
        entry.updated(updated.replace(tzinfo=UTC))
        points = "".join(
            f"<li><strong>{_esc(p.lead)}</strong> {_esc(p.explanation)}</li>" for p in briefing.core_points
        )
        entry.content(f"<p>{_esc(briefing.judgement)}</p><ul>{points}</ul>", type="html")
    return feed.atom_str(pretty=True)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def publish_archive(
    content: Content, store: Store, settings: Settings, briefings: tuple[Briefing, ...] | None = None
) -> PublishReport:
    """Write every ready briefing's page, the indexes and the feed; unchanged files are left alone."""
    root = settings.archive_path
    root.mkdir(parents=True, exist_ok=True)
    ready = tuple(
        sorted(briefings if briefings is not None else content.ready, key=lambda b: (b.date, b.slug), reverse=True)
    )
    paths = assign_paths(store, ready)
    check_clashes(ready, paths)
    report = PublishReport(pages=dict(paths))
    names = [a.name for a in content.audiences]
    dated: list[tuple[Briefing, str, datetime]] = []
    for position, briefing in enumerate(ready):
        path = paths[briefing.slug]
        newer = ready[position - 1] if position > 0 else None
        older = ready[position + 1] if position + 1 < len(ready) else None
        neighbours = (
            Neighbour(older.verdict, relative_link(path, paths[older.slug])) if older else None,
            Neighbour(newer.verdict, relative_link(path, paths[newer.slug])) if newer else None,
        )
        updated = record_publication(store, briefing, path)
        text = front_matter(briefing, updated, names) + render_page(briefing, content, path, neighbours, settings)
        write_if_changed(root, path, text.encode("utf-8"), report)
        dated.append((briefing, path, updated))
    write_indexes(root, dated, settings, report)
    write_if_changed(root, "feed.xml", build_feed(dated, settings), report)
    logger.info("archive: %d written, %d unchanged", len(report.written), len(report.unchanged))
    return report


def write_indexes(
    root: Path, dated: list[tuple[Briefing, str, datetime]], settings: Settings, report: PublishReport
) -> None:
    labels = labels_for(settings.templates_dir, ARCHIVE_LOCALE)
    months: dict[str, list[tuple[Briefing, str, datetime]]] = {}
    for item in dated:
        months.setdefault(item[1][:7], []).append(item)
    month_links = tuple(MonthLink(m, f"{m}/index.md") for m in sorted(months, reverse=True))
    index = IndexContext(
        title=labels["archive_title"],
        labels=labels,
        entries=_entries(dated, ""),
        months=month_links,
        feed_link="feed.xml",
        up_link="",
    )
    text = render_template(settings.templates_dir, "markdown/index.md.j2", index=index)
    write_if_changed(root, "index.md", _index_front_matter(labels["archive_title"]) + text.encode("utf-8"), report)
    for month, items in months.items():
        title = labels["month_archive"].format(month=month)
        ctx = IndexContext(
            title=title,
            labels=labels,
            entries=_entries(items, month),
            months=(),
            feed_link="../../feed.xml",
            up_link="../../index.md",
        )
        body = render_template(settings.templates_dir, "markdown/index.md.j2", index=ctx)
        write_if_changed(root, f"{month}/index.md", _index_front_matter(title) + body.encode("utf-8"), report)


def _index_front_matter(title: str) -> bytes:
    return ("---\n" + yaml.safe_dump({"title": title}, allow_unicode=True) + "---\n\n").encode("utf-8")


def _entries(items: list[tuple[Briefing, str, datetime]], base: str) -> tuple[IndexEntry, ...]:
    return tuple(
        IndexEntry(
            title=b.verdict,
            link=relative_link(base + "/index.md" if base else "index.md", path),
            date=b.date.isoformat(),
            summary=b.judgement,
        )
        for b, path, _ in items
    )

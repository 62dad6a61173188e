"""Helpers for the publish tests: publish the sample content, read front matter, collect relative links."""

from __future__ import annotations

from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml
from markdown_it import MarkdownIt

from flows.core.content import load_content
from flows.core.models import Briefing, Content
from flows.core.settings import Settings
from flows.core.store import Store
from flows.publish.archive import PublishReport, publish_archive

FIRST = datetime(2026, 6, 6, 8, 0, 0)
LATER = datetime(2026, 6, 9, 17, 30, 0)


def sample_content(settings: Settings) -> Content:
    return load_content(settings.content_dir).content


def publish(
    settings: Settings, store: Store, briefings: tuple[Briefing, ...] | None = None, now: datetime = FIRST
) -> PublishReport:
    return publish_archive(sample_content(settings), store, settings, briefings, now=now)


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(folder).parts
    }


def split_front_matter(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n"), "a page must start with YAML front matter"
    head, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(head), body


def markdown_links(text: str) -> list[str]:
    """Every link and image target of a Markdown document, as markdown-it-py (CommonMark) parses it."""
    targets: list[str] = []

    def walk(tokens: list) -> None:
        for token in tokens:
            if token.type == "link_open":
                targets.append(token.attrGet("href"))
            elif token.type == "image":
                targets.append(token.attrGet("src"))
            if token.children:
                walk(token.children)

    walk(MarkdownIt("commonmark").parse(text))
    return targets


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []
        self.ids: set[str] = set()
        self.duplicate_ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            if values["id"] in self.ids:
                self.duplicate_ids.append(values["id"] or "")
            self.ids.add(values["id"] or "")
        for name in ("href", "src"):
            if values.get(name) and tag in ("a", "link", "img"):
                self.targets.append(values[name] or "")


def html_links(text: str) -> tuple[list[str], set[str]]:
    """Link targets and element ids of an HTML page; a duplicate id is an error."""
    parser = _Links()
    parser.feed(text)
    assert not parser.duplicate_ids, f"duplicate ids: {parser.duplicate_ids}"
    return parser.targets, parser.ids


def broken_relative_links(root: Path, page: Path, targets: list[str], ids: set[str] | None = None) -> list[str]:
    """Relative targets that do not exist under root (fragments are checked against ids when given)."""
    broken = []
    for target in targets:
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            continue
        if not parts.path:
            if ids is not None and parts.fragment not in ids:
                broken.append(target)
            continue
        resolved = (page.parent / unquote(parts.path)).resolve()
        if not resolved.is_file() or not resolved.is_relative_to(root.resolve()):
            broken.append(target)
    return broken

"""Helpers for the render tests: the shipped sample content, hostile and huge synthetic briefings, HTML text."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

from flows.core.content import load_content
from flows.core.models import AudienceNote, Briefing, Content, CorePoint
from flows.render.email import RenderedBriefing, render_briefing

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "templates"
GOLDEN = REPO / "tests" / "golden"
BASE_URL = "https://briefing.example.org"
REGENERATE_ENV = "BRIEFING_REGENERATE_GOLDEN"

HOSTILE = (
    "<script>alert('x')</script> a < b && c > d &amp; {{ 7 * 7 }} {% if true %}IF{% endif %} "
    "*star* _under_ [link](http://evil.example) `code` # hash | pipe ~tilde~ \\back 🎉👩‍💻 "
)
LONG_TOKEN = "https://example.org/" + "x" * 1500


@cache
def sample_content() -> Content:
    loaded = load_content(REPO / "content")
    return loaded.content


def archive_url(slug: str) -> str:
    return f"{BASE_URL}/2026/06/{slug}.html"


def render(briefing: Briefing, content: Content | None = None, **kwargs: object) -> RenderedBriefing:
    content = content or sample_content()
    options: dict[str, object] = {
        "templates_dir": TEMPLATES,
        "archive_url": archive_url(briefing.slug),
        "archive_index_url": f"{BASE_URL}/index.html",
    }
    options.update(kwargs)
    return render_briefing(briefing, content, **options)  # type: ignore[arg-type]


def hostile_briefing(base: Briefing) -> Briefing:
    """Every curated field carries HTML, template syntax, Markdown specials, emoji and an unbroken token."""
    notes = tuple(
        AudienceNote(audience=n.audience, meaning=f"{n.audience} {HOSTILE}", next_step=f"{HOSTILE} {LONG_TOKEN}")
        for n in base.notes
    )
    return base.model_copy(
        update={
            "verdict": f"1. {HOSTILE}",
            "judgement": f"- {HOSTILE} {LONG_TOKEN}",
            "core_points": (CorePoint(lead=f"# {HOSTILE}", explanation=f"{HOSTILE} {LONG_TOKEN}"),),
            "prompts": (f"> {HOSTILE}", "2026. " + HOSTILE),
            "notes": notes,
            "source": base.source.model_copy(update={"title": f"{HOSTILE} title"}),
        }
    )


def huge_briefing(base: Briefing, points: int = 400, note_chars: int = 3000) -> Briefing:
    """A briefing far over any email budget; the own notes are long but must survive whole."""
    explanation = "这是一段很长的解释，用来把邮件撑大。" * 60 + " Latin words too, " * 40
    notes = tuple(
        AudienceNote(
            audience=n.audience,
            meaning=f"[{n.audience}-own-note-start] " + "只属于这个读者的内容。" * (note_chars // 11) + " [end]",
            next_step=f"[{n.audience}-next] " + n.next_step,
        )
        for n in base.notes
    )
    return base.model_copy(
        update={
            "core_points": tuple(CorePoint(lead=f"要点 {i}", explanation=explanation) for i in range(points)),
            "prompts": tuple(f"问题 {i}：" + "为什么？" * 200 for i in range(30)),
            "notes": notes,
        }
    )


class _TextCollector(HTMLParser):
    """Visible text of an HTML document (skipping head, style and the hidden preheader)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("style", "title", "script"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "script") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


@dataclass
class ParsedHtml:
    text: str
    tags: list[tuple[str, dict[str, str | None]]]


def parse_html(html: str) -> ParsedHtml:
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    text = " ".join(" ".join(collector.parts).split())
    return ParsedHtml(text=text, tags=collector.tags)


def squash(text: str) -> str:
    return " ".join(text.split())


def unwrapped(text: str) -> str:
    """Text with all whitespace removed: compares wrapped plain text with its source."""
    return "".join(text.split())


def normalise(text: str, *, html: bool = False) -> str:
    """Golden-file normalisation: loopback ports are volatile; HTML gets one tag per line for readable diffs."""
    text = re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:PORT", text)
    return re.sub(r">\s*<", ">\n<", text) if html else text


def compare_golden(path: Path, actual: str) -> str | None:
    """None when `actual` matches the golden file (or it was regenerated); else a unified diff."""
    actual = normalise(actual, html=path.suffix == ".html")
    if os.environ.get(REGENERATE_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return None
    if not path.exists():
        return f"{path} is missing: run `{REGENERATE_ENV}=1 python -m pytest tests/test_render_golden.py`"
    expected = path.read_text(encoding="utf-8")
    if expected == actual:
        return None
    diff = difflib.unified_diff(
        expected.splitlines(), actual.splitlines(), f"{path} (golden)", "rendered now", lineterm="", n=2
    )
    return "\n".join(list(diff)[:200])

"""Find the empty parts of a briefing file and write drafts into them, leaving every other byte as it was.

Only empty sections, notes and translation blocks are written, each under a machine-draft marker. The file is
read again just before writing, so whatever the editor wrote while the model was answering is kept: a part that
is no longer empty then keeps the editor's text and the draft for it is dropped (and reported).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from flows.core.briefing_format import (
    BLOCK_ID,
    ParsedFile,
    mark_untranslated,
    note_heading,
    parse_translation,
    section_headings,
    split_front_matter,
    split_sections,
    subsections,
)
from flows.core.errors import ContentError
from flows.core.models import AlignedParagraph

logger = logging.getLogger(__name__)

CURATED = ("verdict", "judgement", "core_points", "prompts")
SECTION_TITLES = {
    "verdict": "Verdict",
    "judgement": "Judgement",
    "core_points": "Core points",
    "notes": "Audience notes",
    "prompts": "Discussion prompts",
    "translation": "Translation",
}
DEFAULT_LABELS = {"meaning": "Means:", "next_step": "Next:"}
EMPTY_NOTE_LINE = re.compile(r"^\s*(means|meaning|next|意味着|下一步)\s*[:：]\s*$", re.IGNORECASE)


@dataclass
class BriefingText:
    """A briefing file as lines, with its parsed structure (line numbers count from 1)."""

    path: Path
    text: str
    newline: str
    lines: list[str]
    parsed: ParsedFile
    body: list[tuple[int, str]]

    @classmethod
    def read(cls, path: Path) -> BriefingText:
        text = read_exact(path)
        newline = "\r\n" if "\r\n" in text else "\n"
        meta, body = split_front_matter(path, text)
        problems: list[ContentError] = []
        parsed = ParsedFile(path=path, meta=meta, sections=split_sections(path, body, problems), problems=problems)
        return cls(path, text, newline, text.split(newline), parsed, body)

    def extent(self, name: str) -> tuple[int, int] | None:
        """(heading line, last line) of a section, or None when the file has no such heading."""
        section = self.parsed.sections.get(name)
        if section is None:
            return None
        after = [line for line, _ in section_headings(self.body) if line > section.heading_line]
        return section.heading_line, (after[0] - 1 if after else len(self.lines))

    def items(self, name: str) -> dict[str, tuple[int, int]]:
        """The '### ' items of a section (audience notes, translation blocks): heading → (heading line, last line)."""
        bounds = self.extent(name)
        if bounds is None:
            return {}
        heads = [(number, title) for number, title, _ in subsections(self.parsed.sections[name].lines)]
        result: dict[str, tuple[int, int]] = {}
        for index, (number, title) in enumerate(heads):
            end = heads[index + 1][0] - 1 if index + 1 < len(heads) else bounds[1]
            result.setdefault(note_heading(title)[0] if name == "notes" else title, (number, end))
        return result

    def has_content(self, name: str) -> bool:
        section = self.parsed.sections.get(name)
        return section is not None and any(line.strip() for _, line in section.lines)

    def note_is_empty(self, bounds: tuple[int, int]) -> bool:
        """True when the note has nothing but blank lines, comments and empty 'Means:' / 'Next:' labels."""
        return all(not text.strip() or EMPTY_NOTE_LINE.match(text) for _, text in self.note_lines(bounds))

    def note_lines(self, bounds: tuple[int, int]) -> list[tuple[int, str]]:
        """The note's lines below its heading, comments removed (numbers of lines that were only a comment are gone)."""
        return [(n, text) for n, text in self.parsed.sections["notes"].lines if bounds[0] < n <= bounds[1]]

    def blocks(self) -> list[AlignedParagraph]:
        return list(mark_untranslated(self.parsed, self.body, parse_translation(self.parsed)))

    def raw(self, number: int) -> str:
        return self.lines[number - 1] if 0 < number <= len(self.lines) else ""

    def last_content_line(self, start: int, end: int) -> int:
        """The last non-blank line in (start, end], or start when all are blank."""
        return next((n for n in range(end, start, -1) if self.raw(n).strip()), start)


@dataclass
class EmptyParts:
    """What a draft may fill: requested parts that are empty, and what was requested but is not empty or absent."""

    sections: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    blocks: list[AlignedParagraph] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(self.sections or self.notes or self.blocks)


def find_empty(doc: BriefingText, wanted: set[str], audience_ids: list[str]) -> EmptyParts:
    """The empty parts among `wanted` (section names; `notes.<id>` for one audience's note)."""
    parts = EmptyParts()
    for name in CURATED:
        if name not in wanted:
            continue
        if doc.extent(name) is None:
            parts.absent.append(name)
        elif doc.has_content(name):
            parts.written.append(name)
        else:
            parts.sections.append(name)
    note_ids = [a for a in audience_ids if "notes" in wanted or f"notes.{a}" in wanted]
    if note_ids and doc.extent("notes") is None:
        parts.absent.append("notes")
    elif note_ids:
        notes = doc.items("notes")
        for audience in note_ids:
            bounds = notes.get(audience)
            if bounds is None or doc.note_is_empty(bounds):
                parts.notes.append(audience)
            else:
                parts.written.append(f"notes.{audience}")
    if "translation" in wanted:
        if doc.extent("translation") is None:
            parts.absent.append("translation")
        else:
            blocks = doc.blocks()
            # code, tables, images with nothing to translate and blocks kept in English are not drafted
            parts.blocks = [b for b in blocks if not b.translation.strip() and b.source.strip() and b.needs_translation]
            if blocks and not parts.blocks:
                parts.written.append("translation")
    return parts


@dataclass
class Drafts:
    """What the model wrote, ready to go into the file."""

    verdict: str = ""
    judgement: str = ""
    core_points: list[tuple[str, str]] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    notes: dict[str, tuple[str, str]] = field(default_factory=dict)
    translation: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # block id → the source text that was translated

    def section_lines(self, name: str) -> list[str]:
        if name in ("verdict", "judgement"):
            return [getattr(self, name)] if getattr(self, name) else []
        if name == "core_points":
            return [f"- **{lead}** {text}" for lead, text in self.core_points]
        if name == "prompts":
            return [f"{number}. {text}" for number, text in enumerate(self.prompts, start=1)]
        return []


@dataclass
class Written:
    filled: list[str] = field(default_factory=list)
    blocks: int = 0
    dropped: list[str] = field(default_factory=list)  # drafts not written: the editor filled that part meanwhile


Edit = tuple[int, int, list[str]]  # replace lines[start:end] (0-based) with these lines


def write_drafts(path: Path, drafts: Drafts, marker: str, audience_ids: list[str], attempts: int = 3) -> Written:
    """Write the drafts into the parts of the file that are still empty; atomic, and retried when the file
    changes between reading and replacing it."""
    for _ in range(attempts):
        doc = BriefingText.read(path)
        written, edits = plan_edits(doc, drafts, marker, audience_ids)
        if not edits:
            return written
        lines = list(doc.lines)
        for start, end, new in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
            lines[start:end] = new
        if replace_if_unchanged(path, doc.text, doc.newline.join(lines)):
            return written
        logger.info("%s changed while the draft was written; reading it again", path)
    raise ContentError(path, "the file kept changing while the draft was written", hint="run `briefing draft` again")


def plan_edits(doc: BriefingText, drafts: Drafts, marker: str, audience_ids: list[str]) -> tuple[Written, list[Edit]]:
    written = Written()
    edits: list[Edit] = []
    wanted = {n for n in CURATED if drafts.section_lines(n)}
    wanted |= {f"notes.{a}" for a in drafts.notes} | ({"translation"} if drafts.translation else set())
    empty = find_empty(doc, wanted, audience_ids)
    for name in CURATED:
        if name in wanted and name not in empty.sections:
            written.dropped.append(name)
        elif name in wanted:
            start, end = doc.extent(name)  # type: ignore[misc]
            edits.append(_insertion(doc, doc.last_content_line(start, end), [marker, *drafts.section_lines(name)]))
            written.filled.append(name)
    edits += _note_edits(doc, drafts, marker, empty.notes, written)
    edits += _block_edits(doc, drafts, marker, empty.blocks, written)
    return written, edits


def _insertion(doc: BriefingText, after: int, content: list[str]) -> Edit:
    """Insert a blank line and `content` after line `after`, keeping a blank line before whatever follows."""
    trailing = [""] if doc.raw(after + 1).strip() else []
    return after, after, ["", *content, *trailing]


def _note_edits(doc: BriefingText, drafts: Drafts, marker: str, empty: list[str], written: Written) -> list[Edit]:
    edits: list[Edit] = []
    notes = doc.items("notes")
    for audience, (means, next_step) in drafts.notes.items():
        if audience not in empty:
            written.dropped.append(f"notes.{audience}")
            continue
        bounds = notes.get(audience)
        if bounds is None:  # an audience added after the stub was written: a new '### id' at the end of the notes
            start, end = doc.extent("notes")  # type: ignore[misc]
            content = [f"### {audience}", marker, _label("Means:", means), _label("Next:", next_step)]
            edits.append(_insertion(doc, doc.last_content_line(start, end), content))
        else:
            edits += _fill_note(doc, bounds, marker, {"meaning": means, "next_step": next_step})
        written.filled.append(f"notes.{audience}")
    return edits


def _fill_note(doc: BriefingText, bounds: tuple[int, int], marker: str, texts: dict[str, str]) -> list[Edit]:
    """Fill the note's empty label lines in place (a second empty label of the same kind would blank the text
    again when parsed, so it goes); labels it lacks are added under the marker, below the '### ' heading."""
    edits: list[Edit] = []
    filled: set[str] = set()
    for number, text in doc.note_lines(bounds):
        if not EMPTY_NOTE_LINE.match(text):
            continue
        key = "next_step" if text.strip().lower().startswith(("next", "下一步")) else "meaning"
        label = text.strip()
        replacement = [] if key in filled else [doc.raw(number).rstrip().replace(label, _label(label, texts[key]), 1)]
        edits.append((number - 1, number, replacement))
        filled.add(key)
    missing = [_label(DEFAULT_LABELS[key], texts[key]) for key in ("meaning", "next_step") if key not in filled]
    edits.append((bounds[0], bounds[0], [marker, *missing]))
    return edits


def _label(label: str, text: str) -> str:
    return f"{label}{text}" if label.endswith("：") else f"{label} {text}"


def _block_edits(
    doc: BriefingText, drafts: Drafts, marker: str, empty: list[AlignedParagraph], written: Written
) -> list[Edit]:
    edits: list[Edit] = []
    blocks = doc.items("translation")
    still_empty = {b.id: b for b in empty}
    for block_id, text in drafts.translation.items():
        block = still_empty.get(block_id)
        if block is None or not BLOCK_ID.match(block_id) or block.source != drafts.sources.get(block_id, block.source):
            written.dropped.append(f"translation.{block_id}")
            continue
        start, end = blocks[block_id]
        edits.append(_insertion(doc, doc.last_content_line(start, end), [marker, text]))
        written.blocks += 1
    if written.blocks:
        written.filled.append("translation")
    return edits


def read_exact(path: Path) -> str:
    """The file's text with its line endings as they are (read_text would turn CRLF into LF)."""
    return path.read_bytes().decode("utf-8")


def replace_if_unchanged(path: Path, expected: str, new_text: str) -> bool:
    """Atomically replace the file with `new_text` unless its content is no longer `expected`."""
    mode = path.stat().st_mode & 0o777
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(new_text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        if read_exact(path) != expected:
            return False
        os.replace(temp, path)
        return True
    finally:
        if os.path.exists(temp):
            os.unlink(temp)

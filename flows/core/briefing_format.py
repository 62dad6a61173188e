"""Read and write the briefing file format: YAML front matter plus headed Markdown sections.

The format is documented in docs/content-format.md. Parsing keeps line numbers so every problem can
point at the line an editor has to change.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from pydantic import ValidationError

from flows.core.errors import ContentError
from flows.core.models import (
    AlignedParagraph,
    AudienceNote,
    Briefing,
    CorePoint,
    DiscussionEntry,
    MachineDraft,
    ParagraphKind,
    Source,
)
from flows.core.text_safety import describe, forbidden_characters

logger = logging.getLogger(__name__)

SECTION_ALIASES: dict[str, str] = {
    "verdict": "verdict",
    "一句话判断": "verdict",
    "judgement": "judgement",
    "judgment": "judgement",
    "判断": "judgement",
    "core points": "core_points",
    "核心观点": "core_points",
    "audience notes": "notes",
    "for our audiences": "notes",
    "跟我们的关联": "notes",
    "discussion prompts": "prompts",
    "讨论引子": "prompts",
    "translation": "translation",
    "完整翻译": "translation",
    "discussion archive": "discussion",
    "讨论归档": "discussion",
}
NOTE_LABELS = {
    "means": "meaning",
    "meaning": "meaning",
    "意味着": "meaning",
    "next": "next_step",
    "下一步": "next_step",
}
BLOCK_ID = re.compile(r"^(p|h|q|img|fn|code|table)(\d{2,})-([0-9a-f]{6,})$")
NOTE_LINE = re.compile(r"^(means|meaning|next|意味着|下一步)\s*[:：]\s*(.*)$", re.IGNORECASE)
# A note in lead form starts with its bold lead: "**对 ATou 意味着什么、下一步怎么用** text…".
NOTE_LEAD = re.compile(r"^\*\*(?P<lead>.+?)\*\*(?P<rest>.*)$")
# "### atou · hook": the audience id, then optionally a hook for the subject line after "·", "|" or "—".
NOTE_HEADING = re.compile(r"^(?P<id>[^\s·|—]+)\s*(?:[·|—]\s*(?P<hook>.*))?$")
# Footnotes, GFM syntax: "[^1]" in the text, "[^1]: note" as a footnote block's source and translation.
FOOTNOTE_REF = re.compile(r"\[\^([0-9]{1,3}|[*†‡§a-z][a-z0-9-]{0,15})\]")
FOOTNOTE_DEF = re.compile(r"^\[\^([0-9]{1,3}|[*†‡§a-z][a-z0-9-]{0,15})\]:\s*(.*)$", re.DOTALL)
# A block kept in its original language on purpose: a comment line under the block's heading.
UNTRANSLATED_LINE = re.compile(r"^\s*<!--\s*untranslated\b(?::\s*(?P<reason>.*?))?\s*-->\s*$", re.IGNORECASE)
UNTRANSLATABLE_KINDS = ("fn", "img", "table")
# Joining the lines of one paragraph: no space where both sides of the line break are CJK (a space there would
# show between two ideographs), one space otherwise.
CJK = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef\u3000-\u303f\u3040-\u30ff\uac00-\ud7af]")
CORE_POINT = re.compile(r"^[-*]\s+\*\*(.+?)\*\*\s*[:：.。]?\s*(.*)$")
PROMPT = re.compile(r"^(\d+)[.)]\s+(.*)$")
DISCUSSION_HEAD = re.compile(r"^(\d{4}-\d{2}-\d{2})\s*(?:[·|—-]\s*(.*))?$")
# "![alt](src)": in the alt text, a backslash escapes "\", "[" and "]" (the stub writer escapes them; see write_image).
IMAGE_MD = re.compile(r"^!\[((?:\\.|\](?!\()|[^\\\]])*)\]\((\S*?)\)$")
ALT_ESCAPE = re.compile(r"\\([\\\[\]])")
WHITESPACE = re.compile(r"\s")
# Line endings as CommonMark and editors count them. str.splitlines() also breaks at \x0b, \x0c, \x1c-\x1e, \x85,
# \u2028 and \u2029, so text containing one of those could start a new section or block.
LINE_END = re.compile(r"\r\n|\r|\n")
NO_LINE_WIDTH = 1 << 30  # YAML folds nothing: a long value stays on its key's line
YAML_BREAKS = re.compile("[\r\n\x85\u2028\u2029\ufeff]")
FRONT_MATTER_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:")
MAX_CHARACTER_PROBLEMS = 20  # per file: a pasted binary blob must not drown the other messages
# A machine-draft marker: an HTML comment on a line of its own, under the heading of what the model wrote.
MACHINE_DRAFT_LINE = re.compile(r"^\s*<!--\s*machine-draft\b(?P<attrs>.*?)-->\s*$", re.IGNORECASE)
MARKER_MODEL = re.compile(r"\bmodel=(\S+)")
MARKER_DATE = re.compile(r"\bdate=(\d{4}-\d{2}-\d{2})")
DRAFTABLE_SECTIONS = ("verdict", "judgement", "core_points", "notes", "prompts", "translation")


class FrontMatterLoader(yaml.SafeLoader):
    """Safe YAML that leaves dates as text, so a bad date becomes a checker message, not a crash."""


def _timestamp_as_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


FrontMatterLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


@dataclass
class Section:
    name: str
    heading_line: int
    lines: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class ParsedFile:
    path: Path
    meta: dict[str, Any]
    sections: dict[str, Section]
    problems: list[ContentError] = field(default_factory=list)


def file_lines(text: str) -> list[str]:
    """`text` split at its line endings (\n, \r\n, \r) only, without a final empty line."""
    lines = LINE_END.split(text)
    return lines[:-1] if lines and not lines[-1] else lines


def split_front_matter(path: Path, text: str) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    lines = file_lines(text.removeprefix("\ufeff"))
    if not lines or lines[0].strip() != "---":
        raise ContentError(
            path,
            "the file must start with a YAML front matter block between '---' lines",
            line=1,
            hint="see docs/content-format.md for a complete example",
        )
    try:
        # a closing '---' starts its line: an indented one is part of a YAML value
        end = next(i for i in range(1, len(lines)) if lines[i].rstrip() == "---")
    except StopIteration:
        raise ContentError(path, "the front matter is not closed by a '---' line", line=1) from None
    try:
        meta = yaml.load("\n".join(lines[1:end]), Loader=FrontMatterLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark else 1
        raise ContentError(path, f"front matter is not valid YAML: {getattr(exc, 'problem', exc)}", line=line) from None
    if not isinstance(meta, dict):
        raise ContentError(path, "front matter must be a mapping of keys to values", line=2)
    body = [(i + 1, lines[i]) for i in range(end + 1, len(lines))]
    return meta, body


def without_comments(body: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Drop HTML comments (editor guidance in stubs); a comment may span lines. A quoted source line ('> …') is the
    article's own text: a "<!--" in it starts no comment."""
    result: list[tuple[int, str]] = []
    in_comment = False
    for number, line in body:
        if not in_comment and line.lstrip().startswith(">"):
            result.append((number, line.rstrip()))
            continue
        kept = ""
        rest = line
        while rest:
            if in_comment:
                end = rest.find("-->")
                if end < 0:
                    rest = ""
                else:
                    in_comment, rest = False, rest[end + 3 :]
            else:
                start = rest.find("<!--")
                if start < 0:
                    kept, rest = kept + rest, ""
                else:
                    kept, rest, in_comment = kept + rest[:start], rest[start + 4 :], True
        if kept.strip() or not line.strip():
            result.append((number, kept.rstrip()))
    return result


def split_sections(path: Path, body: list[tuple[int, str]], problems: list[ContentError]) -> dict[str, Section]:
    sections: dict[str, Section] = {}
    current: Section | None = None
    for number, line in without_comments(body):
        if line.startswith("## "):
            title = line[3:].strip()
            name = SECTION_ALIASES.get(title.lower())
            if name is None:
                problems.append(
                    ContentError(
                        path,
                        f"unknown section '{title}'",
                        line=number,
                        hint=f"use one of: {', '.join(sorted(set(SECTION_ALIASES) - set(SECTION_ALIASES.values())))}",
                    )
                )
                current = None
                continue
            if name in sections:
                problems.append(ContentError(path, f"section '{title}' appears twice", field=name, line=number))
            current = sections[name] = Section(name, number)
        elif current is not None:
            current.lines.append((number, line))
        elif line.strip():
            problems.append(
                ContentError(
                    path,
                    "text outside any '## ' section",
                    line=number,
                    hint="put it under one of the documented section headings",
                )
            )
    return sections


def machine_draft_marker(model: str, day: date) -> str:
    """The marker line the drafting assistant writes above what a model drafted (an editor deletes it on review)."""
    safe_model = re.sub(r"\s+|-->|<!--", "_", model) or "unknown"
    return (
        f"<!-- machine-draft model={safe_model} date={day.isoformat()}: review it, then delete this line "
        "(or run briefing approve) -->"
    )


def section_headings(body: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Every '## ' heading outside comments as (line, section name or '' when unknown)."""
    return [
        (number, SECTION_ALIASES.get(line[3:].strip().lower(), ""))
        for number, line in without_comments(body)
        if line.startswith("## ")
    ]


def parse_machine_drafts(parsed: ParsedFile, body: list[tuple[int, str]]) -> tuple[MachineDraft, ...]:
    """The machine-draft markers, each tied to the section and, under notes or translation, the note or block."""
    markers = [(number, match) for number, line in body if (match := MACHINE_DRAFT_LINE.match(line))]
    if not markers:
        return ()
    headings = section_headings(body)
    drafts: list[MachineDraft] = []
    for number, match in markers:
        section = next((name for line, name in reversed(headings) if line < number), "")
        if section not in DRAFTABLE_SECTIONS:
            parsed.problems.append(
                ContentError(
                    parsed.path,
                    "a machine-draft marker outside the sections a model can draft",
                    line=number,
                    hint=f"keep it under one of: {', '.join(DRAFTABLE_SECTIONS)}, or delete it",
                )
            )
            continue
        item = ""
        if section in ("notes", "translation"):
            owner = parsed.sections[section]
            heads = [(n, head) for n, head, _ in subsections(owner.lines) if owner.heading_line < n < number]
            item = note_heading(heads[-1][1])[0] if section == "notes" and heads else (heads[-1][1] if heads else "")
        attrs = match.group("attrs")
        model, day = MARKER_MODEL.search(attrs), MARKER_DATE.search(attrs)
        drafts.append(
            MachineDraft(
                section=section,
                item=item,
                model=model.group(1).rstrip(":") if model else "",
                drafted=day.group(1) if day else "",
                line=number,
            )
        )
    return tuple(drafts)


def paragraphs_of(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Join consecutive non-blank lines into paragraphs; keep the first line number of each."""
    result: list[tuple[int, str]] = []
    start = 0
    buffer: list[str] = []
    for number, line in [*lines, (0, "")]:
        if line.strip():
            if not buffer:
                start = number
            buffer.append(line.strip())
        elif buffer:
            result.append((start, "\n".join(buffer)))
            buffer = []
    return result


def join_lines(text: str) -> str:
    """The lines of one paragraph as one line (see CJK): "\n" joins with nothing between CJK, a space otherwise."""
    if "\n" not in text:
        return text
    parts = text.split("\n")
    joined = parts[0]
    for part in parts[1:]:
        gap = "" if joined and part and CJK.match(joined[-1]) and CJK.match(part[0]) else " "
        joined += gap + part
    return joined


def note_heading(heading: str) -> tuple[str, str]:
    """(audience id, hook) of a note's `### ` heading."""
    match = NOTE_HEADING.match(heading.strip())
    if match is None:
        return heading.strip().lower(), ""
    return match.group("id").lower(), (match.group("hook") or "").strip()


def subsections(lines: list[tuple[int, str]]) -> list[tuple[int, str, list[tuple[int, str]]]]:
    result: list[tuple[int, str, list[tuple[int, str]]]] = []
    for number, line in lines:
        if line.startswith("### "):
            result.append((number, line[4:].strip(), []))
        elif result:
            result[-1][2].append((number, line))
    return result


def single_text(parsed: ParsedFile, name: str) -> str:
    section = parsed.sections.get(name)
    if section is None:
        return ""
    return " ".join(join_lines(text) for _, text in paragraphs_of(section.lines)).strip()


def parse_core_points(parsed: ParsedFile) -> tuple[CorePoint, ...]:
    section = parsed.sections.get("core_points")
    if section is None:
        return ()
    points: list[CorePoint] = []
    for number, text in _list_items(section.lines, bullet=("- ", "* ")):
        match = CORE_POINT.match(text)
        if not match or not match.group(2).strip():
            parsed.problems.append(
                ContentError(
                    parsed.path,
                    "a core point needs a bold lead and an explanation",
                    field="core_points",
                    line=number,
                    hint="write it as '- **Lead** explanation'",
                )
            )
            continue
        points.append(CorePoint(lead=match.group(1).strip(), explanation=match.group(2).strip()))
    return tuple(points)


def _list_items(
    lines: list[tuple[int, str]], bullet: tuple[str, ...] = (), numbered: bool = False
) -> list[tuple[int, str]]:
    """List items with continuation lines folded in (indented or not, until a blank line or next item)."""
    items: list[tuple[int, str]] = []
    for number, line in lines:
        stripped = line.strip()
        is_item = stripped.startswith(bullet) if bullet else False
        if numbered and PROMPT.match(stripped):
            is_item = True
        if is_item:
            items.append((number, stripped))
        elif stripped and items:
            items[-1] = (items[-1][0], items[-1][1] + " " + stripped)
    return items


def parse_notes(parsed: ParsedFile) -> tuple[AudienceNote, ...]:
    """Each `### <audience>[ · hook]` note, in lead form (a bold lead plus free paragraphs) or in structured form
    (Means:/Next: lines); its first non-blank line decides which."""
    section = parsed.sections.get("notes")
    if section is None:
        return ()
    notes: list[AudienceNote] = []
    for number, heading, lines in subsections(section.lines):
        audience, hook = note_heading(heading)
        first = next((line.strip() for _, line in lines if line.strip()), "")
        if NOTE_LEAD.match(first):
            lead, paragraphs = _lead_form(lines)
            notes.append(AudienceNote(audience=audience, lead=lead, paragraphs=paragraphs, hook=hook, line=number))
        else:
            fields = _structured_form(parsed, audience, lines)
            notes.append(
                AudienceNote(
                    audience=audience,
                    meaning=fields.get("meaning", ""),
                    next_step=fields.get("next_step", ""),
                    hook=hook,
                    line=number,
                )
            )
    return tuple(notes)


def _lead_form(lines: list[tuple[int, str]]) -> tuple[str, tuple[str, ...]]:
    """The lead (exactly as written between the first `**` pair) and the paragraphs; a "Means:" or "下一步：" in this
    form is text, never a label."""
    blocks = [join_lines(text) for _, text in paragraphs_of(lines)]
    match = NOTE_LEAD.match(blocks[0])
    if match is None:  # the caller checked the first line
        return "", tuple(blocks)
    rest = match.group("rest").strip()
    paragraphs = [rest, *blocks[1:]] if rest else blocks[1:]
    return match.group("lead").strip(), tuple(paragraphs)


def _structured_form(parsed: ParsedFile, audience: str, lines: list[tuple[int, str]]) -> dict[str, str]:
    fields: dict[str, str] = {}
    current = ""
    for line_no, line in lines:
        match = NOTE_LINE.match(line.strip())
        if match:
            current = NOTE_LABELS[match.group(1).lower()]
            fields[current] = match.group(2).strip()
        elif line.strip() and current:
            fields[current] = join_lines(fields[current] + "\n" + line.strip()).strip()
        elif line.strip():
            parsed.problems.append(
                ContentError(
                    parsed.path,
                    "a note starts with a bold lead ('**…**') or with 'Means:'/'Next:'",
                    field=f"notes.{audience}",
                    line=line_no,
                    hint="write '**对 X 意味着什么、下一步怎么用** text…' (free paragraphs follow), "
                    "or 'Means: …' and 'Next: …' lines",
                )
            )
    return fields


def parse_prompts(parsed: ParsedFile) -> tuple[str, ...]:
    section = parsed.sections.get("prompts")
    if section is None:
        return ()
    prompts = []
    for _number, text in _list_items(section.lines, numbered=True):
        match = PROMPT.match(text)
        if match:
            prompts.append(match.group(2).strip())
    return tuple(prompts)


def parse_translation(parsed: ParsedFile) -> tuple[AlignedParagraph, ...]:
    section = parsed.sections.get("translation")
    if section is None:
        return ()
    blocks: list[AlignedParagraph] = []
    for number, block_id, lines in subsections(section.lines):
        match = BLOCK_ID.match(block_id)
        if not match:
            parsed.problems.append(
                ContentError(
                    parsed.path,
                    f"'{block_id}' is not a paragraph id",
                    field="translation",
                    line=number,
                    hint="keep the '### p01-…' headings exactly as the stub wrote them",
                )
            )
            continue
        kind = ParagraphKind(match.group(1))
        blocks.append(_block(parsed, number, block_id, kind, lines))
    return tuple(blocks)


def _quoted(line: str) -> str:
    """A source line without its '>' marker and the one space after it (code keeps its indentation)."""
    text = line.lstrip()[1:]
    return text[1:] if text.startswith(" ") else text


def _block(
    parsed: ParsedFile, number: int, block_id: str, kind: ParagraphKind, lines: list[tuple[int, str]]
) -> AlignedParagraph:
    verbatim = kind in (ParagraphKind.CODE, ParagraphKind.TABLE)
    quoted = [_quoted(ln) for _, ln in lines if ln.strip().startswith(">")]
    source_lines = quoted if verbatim else [ln.strip() for ln in quoted]
    translation_lines = [(n, ln) for n, ln in lines if not ln.strip().startswith(">")]
    if kind is ParagraphKind.TABLE:
        translation = "\n".join(t.strip() for _, t in paragraphs_of(translation_lines))
    else:
        translation = "\n\n".join(join_lines(t) for _, t in paragraphs_of(translation_lines))
    image_src = image_alt = label = ""
    if kind is ParagraphKind.IMAGE and source_lines:
        image = IMAGE_MD.match(source_lines[0])
        if image:
            image_alt, image_src = ALT_ESCAPE.sub(r"\1", image.group(1)), image.group(2)
            source_lines = source_lines[1:] or [image_alt]
    if verbatim:
        while source_lines and not source_lines[-1].strip():
            source_lines.pop()
        source = "\n".join(source_lines)
    else:
        source = " ".join(x for x in source_lines if x)
    if kind is ParagraphKind.FOOTNOTE:
        label, source, translation = _footnote_parts(parsed, number, block_id, source, translation)
    return AlignedParagraph(
        id=block_id,
        kind=kind,
        source=source,
        translation=translation,
        image_src=image_src,
        image_alt=image_alt,
        footnote_label=label,
        line=number,
    )


def _footnote_parts(
    parsed: ParsedFile, number: int, block_id: str, source: str, translation: str
) -> tuple[str, str, str]:
    """A footnote block's label and texts without their `[^label]: ` prefixes (the translation repeats the
    source's label). A footnote written without a label (older files) keeps its text and gets no label."""
    found = FOOTNOTE_DEF.match(source)
    if found is None:
        return "", source, translation
    label, text = found.group(1), found.group(2).strip()
    if translation:
        again = FOOTNOTE_DEF.match(translation)
        if again is None or again.group(1) != label:
            parsed.problems.append(
                ContentError(
                    parsed.path,
                    f"the translation of footnote {block_id} must start with '[^{label}]: ' like its source",
                    field="translation",
                    line=number,
                    hint=f"write it as '[^{label}]: …'",
                )
            )
        else:
            translation = again.group(2).strip()
    return label, text, translation


def mark_untranslated(
    parsed: ParsedFile, body: list[tuple[int, str]], blocks: tuple[AlignedParagraph, ...]
) -> tuple[AlignedParagraph, ...]:
    """Blocks with an `<!-- untranslated: reason -->` line under their heading. Comments are gone from the parsed
    sections, so the markers are read from the raw body and tied to the block heading above them."""
    markers = [(number, match) for number, line in body if (match := UNTRANSLATED_LINE.match(line))]
    if not markers:
        return blocks
    result = list(blocks)
    for number, match in markers:
        position = next((i for i in range(len(result) - 1, -1, -1) if (result[i].line or 0) < number), None)
        block = result[position] if position is not None else None
        if block is None or not _in_section(parsed, "translation", number):
            parsed.problems.append(
                ContentError(
                    parsed.path,
                    "an untranslated marker outside a translation block",
                    line=number,
                    hint="put it on the line under a block's '### id' heading, or delete it",
                )
            )
            continue
        assert position is not None
        if block.kind.value not in UNTRANSLATABLE_KINDS:
            parsed.problems.append(
                ContentError(
                    parsed.path,
                    f"block {block.id} is prose ({block.kind.value}): it cannot be marked untranslated",
                    field="translation",
                    line=number,
                    hint="translate it, or set status: draft until it is",
                )
            )
            continue
        if block.translation:
            parsed.problems.append(
                ContentError(
                    parsed.path,
                    f"block {block.id} is marked untranslated and has a translation",
                    field="translation",
                    line=number,
                    hint="keep one of them",
                )
            )
            continue
        result[position] = block.model_copy(
            update={"untranslated": True, "untranslated_reason": (match.group("reason") or "").strip()}
        )
    return tuple(result)


def _in_section(parsed: ParsedFile, name: str, number: int) -> bool:
    section = parsed.sections.get(name)
    if section is None or number < section.heading_line:
        return False
    later = [s.heading_line for s in parsed.sections.values() if s.heading_line > section.heading_line]
    return number < min(later, default=1 << 30)


def parse_discussion(parsed: ParsedFile) -> tuple[DiscussionEntry, ...]:
    section = parsed.sections.get("discussion")
    if section is None:
        return ()
    entries = []
    for number, heading, lines in subsections(section.lines):
        match = DISCUSSION_HEAD.match(heading)
        if not match:
            parsed.problems.append(
                ContentError(
                    parsed.path,
                    f"discussion entry heading '{heading}' needs a date",
                    field="discussion",
                    line=number,
                    hint="write it as '### 2026-06-05 · Name'",
                )
            )
            continue
        try:
            day = date.fromisoformat(match.group(1))
        except ValueError:
            parsed.problems.append(
                ContentError(
                    parsed.path,
                    f"'{match.group(1)}' is not a real date",
                    field="discussion",
                    line=number,
                    hint="use YYYY-MM-DD",
                )
            )
            continue
        text = "\n\n".join(t for _, t in paragraphs_of(lines))
        entries.append(DiscussionEntry(date=day, author=(match.group(2) or "").strip(), text=text))
    return tuple(entries)


def parse_briefing_file(path: Path) -> tuple[Briefing | None, Briefing | None, list[ContentError]]:
    """Parse one briefing file. Returns the briefing (None when it cannot be built) and all problems found."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return (
            None,
            None,
            [ContentError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})", hint="save the file as UTF-8")],
        )
    briefing, partial, problems = _parse_text(path, text)
    return briefing, partial, control_character_problems(path, text) + problems


def control_character_problems(path: Path, text: str) -> list[ContentError]:
    """Every control character (NUL, ESC, DEL, C1, U+2028 …) with its line and the field it sits in."""
    lines = LINE_END.split(text)
    found = list(forbidden_characters(text))
    problems = [
        ContentError(
            path,
            f"{describe(char)} at column {column}: emails, headers and the archive cannot carry control characters",
            field=_field_at(lines, number),
            line=number,
            hint="delete it (most editors do not show it); a ready briefing that has one is held back",
        )
        for number, column, char in found[:MAX_CHARACTER_PROBLEMS]
    ]
    if len(found) > MAX_CHARACTER_PROBLEMS:
        problems.append(
            ContentError(path, f"… and {len(found) - MAX_CHARACTER_PROBLEMS} more control characters", line=None)
        )
    return problems


def _field_at(lines: list[str], number: int) -> str:
    """The front matter key or the section (`notes.atou` for an audience note) that line `number` belongs to."""
    closing = 0
    if lines[0].strip() == "---":
        closing = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), 0)
    index = number - 1
    if index <= closing:
        for line in reversed(lines[1 : index + 1]):
            match = FRONT_MATTER_KEY.match(line)
            if match:
                return match.group(1)
        return "front matter"
    section, sub = "", ""
    for line in lines[closing + 1 : index + 1]:
        if line.startswith("## "):
            title = line[3:].strip()
            section, sub = SECTION_ALIASES.get(title.lower(), title), ""
        elif line.startswith("### "):
            sub = line[4:].strip()
    if section == "notes" and sub:
        return f"notes.{note_heading(sub)[0]}"
    return section or "body"


def _parse_text(path: Path, text: str) -> tuple[Briefing | None, Briefing | None, list[ContentError]]:
    try:
        meta, body = split_front_matter(path, text)
    except ContentError as err:
        return None, None, [err]
    problems: list[ContentError] = []
    parsed = ParsedFile(path=path, meta=meta, sections=split_sections(path, body, problems), problems=problems)
    fields = {
        "verdict": single_text(parsed, "verdict"),
        "judgement": single_text(parsed, "judgement"),
        "core_points": parse_core_points(parsed),
        "notes": parse_notes(parsed),
        "prompts": parse_prompts(parsed),
        "aligned": mark_untranslated(parsed, body, parse_translation(parsed)),
        "discussion": parse_discussion(parsed),
        "machine_drafts": parse_machine_drafts(parsed, body),
    }
    return _build_briefing(parsed, meta, fields)


def _build_briefing(
    parsed: ParsedFile, meta: dict[str, Any], fields: dict[str, Any]
) -> tuple[Briefing | None, Briefing | None, list[ContentError]]:
    """(briefing, partial, problems). When the front matter does not validate, `briefing` is None and `partial`
    carries the body with safe stand-ins for the bad keys, so the checker still reports the body's problems."""
    known = {"slug", "status", "date", "source", "article_id", "feed", "tags"}
    for key in meta:
        if key not in known:
            parsed.problems.append(
                ContentError(
                    parsed.path,
                    f"unknown front matter key '{key}'",
                    field=str(key),
                    line=2,
                    hint=f"known keys: {', '.join(sorted(known))}",
                )
            )
    data = {k: v for k, v in meta.items() if k in known}
    data.setdefault("slug", parsed.path.stem if parsed.path.name != "index.md" else parsed.path.parent.name)
    if isinstance(data.get("tags"), str):
        data["tags"] = [t.strip() for t in data["tags"].split(",") if t.strip()]
    try:
        briefing = Briefing(**data, **fields, path=str(parsed.path))
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            parsed.problems.append(
                ContentError(
                    parsed.path,
                    f"{err['msg']} (got {err.get('input')!r})",
                    field=loc,
                    line=_meta_line(parsed.path, loc.split(".")[0]),
                    hint=_hint_for(loc),
                )
            )
        return None, _partial_briefing(parsed.path, data, fields), parsed.problems
    return briefing, None, parsed.problems


def _partial_briefing(path: Path, data: dict[str, Any], fields: dict[str, Any]) -> Briefing:
    """A Briefing built without validation, only for cross-file checks of a file whose front matter is invalid."""
    status = data.get("status") if data.get("status") in ("draft", "ready") else "draft"
    return Briefing.model_construct(
        slug=str(data.get("slug") or path.stem),
        status=status,
        date=date.min,
        source=Source.model_construct(url="", title=""),
        feed=str(data.get("feed") or ""),
        article_id=str(data.get("article_id") or ""),
        tags=(),
        path=str(path),
        **fields,
    )


def _meta_line(path: Path, key: str) -> int | None:
    try:
        for number, line in enumerate(file_lines(path.read_text(encoding="utf-8")), start=1):
            if line.startswith(f"{key}:"):
                return number
    except OSError:
        return None
    return None


def _hint_for(loc: str) -> str:
    if loc.startswith("date") or loc.endswith("published"):
        return "write dates as YYYY-MM-DD"
    if loc.startswith("slug"):
        return "lower-case letters, digits and dashes only"
    if loc.startswith("status"):
        return "use 'draft' or 'ready'"
    if loc.startswith("source"):
        return "source needs url and title"
    return ""


class FrontMatterDumper(yaml.SafeDumper):
    """Safe YAML whose every value stays on its key's line: a string with a line break (including the ones YAML
    counts, NEL, LS and PS, which it would read back folded to a space) or a byte order mark is written
    double-quoted, where they are escapes. No value can then look like a '---' line or another key."""


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if YAML_BREAKS.search(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


FrontMatterDumper.add_representer(str, _represent_text)


def dump_yaml(meta: dict[str, Any]) -> str:
    """`meta` as YAML for a front matter block (FrontMatterDumper), keys in the given order."""
    return yaml.dump(meta, Dumper=FrontMatterDumper, allow_unicode=True, sort_keys=False, width=NO_LINE_WIDTH)


def dump_front_matter(meta: dict[str, Any]) -> str:
    return "---\n" + dump_yaml(meta) + "---\n"


def write_image(alt: str, src: str) -> str:
    """An image line of a translation block, as IMAGE_MD reads it back: "\\", "[" and "]" in the alt text get a
    backslash, and whitespace in the address is percent-encoded (an address is one token)."""
    escaped = alt.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    address = WHITESPACE.sub(lambda match: quote(match.group(0)), src)
    return f"![{escaped}]({address})"


def source_meta(source: Source) -> dict[str, Any]:
    return {k: v for k, v in source.model_dump(mode="json").items() if v}

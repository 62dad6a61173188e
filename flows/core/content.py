"""Load and check everything under content/: audiences, subscribers, feeds and briefings.

`load_content` reads every file and returns what loaded plus every problem found, so one bad file never
hides the others; it ends with `cross_check`, the cross-file rules (unknown audience or feed, missing notes)
that `briefing check` reports. `check_alignment` compares a translation with its stored article (the store is
needed, so `briefing check` runs it only when a store exists).
"""

from __future__ import annotations

import csv
import logging
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlsplit
from urllib.request import url2pathname

import yaml
from email_validator import EmailNotValidError, validate_email
from pydantic import ValidationError

from flows.core.briefing_format import FOOTNOTE_REF, UNTRANSLATABLE_KINDS, file_lines, parse_briefing_file
from flows.core.errors import Problem
from flows.core.models import (
    DEFAULT_SUBJECT,
    SUBJECT_PLACEHOLDERS,
    AlignedParagraph,
    Article,
    Audience,
    AudienceNote,
    Briefing,
    Content,
    Feed,
    MachineDraft,
    ParagraphKind,
    Subscriber,
)
from flows.core.safe_urls import web_url
from flows.core.text_safety import describe, first_forbidden

logger = logging.getLogger(__name__)

AUDIENCES_FILE = "audiences.yaml"
FEEDS_FILE = "feeds.yaml"
BRIEFINGS_DIR = "briefings"
FILE_FEED_HINT = (
    "move the file under the content folder (file:samples/x.xml) or list its folder in BRIEFING_FILE_FEED_DIRS"
)


@dataclass
class Loaded:
    content: Content
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


class LineDict(dict[Any, Any]):
    """A YAML mapping that remembers the line it starts on, so a bad row's problem can point at it."""

    line: int | None = None


class _LineLoader(yaml.SafeLoader):
    """Safe YAML whose mappings are LineDicts."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> Any:
    data = LineDict()
    data.line = node.start_mark.line + 1
    yield data
    data.update(loader.construct_mapping(node))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _mapping_with_line)


def line_of(item: Any) -> int | None:
    return item.line if isinstance(item, LineDict) else None


def _read_yaml(path: Path, problems: list[Problem]) -> Any:
    if not path.exists():
        problems.append(Problem(str(path), "file is missing", hint=_missing_file_hint(path)))
        return None
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)  # _LineLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(
            Problem(
                str(path),
                f"not valid YAML: {getattr(exc, 'problem', exc)}",
                line=mark.line + 1 if mark else None,
                hint="fix the indentation or quoting",
            )
        )
    except UnicodeDecodeError:
        problems.append(Problem(str(path), "not UTF-8 text", hint="save the file as UTF-8"))
    return None


def _missing_file_hint(path: Path) -> str:
    folder = path.parent
    if (folder / "content" / path.name).exists():
        return f"{folder} is a project folder: set BRIEFING_CONTENT_DIR={folder / 'content'}, or run from inside it"
    if not folder.is_dir():
        return (
            f"the content folder {folder} does not exist: run from a project folder (one with content/), "
            "set BRIEFING_CONTENT_DIR, or create a project with `briefing init DIR`"
        )
    return "create it; see docs/content-format.md"


def _entries(data: Any, key: str, path: Path, problems: list[Problem]) -> list[dict[str, Any]]:
    if data is None:
        return []
    items = data.get(key) if isinstance(data, dict) else data
    if not isinstance(items, list):
        problems.append(Problem(str(path), f"expected a list under '{key}:'", field=key))
        return []
    good = []
    for index, item in enumerate(items):
        if isinstance(item, dict):
            good.append(item)
        else:
            problems.append(
                Problem(str(path), f"entry {index + 1} is not a mapping", field=f"{key}[{index}]", line=line_of(items))
            )
    return good


def _validation_problems(path: Path, prefix: str, exc: ValidationError) -> list[Problem]:
    return [
        Problem(
            str(path),
            f"{err['msg']} (got {err.get('input')!r})",
            field=f"{prefix}." + ".".join(str(p) for p in err["loc"]),
        )
        for err in exc.errors()
    ]


def check_address(email: str) -> str:
    """Return the normalised address or raise ValueError with the reason (syntax only, no DNS)."""
    try:
        return validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


def read_subscribers(path: Path, problems: list[Problem]) -> tuple[Subscriber, ...]:
    """Read a CSV (email,name,locale) or YAML list of subscribers; bad rows are reported and skipped."""
    if not path.exists():
        problems.append(
            Problem(str(path), "subscribers file is missing", hint="create it or fix the path in audiences.yaml")
        )
        return ()
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "email" not in reader.fieldnames:
                problems.append(Problem(str(path), "CSV needs a header row with an 'email' column", line=1))
                return ()
            start = reader.line_num + 1  # a quoted field may span lines: report the line a row starts on
            for row in reader:
                rows.append((start, row))
                start = reader.line_num + 1
    else:
        data = _read_yaml(path, problems)
        rows = [(line_of(row) or 0, row) for row in _entries(data, "subscribers", path, problems)]
    return _valid_subscribers(path, rows, problems)


def _valid_subscribers(
    path: Path, rows: Iterable[tuple[int, dict[str, Any]]], problems: list[Problem]
) -> tuple[Subscriber, ...]:
    seen: set[str] = set()
    result: list[Subscriber] = []
    for line, row in rows:
        raw = str(row.get("email") or "").strip()
        try:
            email = check_address(raw)
        except ValueError as exc:
            problems.append(
                Problem(
                    str(path),
                    f"invalid email address {raw!r}: {exc}",
                    field="email",
                    line=line or None,
                    hint="fix or remove the row; the other subscribers are still sent",
                )
            )
            continue
        if email.lower() in seen:
            continue
        name = str(row.get("name") or "").strip()
        if not _header_safe(path, line, "name", name, problems):
            continue
        seen.add(email.lower())
        result.append(
            Subscriber(
                email=email,
                name=name,
                locale=(str(row["locale"]).strip() or None) if row.get("locale") else None,
            )
        )
    return tuple(result)


def _header_safe(path: Path, line: int, field: str, value: str, problems: list[Problem]) -> bool:
    """A subscriber's name goes into the To header: a line break or control character in it is reported and the
    row is left out (never sent half-built, never skipped silently)."""
    char = first_forbidden(value)
    if char is None:
        return True
    problems.append(
        Problem(
            str(path),
            f"subscriber {field} {value[:60]!r} contains {describe(char)}, which cannot go into an email header; "
            "this subscriber is not sent anything",
            field=field,
            line=line or None,
            hint="remove the line break or control character from the row",
        )
    )
    return False


def load_audiences(content_dir: Path, problems: list[Problem]) -> tuple[Audience, ...]:
    path = content_dir / AUDIENCES_FILE
    audiences: list[Audience] = []
    for index, entry in enumerate(_entries(_read_yaml(path, problems), "audiences", path, problems)):
        item = dict(entry)
        subscribers: tuple[Subscriber, ...] = ()
        spec = item.pop("subscribers", None)
        if isinstance(spec, str):
            item["subscribers_file"] = spec
            subscribers = read_subscribers(content_dir / spec, problems)
        elif isinstance(spec, list):
            rows = [(line_of(s) or 0, s) for s in spec if isinstance(s, dict)]
            subscribers = _valid_subscribers(path, rows, problems)
        try:
            audience = Audience(**item, subscribers=subscribers)
        except ValidationError as exc:
            problems.extend(_validation_problems(path, f"audiences[{index}]", exc))
            continue
        if any(a.id == audience.id for a in audiences):
            problems.append(
                Problem(str(path), f"audience id '{audience.id}' is defined twice", field=f"audiences[{index}].id")
            )
            continue
        for field_name in ("name", "subject_prefix", "subject"):  # they go into headers (List-Id, Subject)
            char = first_forbidden(getattr(audience, field_name))
            if char is not None:
                problems.append(
                    Problem(
                        str(path),
                        f"{field_name} contains {describe(char)}, which cannot go into an email header",
                        field=f"audiences[{index}].{field_name}",
                        line=line_of(entry),
                        hint="remove the line break or control character",
                    )
                )
        subject_problem = subject_template_problem(audience.subject)
        if subject_problem:
            problems.append(
                Problem(
                    str(path),
                    f"subject {audience.subject!r}: {subject_problem}",
                    field=f"audiences[{index}].subject",
                    line=line_of(entry),
                    hint=f"use the placeholders {', '.join('{' + p + '}' for p in SUBJECT_PLACEHOLDERS)}; "
                    "write a literal brace as {{ or }} (until then its emails use the default subject)",
                )
            )
            audience = audience.model_copy(update={"subject": DEFAULT_SUBJECT})
        audiences.append(audience)
    return tuple(audiences)


def subject_template_problem(template: str) -> str:
    """What is wrong with an audience's subject template ("" when nothing): unknown placeholders, bad braces."""
    try:
        fields = [name for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        return str(exc)
    unknown = sorted({name for name in fields if name not in SUBJECT_PLACEHOLDERS})
    if unknown:
        return f"unknown placeholder {', '.join('{' + n + '}' for n in unknown)}"
    if "verdict" not in fields:
        return "it needs {verdict}: the subject says what the briefing is about"
    if any(spec or conv for _, name, spec, conv in string.Formatter().parse(template) if name is not None):
        return "placeholders take no format spec or conversion"
    return ""


def load_feeds(content_dir: Path, problems: list[Problem]) -> tuple[Feed, ...]:
    path = content_dir / FEEDS_FILE
    feeds: list[Feed] = []
    for index, item in enumerate(_entries(_read_yaml(path, problems), "feeds", path, problems)):
        try:
            feed = Feed(**item, line=line_of(item))
        except ValidationError as exc:
            problems.extend(_validation_problems(path, f"feeds[{index}]", exc))
            continue
        scheme = urlparse(feed.url).scheme
        if scheme not in {"http", "https", "file"}:
            problems.append(
                Problem(str(path), f"feed URL {feed.url!r} must be http(s):// or file:", field=f"feeds[{index}].url")
            )
            continue
        if any(f.id == feed.id for f in feeds):
            problems.append(Problem(str(path), f"feed id '{feed.id}' is defined twice", field=f"feeds[{index}].id"))
            continue
        feeds.append(feed)
    return tuple(feeds)


def resolve_feed_url(feed: Feed, content_dir: Path) -> str:
    """`file:` URLs are relative to the content folder, so the shipped sample works from any clone."""
    if feed.url.startswith("file:"):
        raw = (
            feed.url[len("file:") :].lstrip("/") if not feed.url.startswith("file:///") else feed.url[len("file://") :]
        )
        path = Path(raw) if Path(raw).is_absolute() else (content_dir / raw)
        return path.resolve().as_uri()
    return feed.url


def file_feed_refusal(feed: Feed, content_dir: Path, allowed_dirs: Sequence[Path] = ()) -> str | None:
    """Why a `file:` feed may not be read (None when it may): its file, symlinks followed, must be inside the
    content folder or a folder of BRIEFING_FILE_FEED_DIRS."""
    if not feed.url.startswith("file:"):
        return None
    target = Path(url2pathname(urlsplit(resolve_feed_url(feed, content_dir)).path))
    roots = [content_dir.resolve(), *(Path(d).expanduser().resolve() for d in allowed_dirs)]
    if any(target.is_relative_to(root) for root in roots):
        return None
    return (
        f"feed '{feed.id}': {feed.url} reads {target}, outside the content folder {roots[0]}; file: feeds may "
        "only read the content folder and the folders listed in BRIEFING_FILE_FEED_DIRS"
    )


def file_feed_problems(feeds: Iterable[Feed], content_dir: Path, allowed_dirs: Sequence[Path] = ()) -> list[Problem]:
    """`briefing check`'s report of `file:` feeds that ingest would refuse (see `file_feed_refusal`)."""
    problems = []
    for index, feed in enumerate(feeds):
        refusal = file_feed_refusal(feed, content_dir, allowed_dirs)
        if refusal:
            problems.append(
                Problem(
                    str(content_dir / FEEDS_FILE),
                    refusal,
                    field=f"feeds[{index}].url",
                    line=feed.line,
                    hint=FILE_FEED_HINT,
                )
            )
    return problems


def briefing_files(content_dir: Path) -> list[Path]:
    folder = content_dir / BRIEFINGS_DIR
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("*.md") if not p.name.startswith(".")]
    files += [p / "index.md" for p in folder.iterdir() if p.is_dir() and (p / "index.md").exists()]
    return sorted(files)


def load_briefings(
    content_dir: Path, problems: list[Problem], unreadable: list[Briefing] | None = None
) -> tuple[Briefing, ...]:
    """The valid briefings, newest first. Files whose front matter is invalid are skipped (their problems are
    reported); their bodies go to `unreadable` so the cross-file checks can still report what else is wrong."""
    briefings: dict[str, Briefing] = {}
    for path in briefing_files(content_dir):
        briefing, partial, errors = parse_briefing_file(path)
        problems.extend(Problem.from_error(e) for e in errors)
        if briefing is None:
            logger.warning("skipping %s: it could not be read", path)
            if partial is not None and unreadable is not None:
                unreadable.append(partial)
            continue
        other = briefings.get(briefing.slug)
        if other is not None:
            problems.append(
                Problem(
                    str(path),
                    f"slug '{briefing.slug}' is already used by {other.path}",
                    field="slug",
                    hint="give one of the two briefings another slug",
                )
            )
            continue
        briefings[briefing.slug] = briefing
    return tuple(sorted(briefings.values(), key=lambda b: (b.date, b.slug), reverse=True))


def load_content(content_dir: Path) -> Loaded:
    """Read every content file; never raises for bad content, returns the problems instead."""
    problems: list[Problem] = []
    audiences = load_audiences(content_dir, problems)
    feeds = load_feeds(content_dir, problems)
    unreadable: list[Briefing] = []
    briefings = load_briefings(content_dir, problems, unreadable)
    content = Content(audiences=audiences, feeds=feeds, briefings=briefings)
    problems.extend(cross_check(content, unreadable))
    return Loaded(content=content, problems=problems)


def cross_check(content: Content, unreadable: list[Briefing] | None = None) -> list[Problem]:
    problems: list[Problem] = []
    audience_ids = {a.id for a in content.audiences}
    feed_ids = {f.id for f in content.feeds}
    for briefing in (*content.briefings, *(unreadable or ())):
        problems.extend(check_briefing(briefing, audience_ids, feed_ids))
    return problems


def check_briefing(briefing: Briefing, audience_ids: set[str], feed_ids: set[str]) -> list[Problem]:
    path = briefing.path
    problems: list[Problem] = []
    for note in briefing.notes:
        if note.audience not in audience_ids:
            problems.append(
                Problem(
                    path,
                    f"unknown audience id '{note.audience}'",
                    field=f"notes.{note.audience}",
                    line=note.line,
                    hint=f"use one of: {', '.join(sorted(audience_ids))}",
                )
            )
    if briefing.feed and briefing.feed not in feed_ids:
        problems.append(
            Problem(
                path,
                f"unknown feed '{briefing.feed}'",
                field="feed",
                hint=f"use a feed id from feeds.yaml: {', '.join(sorted(feed_ids))}",
            )
        )
    if briefing.source.url and not web_url(briefing.source.url, ""):
        problems.append(
            Problem(
                path,
                f"source url {briefing.source.url!r} is not an http(s) address: emails and the archive show no link",
                field="source.url",
                line=_source_url_line(path),
                severity="warning",
                hint="write the article's address, starting with https://",
            )
        )
    seen_ids: set[str] = set()
    for block in briefing.aligned:
        if block.id in seen_ids:
            problems.append(
                Problem(path, f"paragraph id '{block.id}' appears twice", field="translation", line=block.line)
            )
        seen_ids.add(block.id)
    problems.extend(footnote_problems(briefing))
    if briefing.status == "ready":
        problems.extend(_ready_rules(briefing, audience_ids))
    return problems


def _source_url_line(path: str) -> int | None:
    try:
        lines = file_lines(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return next((n for n, line in enumerate(lines, start=1) if line.strip().startswith("url:")), None)


def _ready_rules(briefing: Briefing, audience_ids: set[str]) -> list[Problem]:
    path = briefing.path
    problems: list[Problem] = []
    hint_ready = "complete it, or set status: draft until it is"
    for name, value in (("verdict", briefing.verdict), ("judgement", briefing.judgement)):
        if not value.strip():
            problems.append(Problem(path, f"{name} is empty", field=name, hint=hint_ready))
    if not briefing.core_points:
        problems.append(Problem(path, "no core points", field="core_points", hint=hint_ready))
    if not briefing.prompts:
        problems.append(Problem(path, "no discussion prompts", field="prompts", hint=hint_ready))
    for audience_id in sorted(audience_ids):
        note = briefing.note_for(audience_id)
        if note is None:
            problems.append(
                Problem(
                    path,
                    f"missing audience note for '{audience_id}'",
                    field=f"notes.{audience_id}",
                    hint=f"add '### {audience_id}' with 'Means:' and 'Next:' under the audience notes",
                )
            )
            continue
        problems.extend(_note_rules(path, audience_id, note, hint_ready))
    problems.extend(unreviewed_drafts(briefing))
    if not briefing.aligned:
        problems.append(Problem(path, "no translation", field="translation", hint=hint_ready))
    for block in briefing.aligned:
        if block.kind is ParagraphKind.CODE and block.translation.strip():
            problems.append(
                Problem(
                    path,
                    f"code block {block.id} has text under it: code is never translated",
                    field="translation",
                    line=block.line,
                    hint="delete the text under the quoted code",
                )
            )
        elif block.needs_translation and not block.translation.strip():
            optional = block.kind.value in UNTRANSLATABLE_KINDS
            problems.append(
                Problem(
                    path,
                    f"paragraph {block.id} has no translation",
                    field="translation",
                    line=block.line,
                    hint=hint_ready + (" (or mark it '<!-- untranslated: why -->')" if optional else ""),
                )
            )
    return problems


def _note_rules(path: str, audience_id: str, note: AudienceNote, hint_ready: str) -> list[Problem]:
    """A ready note: lead form needs a lead and a paragraph; structured form needs Means: and Next:."""
    where = f"notes.{audience_id}"

    def problem(message: str, hint: str = hint_ready, severity: str = "error") -> Problem:
        return Problem(path, message, field=where, line=note.line, hint=hint, severity=severity)

    if note.lead_form:
        parts = (("bold lead", bool(note.lead)), ("paragraph after its lead", bool(note.paragraphs)))
        return [problem(f"audience note for '{audience_id}' has no {what}") for what, present in parts if not present]
    problems = [
        problem(f"audience note for '{audience_id}' has no '{label}:' text")
        for label, value in (("Means", note.meaning), ("Next", note.next_step))
        if not value.strip()
    ]
    if note.next_step.startswith(("下一步", "Next step")):
        problems.append(
            problem(
                f"the 'Next:' text of '{audience_id}' starts with the label the email adds ('{note.next_step[:6]}…')",
                hint="write it without, or write the note in lead form ('**lead** text…')",
                severity="warning",
            )
        )
    return problems


def footnote_problems(briefing: Briefing) -> list[Problem]:
    """Every `[^label]` marker resolves to a footnote block; a translation carries the same markers as its source;
    labels are unique; a footnote nobody points to is a warning."""
    path = briefing.path
    problems: list[Problem] = []
    labels: dict[str, AlignedParagraph] = {}
    for note in briefing.footnotes:
        if not note.footnote_label:
            continue
        if note.footnote_label in labels:
            first = labels[note.footnote_label].id
            message = f"footnote label [^{note.footnote_label}] is used by two footnotes ({first}, {note.id})"
            problems.append(Problem(path, message, field="translation", line=note.line))
        labels.setdefault(note.footnote_label, note)
    used: set[str] = set()
    for block in briefing.aligned:
        source = FOOTNOTE_REF.findall(block.source)
        used.update(source)
        for label in sorted(set(source) | set(FOOTNOTE_REF.findall(block.translation))):
            if label not in labels:
                problems.append(
                    Problem(
                        path,
                        f"block {block.id} points to footnote [^{label}], which no footnote block defines",
                        field="translation",
                        line=block.line,
                        hint=f"add a footnote block whose text starts with '[^{label}]: ', or fix the marker",
                    )
                )
        if block.translation and not block.untranslated:
            mine, theirs = sorted(FOOTNOTE_REF.findall(block.translation)), sorted(source)
            if mine != theirs:
                problems.append(
                    Problem(
                        path,
                        f"the translation of {block.id} has footnote markers {mine}, its source {theirs}",
                        field="translation",
                        line=block.line,
                        hint="put the same [^label] markers in the translation",
                    )
                )
    for label, note in labels.items():
        if label not in used:
            message = f"footnote [^{label}] ({note.id}) is not referenced by any block"
            problems.append(Problem(path, message, field="translation", line=note.line, severity="warning"))
    return problems


DRAFT_PART_NAMES = {
    "verdict": "verdict",
    "judgement": "judgement",
    "core_points": "core points",
    "notes": "audience notes",
    "prompts": "discussion prompts",
    "translation": "translation",
}


def unreviewed_drafts(briefing: Briefing) -> list[Problem]:
    """The review gate: one error per machine-drafted section or audience note still marked, one for the blocks
    of the translation. A `ready` briefing with any is refused by `briefing check` and held back from sending."""
    groups: dict[str, list[MachineDraft]] = {}
    for draft in briefing.machine_drafts:
        groups.setdefault("translation" if draft.section == "translation" else draft.name, []).append(draft)
    problems = []
    for name, drafts in groups.items():
        first = drafts[0]
        section, _, item = name.partition(".")
        what = f"audience note for '{item}'" if item else DRAFT_PART_NAMES.get(section, section)
        if section == "translation" and any(d.item for d in drafts):
            ids = [d.item or "(whole section)" for d in drafts]
            shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            what = f"translation of {len(ids)} block{'s' if len(ids) > 1 else ''} ({shown})"
        origin = ", ".join(x for x in (first.model, first.drafted) if x) or "model and date not given"
        problems.append(
            Problem(
                briefing.path,
                f"machine draft not reviewed: {what} ({origin})",
                field=name,
                line=first.line,
                hint="read and correct it, then delete its '<!-- machine-draft … -->' line"
                f"{'s' if len(drafts) > 1 else ''}, or run `briefing approve {briefing.slug} --section {name}`",
            )
        )
    return problems


def check_alignment(briefing: Briefing, article: Article) -> list[Problem]:
    """The translation must have exactly the source article's paragraph ids, in order."""
    expected = [p.id for p in article.paragraphs]
    actual = [b.id for b in briefing.aligned]
    if expected == actual:
        return []
    missing = [i for i in expected if i not in actual]
    extra = [i for i in actual if i not in expected]
    detail = []
    if len(expected) != len(actual):
        detail.append(f"the source has {len(expected)} paragraphs, the translation {len(actual)}")
    if missing:
        detail.append(f"missing {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    if extra:
        detail.append(f"not in the source {', '.join(extra[:5])}{' …' if len(extra) > 5 else ''}")
    if not missing and not extra:
        detail.append("the paragraphs are out of order")
    return [
        Problem(
            briefing.path,
            "translation does not match the source article: " + "; ".join(detail),
            field="translation",
            hint="the source changed since the stub was written: move this file aside, run `briefing add URL` for a "
            "fresh stub with the new '### …' ids, and copy your translations into it",
        )
    ]

"""Typed models: the contract between stages (ingest → store → join → render → deliver/publish)."""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

AUDIENCE_ID_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,99}$"
DEFAULT_SUBJECT = "{prefix}{verdict}"
SUBJECT_PLACEHOLDERS = ("prefix", "name", "verdict", "hook")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Feed(Frozen):
    """One entry of content/feeds.yaml."""

    id: str = Field(pattern=AUDIENCE_ID_PATTERN)
    url: str
    title: str = ""
    fulltext: bool | None = None  # None: decide per entry by the teaser threshold
    line: int | None = Field(None, exclude=True)  # where it is in feeds.yaml, for messages


class Subscriber(Frozen):
    email: str
    name: str = ""
    locale: str | None = None


class AudienceProfile(Frozen):
    """Who an audience is, what they care about and what a "next step" means for them (drafting reads it)."""

    who: str = ""
    cares_about: tuple[str, ...] = ()
    next_step: str = ""

    @field_validator("cares_about", mode="before")
    @classmethod
    def _one_line_is_a_list_of_one(cls, value: object) -> object:
        return (value,) if isinstance(value, str) else value


class Audience(Frozen):
    """One reader group: ATou, Neta, Uota, investors."""

    id: str = Field(pattern=AUDIENCE_ID_PATTERN)
    name: str
    locale: str = "zh-CN"
    description: str = ""
    profile: AudienceProfile | None = None
    subject_prefix: str = ""
    # The subject line; placeholders {prefix} (subject_prefix), {name}, {verdict} and {hook} (the note's hook).
    subject: str = DEFAULT_SUBJECT
    show_other_notes: bool = False
    subscribers: tuple[Subscriber, ...] = ()
    subscribers_file: str | None = None


class ParagraphKind(StrEnum):
    TEXT = "p"
    HEADING = "h"
    IMAGE = "img"
    FOOTNOTE = "fn"
    QUOTE = "q"
    CODE = "code"
    TABLE = "table"


def normalise_text(text: str) -> str:
    r"""NFKC, whitespace runs collapsed to one space, trimmed. split()/join() is the same as re.sub(r"\s+")
    plus strip() (both use str.isspace), ≈6× faster; paragraph ids and fingerprints hash its output."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def paragraph_id(kind: ParagraphKind, position: int, text: str) -> str:
    """Stable id: kind, position and a hash of the normalised text (alignment key for translations)."""
    digest = hashlib.sha1(normalise_text(text).encode("utf-8")).hexdigest()[:8]
    return f"{kind.value}{position:02d}-{digest}"


class Paragraph(Frozen):
    id: str
    kind: ParagraphKind = ParagraphKind.TEXT
    text: str
    image_src: str = ""
    image_alt: str = ""
    footnote_number: int | None = None


def make_paragraphs(
    items: Sequence[tuple[ParagraphKind, str, str] | tuple[ParagraphKind, str, str, str]],
) -> tuple[Paragraph, ...]:
    """Build paragraphs with stable ids from (kind, text, image_src[, image_alt]) tuples; positions count from 1."""
    paragraphs = []
    footnotes = 0
    for position, item in enumerate(items, start=1):
        kind, text, src = item[0], item[1], item[2]
        alt = item[3] if len(item) > 3 else ""
        number = None
        if kind is ParagraphKind.FOOTNOTE:
            footnotes += 1
            number = footnotes
        paragraphs.append(
            Paragraph(
                id=paragraph_id(kind, position, text + src),
                kind=kind,
                text=text,
                image_src=src,
                image_alt=alt,
                footnote_number=number,
            )
        )
    return tuple(paragraphs)


class Article(Frozen):
    """A source article as ingested and stored."""

    id: str
    url: str
    title: str
    site: str = ""
    author: str = ""
    published: datetime | None = None
    feed_id: str = ""
    summary: str = ""
    content_html: str = ""  # sanitised
    paragraphs: tuple[Paragraph, ...] = ()
    fingerprint: str = ""


class Source(Frozen):
    url: str
    title: str
    site: str = ""
    author: str = ""
    published: date | None = None


class CorePoint(Frozen):
    lead: str
    explanation: str


class AudienceNote(Frozen):
    """One audience's note, in one of two forms: a bold `lead` plus free `paragraphs` (as editors write a briefing
    page), or the structured `meaning` + `next_step` (Means:/Next:). `hook` is the text after the audience id in
    the note's heading (`### atou · hook`), for the subject line."""

    audience: str
    meaning: str = ""
    next_step: str = ""
    lead: str = ""
    paragraphs: tuple[str, ...] = ()
    hook: str = ""
    line: int | None = Field(None, exclude=True)

    @property
    def lead_form(self) -> bool:
        return bool(self.lead or self.paragraphs)

    @property
    def first_paragraph(self) -> str:
        """The note's opening text: the first free paragraph (lead form) or the meaning (structured form)."""
        if self.lead_form:
            return self.paragraphs[0] if self.paragraphs else self.lead
        return self.meaning

    @property
    def texts(self) -> tuple[str, ...]:
        """Every curated text of the note, in order."""
        if self.lead_form:
            return (self.lead, *self.paragraphs) if self.lead else self.paragraphs
        return tuple(t for t in (self.meaning, self.next_step) if t)


class AlignedParagraph(Frozen):
    """One source block and its translation, aligned by the source paragraph id."""

    id: str
    kind: ParagraphKind
    source: str
    translation: str
    image_src: str = ""
    image_alt: str = ""
    # A block kept in its original language on purpose (`<!-- untranslated: reason -->` under its heading).
    untranslated: bool = False
    untranslated_reason: str = Field(default="", exclude=True)
    footnote_label: str = ""  # a footnote block's own label as the source writes it: "1", "*"
    line: int | None = Field(None, exclude=True)

    @property
    def needs_translation(self) -> bool:
        """Prose must be translated before `ready`; code never is; a table, an image without a file and no caption,
        and a block marked untranslated may stay in the original language."""
        if self.untranslated or self.kind in (ParagraphKind.CODE, ParagraphKind.TABLE):
            return False
        if self.kind is ParagraphKind.IMAGE:
            return bool(self.caption)
        return True

    @property
    def caption(self) -> str:
        """An image block's caption (empty when its text is only the image's description)."""
        if self.kind is not ParagraphKind.IMAGE or self.source == self.image_alt:
            return ""
        return self.source

    @property
    def shown_translation(self) -> str:
        """What the translation view shows: the translation, or the original for a block left untranslated."""
        return self.translation or self.source


class MachineDraft(Frozen):
    """A `<!-- machine-draft … -->` marker: this section (or note, or block) was written by a model and not reviewed.

    `item` is the audience id of a note or the block id of a translation block; empty for a whole section."""

    section: str
    item: str = ""
    model: str = ""
    drafted: str = ""  # the marker's date as written (YYYY-MM-DD)
    line: int | None = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.item}" if self.item else self.section


class DiscussionEntry(Frozen):
    date: date
    author: str = ""
    text: str


BriefingStatus = Literal["draft", "ready"]


class Briefing(Frozen):
    """A curated briefing as an editor wrote it under content/briefings/."""

    slug: str = Field(pattern=SLUG_PATTERN)
    status: BriefingStatus = "draft"
    date: date
    source: Source
    article_id: str = ""
    feed: str = ""
    tags: tuple[str, ...] = ()
    verdict: str = ""
    judgement: str = ""
    core_points: tuple[CorePoint, ...] = ()
    notes: tuple[AudienceNote, ...] = ()
    prompts: tuple[str, ...] = ()
    aligned: tuple[AlignedParagraph, ...] = ()
    discussion: tuple[DiscussionEntry, ...] = ()
    path: str = ""
    # Unreviewed machine drafts. Excluded from dumps: markers are not what a reader sees, so neither the
    # content hash (resends) nor the archive page digest changes when an editor approves a draft.
    machine_drafts: tuple[MachineDraft, ...] = Field((), exclude=True)

    def note_for(self, audience_id: str) -> AudienceNote | None:
        return next((n for n in self.notes if n.audience == audience_id), None)

    @property
    def footnotes(self) -> tuple[AlignedParagraph, ...]:
        return tuple(p for p in self.aligned if p.kind is ParagraphKind.FOOTNOTE)

    @property
    def body(self) -> tuple[AlignedParagraph, ...]:
        return tuple(p for p in self.aligned if p.kind is not ParagraphKind.FOOTNOTE)

    def content_hash(self) -> str:
        """Hash of everything a reader sees; a change means the briefing was edited after sending."""
        payload = stable_dump(self, exclude={"path", "status", "discussion"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


# Fields added after briefings were first sent and published: dumped only when they differ from their default, so
# a briefing written without them hashes as before (no resend with --resend-updated, no new `updated` date).
LATER_FIELDS: dict[str, dict[str, object]] = {
    "notes": {"lead": "", "paragraphs": [], "hook": ""},
    "aligned": {"untranslated": False, "footnote_label": ""},
}


def stable_dump(briefing: Briefing, exclude: set[str]) -> dict[str, object]:
    """`briefing.model_dump(mode="json")` without the LATER_FIELDS that hold their default."""
    payload = briefing.model_dump(mode="json", exclude=exclude)
    for key, defaults in LATER_FIELDS.items():
        for item in payload.get(key) or ():
            for name, default in defaults.items():
                if item.get(name) == default:
                    del item[name]
    return payload


class Content(Frozen):
    """Everything loaded from content/: the input of every stage after ingest."""

    audiences: tuple[Audience, ...]
    feeds: tuple[Feed, ...]
    briefings: tuple[Briefing, ...]

    def audience(self, audience_id: str) -> Audience:
        for audience in self.audiences:
            if audience.id == audience_id:
                return audience
        raise KeyError(audience_id)

    @property
    def ready(self) -> tuple[Briefing, ...]:
        return tuple(b for b in self.briefings if b.status == "ready")

"""What is asked of the model and what a usable answer looks like: prompts, JSON schemas, answer models.

Bump PROMPT_VERSION whenever a prompt or schema changes what the model writes: the cache is keyed by it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flows.core.models import AlignedParagraph, Audience, ParagraphKind

PROMPT_VERSION = "1"

LANGUAGES = {
    "zh-CN": "Simplified Chinese (简体中文)",
    "zh-TW": "Traditional Chinese (繁體中文)",
    "zh": "Simplified Chinese (简体中文)",
    "en": "English",
    "ja": "Japanese",
    "ko": "Korean",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
}
KIND_NAMES = {
    ParagraphKind.TEXT: "paragraph",
    ParagraphKind.HEADING: "heading",
    ParagraphKind.IMAGE: "image caption",
    ParagraphKind.FOOTNOTE: "footnote",
}
FOOTNOTE_MARKER = re.compile(r"\[\d{1,3}\]")
THINKING = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def language_name(code: str) -> str:
    return LANGUAGES.get(code, code)


@dataclass(frozen=True)
class Ask:
    """One request: instructions, input, and the JSON schema the answer must follow."""

    system: str
    user: str
    schema_name: str
    schema: dict[str, Any]

    def messages(self, structured: bool, problem: str = "") -> list[dict[str, str]]:
        system = self.system
        if not structured:
            system += (
                "\n\nAnswer with one JSON object that matches this JSON schema, and nothing else (no Markdown, "
                f"no commentary):\n{json.dumps(self.schema, ensure_ascii=False)}"
            )
        if problem:
            system += f"\n\nYour previous answer to this request could not be used: {problem}. Follow the schema."
        return [{"role": "system", "content": system}, {"role": "user", "content": self.user}]

    def response_format(self) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": self.schema_name, "strict": True, "schema": self.schema}}


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


_TEXT = {"type": "string"}


# --- translation -------------------------------------------------------------------------------------------

TRANSLATION_SYSTEM = """You translate an article for a newsletter into {language}, block by block.
The input is a JSON object {{"blocks": [{{"id", "kind", "text"}}]}}. Answer with {{"blocks": [{{"id", "text"}}]}}:
exactly the same ids, in the same order, each with the translation of that block's text and nothing else.
- Translate faithfully and completely. Do not summarise, merge, split, reorder, explain or add anything.
- Keep footnote markers such as [3] exactly where they are, and keep numbers, names, URLs and code unchanged.
- A heading stays a short heading; an image caption stays a caption; a footnote is translated like a paragraph.
- Write plain text: no Markdown, no quotation marks around the whole block."""


class TranslatedBlock(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    text: str


class TranslationAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    blocks: list[TranslatedBlock]


def translation_ask(blocks: list[AlignedParagraph], language: str) -> Ask:
    ids = [block.id for block in blocks]
    item = _object({"id": {"type": "string", "enum": ids}, "text": _TEXT})
    schema = _object({"blocks": {"type": "array", "items": item}})
    payload = {"blocks": [{"id": b.id, "kind": KIND_NAMES[b.kind], "text": b.source} for b in blocks]}
    return Ask(
        TRANSLATION_SYSTEM.format(language=language_name(language)),
        json.dumps(payload, ensure_ascii=False),
        "translation",
        schema,
    )


def check_translation(
    answer: TranslationAnswer, blocks: list[AlignedParagraph]
) -> tuple[dict[str, str], dict[str, str]]:
    """(translations by id, problems by id). Ids are checked against the request: none lost, none invented, the
    order kept; an answer whose order differs is rejected whole (its texts may sit under the wrong ids)."""
    wanted = [block.id for block in blocks]
    returned = [item.id for item in answer.blocks]
    invented = [i for i in returned if i not in wanted]
    doubled = {i for i in returned if returned.count(i) > 1}
    if invented or doubled:
        named = [*(f"{i} (not asked for)" for i in invented[:3]), *(f"{i} (twice)" for i in sorted(doubled)[:3])]
        what = ", ".join(named)
        return {}, {i: f"the answer's ids do not match the request: {what}" for i in wanted}
    present = [i for i in wanted if i in returned]
    if returned != present:
        return {}, {i: "the answer has the blocks out of order" for i in wanted}
    texts = {item.id: clean_text(item.text) for item in answer.blocks}
    done: dict[str, str] = {}
    problems: dict[str, str] = {}
    for block in blocks:
        text = texts.get(block.id)
        if text is None:
            problems[block.id] = "the answer left this block out"
        elif not text:
            problems[block.id] = "the answer's text for this block is empty"
        elif missing := missing_markers(block.source, text):
            problems[block.id] = f"footnote markers {' '.join(missing)} of the source are missing from the translation"
        else:
            done[block.id] = text
    return done, problems


def missing_markers(source: str, translation: str) -> list[str]:
    found = FOOTNOTE_MARKER.findall(translation)
    missing = []
    for marker in FOOTNOTE_MARKER.findall(source):
        if marker in found:
            found.remove(marker)
        else:
            missing.append(marker)
    return missing


# --- verdict, judgement, core points, prompts ----------------------------------------------------------------

SUMMARY_SYSTEM = """You help the editors of a newsletter for people who follow AI and technology news.
From the article below, draft in {language} the parts of a briefing that the JSON schema asks for:
- verdict: one sentence, the headline judgement of the article.
- judgement: one paragraph: what holds up, what does not, and why.
- core_points: 3 to 5 points; lead is a short phrase (a few words), explanation one or two sentences.
- prompts: 2 or 3 open questions that start a discussion in the team.
Use only what the article says: never invent figures, quotes, names or sources. Parts the editor already wrote
are given under "written"; stay consistent with them. Write plain text without Markdown."""

SUMMARY_FIELDS: dict[str, dict[str, Any]] = {
    "verdict": _TEXT,
    "judgement": _TEXT,
    "core_points": {"type": "array", "items": _object({"lead": _TEXT, "explanation": _TEXT})},
    "prompts": {"type": "array", "items": _TEXT},
}


class PointOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    lead: str = Field(min_length=1)
    explanation: str = Field(min_length=1)


class SummaryAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    verdict: str = ""
    judgement: str = ""
    core_points: list[PointOut] = Field(default_factory=list)
    prompts: list[str] = Field(default_factory=list)


def summary_ask(article: dict[str, Any], wanted: list[str], written: dict[str, Any], language: str) -> Ask:
    schema = _object({name: SUMMARY_FIELDS[name] for name in wanted})
    payload = {"article": article, "written": written, "draft": wanted}
    system = SUMMARY_SYSTEM.format(language=language_name(language))
    return Ask(system, json.dumps(payload, ensure_ascii=False), "briefing", schema)


def check_summary(answer: SummaryAnswer, wanted: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    values: dict[str, Any] = {
        "verdict": clean_text(answer.verdict),
        "judgement": clean_text(answer.judgement),
        "core_points": [(clean_text(p.lead).replace("*", ""), clean_text(p.explanation)) for p in answer.core_points],
        "prompts": [clean_text(p) for p in answer.prompts if clean_text(p)],
    }
    values["core_points"] = [(lead, text) for lead, text in values["core_points"] if lead and text]
    done = {name: values[name] for name in wanted if values[name]}
    return done, {name: f"the answer has no {name.replace('_', ' ')}" for name in wanted if name not in done}


# --- audience notes ------------------------------------------------------------------------------------------

NOTES_SYSTEM = """You help the editors of a newsletter that sends each briefing to several audiences.
For each audience listed, draft in {language} a note on the article below:
- means: what this article means for this audience, in one or two sentences, from what they care about.
- next: one concrete next step for them, in the sense their profile gives to "next step".
Use only what the article says; never invent figures, quotes or names. Answer for exactly the listed audience
ids, in the listed order. Write plain text without Markdown."""


class NoteOut(BaseModel):
    model_config = ConfigDict(extra="ignore")

    audience: str
    means: str
    next: str


class NotesAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    notes: list[NoteOut]


def audience_profile(audience: Audience) -> dict[str, Any]:
    profile = audience.profile
    return {
        "id": audience.id,
        "name": audience.name,
        "who": (profile.who if profile and profile.who else audience.description),
        "cares_about": list(profile.cares_about) if profile else [],
        "next_step_means": profile.next_step if profile else "",
    }


def notes_ask(article: dict[str, Any], audiences: list[Audience], briefing: dict[str, Any], language: str) -> Ask:
    ids = [a.id for a in audiences]
    item = _object({"audience": {"type": "string", "enum": ids}, "means": _TEXT, "next": _TEXT})
    schema = _object({"notes": {"type": "array", "items": item}})
    payload = {"article": article, "briefing": briefing, "audiences": [audience_profile(a) for a in audiences]}
    return Ask(
        NOTES_SYSTEM.format(language=language_name(language)), json.dumps(payload, ensure_ascii=False), "notes", schema
    )


def check_notes(answer: NotesAnswer, audiences: list[str]) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    done: dict[str, tuple[str, str]] = {}
    problems: dict[str, str] = {}
    returned = [n.audience for n in answer.notes]
    invented = [a for a in returned if a not in audiences]
    for audience in audiences:
        notes = [n for n in answer.notes if n.audience == audience]
        if invented:
            problems[audience] = f"the answer names audiences that were not asked for: {', '.join(invented[:3])}"
        elif len(notes) != 1:
            problems[audience] = "the answer has no note for this audience" if not notes else "the answer has two notes"
        elif not clean_text(notes[0].means) or not clean_text(notes[0].next):
            problems[audience] = "the answer's note lacks 'means' or 'next'"
        else:
            done[audience] = (clean_text(notes[0].means), clean_text(notes[0].next))
    return done, problems


# --- answers -------------------------------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """One line of plain text that cannot break the briefing file: no comment delimiters, no leading Markdown
    block marker (a heading, quote or list sign would change what the parser reads)."""
    text = " ".join(text.replace("<!--", "").replace("-->", "").split())
    return re.sub(r"^(?:[#>]+\s*)+", "", text).strip()


def parse_answer(content: str, model: type[BaseModel]) -> BaseModel:
    """The JSON object in a model's answer, validated; raises ValueError saying what is wrong."""
    text = THINKING.sub("", content or "").strip()
    text = FENCE.sub("", text).strip()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        start, end = text.find("{"), text.rfind("}")
        try:
            data = json.loads(text[start : end + 1]) if 0 <= start < end else None
        except json.JSONDecodeError:
            data = None
        if data is None:
            raise ValueError(f"the answer is not JSON ({exc.msg} at character {exc.pos})") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the top level"
        raise ValueError(f"the answer does not follow the schema ({where}: {first['msg']})") from None

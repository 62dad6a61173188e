"""`draft_briefing`: fill a briefing file's empty sections and translation blocks with a model's drafts.

The translation goes in batches of consecutive blocks, concurrently within `llm_concurrency`; the verdict,
judgement, core points and prompts in one request, then the audience notes in another (they read the verdict).
Every answer is validated; an unusable one is asked again once, and what still fails stays empty and is reported.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from flows.core.briefing_format import DRAFTABLE_SECTIONS, SECTION_ALIASES, machine_draft_marker, parse_briefing_file
from flows.core.content import BRIEFINGS_DIR, briefing_files, load_audiences
from flows.core.errors import ContentError, Problem, SettingsError
from flows.core.models import AlignedParagraph, Audience, Briefing, ParagraphKind
from flows.core.settings import Settings
from flows.core.store import Store
from flows.draft.budget import MESSAGE_OVERHEAD, TokenBudget, estimate_output, estimate_tokens, plan_batches
from flows.draft.cache import DraftCache, request_hash, source_hash
from flows.draft.client import ChatClient, NoAnswerError, endpoint_label
from flows.draft.fileupdate import CURATED, BriefingText, Drafts, EmptyParts, find_empty, write_drafts
from flows.draft.prompts import (
    PROMPT_VERSION,
    Ask,
    NotesAnswer,
    SummaryAnswer,
    TranslationAnswer,
    check_notes,
    check_summary,
    check_translation,
    notes_ask,
    parse_answer,
    summary_ask,
    translation_ask,
)
from flows.draft.report import DraftReport, Failure

logger = logging.getLogger(__name__)
T = TypeVar("T")
Checked = tuple[dict[str, Any], dict[str, str]]
ANSWERED, CUT_OFF, FAILED = "answered", "cut off", "failed"


def draft_briefing(
    settings: Settings,
    store: Store,
    path_or_slug: str | Path,
    sections: list[str] | None = None,
    *,
    fresh: bool = False,
    today: date | None = None,
) -> DraftReport:
    """Draft the empty parts (all, or the named `sections`) of one briefing with the model at BRIEFING_LLM_URL.

    Raises SettingsError when no endpoint is configured and ContentError for an unknown slug, an unreadable
    file or a `ready` briefing; failures of the model are in the report, never raised."""
    started = time.perf_counter()
    if not settings.llm_url or not settings.llm_model:
        raise SettingsError(
            "BRIEFING_LLM_URL and BRIEFING_LLM_MODEL must both be set to draft",
            hint="point them at an OpenAI-compatible endpoint; see docs/drafting.md",
        )
    path = resolve_briefing(settings.content_dir, path_or_slug)
    briefing = _readable(path)
    if briefing.status == "ready":
        raise ContentError(
            path, "is ready: a ready briefing is not drafted", field="status", hint="set `status: draft` to draft it"
        )
    wanted = section_filter(sections)
    audiences = load_audiences(settings.content_dir, [])
    doc = BriefingText.read(path)
    empty = find_empty(doc, wanted, [a.id for a in audiences])
    report = DraftReport(str(path), briefing.slug, settings.llm_model, endpoint_label(settings.llm_url))
    report.already_written = list(empty.written)
    report.warnings += [f"the file has no '## {name}' section: add the heading to draft it" for name in empty.absent]
    if empty.anything:
        drafts = run_async(lambda: Drafter(settings, store, report, fresh=fresh).run(briefing, doc, empty, audiences))
        marker = machine_draft_marker(settings.llm_model, today or date.today())
        written = write_drafts(path, drafts, marker, [a.id for a in audiences])
        report.filled, report.blocks_filled, report.written = written.filled, written.blocks, bool(written.filled)
        dropped = "the editor wrote it while the draft ran; the draft was dropped"
        report.warnings += [f"{part}: {dropped}" for part in written.dropped]
    report.wall_seconds = time.perf_counter() - started
    _log_report(report)
    return report


def resolve_briefing(content_dir: Path, path_or_slug: str | Path) -> Path:
    """A briefing file from its path or its slug (the `slug:` of its front matter, else its file name)."""
    candidate = Path(path_or_slug)
    if candidate.suffix == ".md" and candidate.is_file():
        return candidate
    for path in briefing_files(content_dir):
        briefing, partial, _ = parse_briefing_file(path)
        found = briefing or partial
        if found is not None and found.slug == str(path_or_slug):
            return path
    raise ContentError(
        content_dir / BRIEFINGS_DIR,
        f"no briefing with slug {str(path_or_slug)!r}",
        field="slug",
        hint="use the `slug:` of a file under content/briefings/ (see `briefing status`), or the file's path",
    )


def section_filter(sections: list[str] | None) -> set[str]:
    """Section names as the file format spells them (`core_points`, `notes.atou`); all drafted ones when empty."""
    if not sections:
        return set(DRAFTABLE_SECTIONS)
    chosen: set[str] = set()
    for raw in sections:
        head, _, item = raw.strip().partition(".")
        name = SECTION_ALIASES.get(head.lower().replace("-", " ").replace("_", " "), head.lower())
        if name not in DRAFTABLE_SECTIONS or (item and name != "notes"):
            raise ContentError(
                raw,
                "is not a section that can be drafted",
                field="--section",
                hint=f"use {', '.join(DRAFTABLE_SECTIONS)} or notes.<audience id>",
            )
        chosen.add(f"{name}.{item.lower()}" if item else name)
    return chosen


def _readable(path: Path) -> Briefing:
    briefing, _, problems = parse_briefing_file(path)
    if briefing is None:
        first = Problem.from_error(problems[0]).message if problems else "unknown problem"
        raise ContentError(path, f"cannot be read: {first}", hint="run `briefing check`")
    return briefing


def run_async(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to the end from sync code, also when this thread already runs an event loop (Prefect)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def _log_report(report: DraftReport) -> None:
    stats = report.stats
    logger.info(
        "drafted %s: %s; %d blocks (%d from cache), %d failed; %d requests, %d tokens, %d cache hits, %.2f s",
        report.slug,
        ", ".join(report.filled) or "nothing",
        report.blocks_filled,
        report.blocks_from_cache,
        len(report.failures),
        stats.requests,
        stats.tokens,
        stats.cache_hits,
        report.wall_seconds,
    )


@dataclass
class Unit:
    """One request's worth of work: what to ask, how to read and check the answer, which parts it fills."""

    ask: Ask
    answer: type[BaseModel]
    check: Callable[[Any], Checked]
    parts: list[str]
    max_tokens: int
    estimate: int


class Drafter:
    """One draft's requests: the client, the cache, the budget and the report they all write to."""

    def __init__(self, settings: Settings, store: Store, report: DraftReport, *, fresh: bool) -> None:
        self.settings = settings
        self.report = report
        self.stats = report.stats
        self.language = settings.draft_language
        self.cache = DraftCache(store, settings.llm_model, PROMPT_VERSION, self.language, enabled=not fresh)
        self.budget = TokenBudget(settings.llm_token_budget)
        self.drafts = Drafts()
        self.client: ChatClient | None = None

    async def run(
        self, briefing: Briefing, doc: BriefingText, empty: EmptyParts, audiences: tuple[Audience, ...]
    ) -> Drafts:
        self.client = ChatClient(self.settings, self.stats)
        try:
            article = self._article(briefing, doc.blocks())
            await asyncio.gather(
                self.translate(empty.blocks),
                self.curate(briefing, article, empty, [a for a in audiences if a.id in empty.notes]),
            )
        finally:
            await self.client.close()
        return self.drafts

    # --- translation ------------------------------------------------------------------------------------

    async def translate(self, blocks: list[AlignedParagraph]) -> None:
        if not blocks:
            return
        keys = {b.id: source_hash(f"{b.kind.value}\n{b.source}") for b in blocks}
        cached = self.cache.get_many("translation", list(keys.values()))
        todo = []
        for block in blocks:
            text = cached.get(keys[block.id])
            if isinstance(text, str) and text:
                self._translated(block, text)
                self.report.blocks_from_cache += 1
                self.stats.cache_hits += 1
            else:
                todo.append(block)
        sizes = [estimate_tokens(b.source) for b in todo]
        settings = self.settings
        batches = plan_batches(sizes, settings.llm_batch_tokens, settings.llm_batch_blocks, settings.llm_concurrency)
        await asyncio.gather(*(self.translate_batch([todo[i] for i in batch], keys) for batch in batches))

    def _translated(self, block: AlignedParagraph, text: str) -> None:
        self.drafts.translation[block.id] = text
        self.drafts.sources[block.id] = block.source

    async def translate_batch(self, blocks: list[AlignedParagraph], keys: dict[str, str], problem: str = "") -> None:
        unit = self._translation_unit(blocks)
        done, problems, outcome = await self.request(unit, problem)
        for block in blocks:
            if block.id in done:
                self._translated(block, done[block.id])
        self.cache.put_many("translation", {keys[i]: text for i, text in done.items()})
        failed = [b for b in blocks if b.id in problems]
        if not failed:
            return
        if problem or outcome == FAILED:  # the one re-ask was used, or no answer came: what failed stays empty
            self.report.failures += [Failure(f"translation.{b.id}", problems[b.id]) for b in failed]
            return
        reason = problems[failed[0].id]
        if outcome == CUT_OFF and len(failed) > 1:  # too long for max_tokens: ask again in two halves
            half = len(failed) // 2
            await asyncio.gather(
                self.translate_batch(failed[:half], keys, reason), self.translate_batch(failed[half:], keys, reason)
            )
        else:
            await self.translate_batch(failed, keys, reason)

    def _translation_unit(self, blocks: list[AlignedParagraph]) -> Unit:
        ask = translation_ask(blocks, self.language)
        source = sum(estimate_tokens(b.source) for b in blocks)
        return Unit(
            ask,
            TranslationAnswer,
            lambda answer: check_translation(answer, blocks),
            [b.id for b in blocks],
            self.settings.llm_max_output_tokens,
            _prompt_estimate(ask) + min(estimate_output(source), self.settings.llm_max_output_tokens),
        )

    # --- curated sections ---------------------------------------------------------------------------------

    async def curate(
        self, briefing: Briefing, article: dict[str, Any], empty: EmptyParts, audiences: list[Audience]
    ) -> None:
        written = {
            name: value for name, value in _curated_values(briefing).items() if value and name not in empty.sections
        }
        wanted = [name for name in CURATED if name in empty.sections]
        if wanted:
            ask = summary_ask(article, wanted, written, self.language)
            unit = self._unit(ask, SummaryAnswer, lambda a: check_summary(a, wanted), wanted)
            done = await self.cached_unit("summary", unit)
            self.drafts.verdict = done.get("verdict", "")
            self.drafts.judgement = done.get("judgement", "")
            self.drafts.core_points = [(lead, text) for lead, text in done.get("core_points", [])]
            self.drafts.prompts = list(done.get("prompts", []))
            written.update(done)
        if audiences:
            ids = [a.id for a in audiences]
            context: dict[str, Any] = {k: written[k] for k in ("verdict", "judgement", "core_points") if k in written}
            ask = notes_ask(article, audiences, context, self.language)
            done = await self.cached_unit("notes", self._unit(ask, NotesAnswer, lambda a: check_notes(a, ids), ids))
            self.drafts.notes = {audience: (means, nxt) for audience, (means, nxt) in done.items()}

    def _unit(self, ask: Ask, answer: type[BaseModel], check: Callable[[Any], Checked], parts: list[str]) -> Unit:
        max_tokens = self.settings.llm_max_output_tokens
        return Unit(ask, answer, check, parts, max_tokens, _prompt_estimate(ask) + min(max_tokens, 400 * len(parts)))

    async def cached_unit(self, kind: str, unit: Unit) -> dict[str, Any]:
        """A summary or notes answer from the cache, or from the model (asked once more when unusable)."""
        key = request_hash([unit.ask.system, unit.ask.user, unit.ask.schema])
        cached = self.cache.get(kind, key)
        if isinstance(cached, dict) and set(unit.parts) <= set(cached):
            self.stats.cache_hits += 1
            return cached
        done, problems, outcome = await self.request(unit)
        if problems and outcome != FAILED:
            again, problems, _ = await self.request(unit, next(iter(problems.values())))
            done.update({k: v for k, v in again.items() if k not in done})
            problems = {k: v for k, v in problems.items() if k not in done}
        prefix = "notes." if kind == "notes" else ""
        self.report.failures += [Failure(f"{prefix}{part}", reason) for part, reason in problems.items()]
        if not problems:
            self.cache.put_many(kind, {key: done})
        return done

    # --- one request ----------------------------------------------------------------------------------------

    async def request(self, unit: Unit, problem: str = "") -> tuple[dict[str, Any], dict[str, str], str]:
        """(done, problems by part, outcome) of one request; never raises for what the server does. The outcome
        is ANSWERED (problems are parts the answer got wrong), CUT_OFF (finish_reason length) or FAILED (no
        answer: an error status after retries, a timeout, the budget): only the first two are worth asking again."""
        assert self.client is not None
        if not self.budget.reserve(unit.estimate):
            limit = self.settings.llm_token_budget
            reason = f"not sent: it would pass the token budget of {limit} for one briefing (BRIEFING_LLM_TOKEN_BUDGET)"
            return {}, dict.fromkeys(unit.parts, reason), FAILED
        if problem:
            self.stats.reasks += 1
        spent = 0
        try:
            completion = await self.client.complete(unit.ask, unit.max_tokens, problem)
            spent = completion.tokens
        except NoAnswerError as exc:
            return {}, dict.fromkeys(unit.parts, exc.reason), FAILED
        finally:
            self.budget.settle(unit.estimate, spent)
        if completion.finish_reason == "length":
            reason = f"the answer was cut off at {unit.max_tokens} tokens (finish_reason length)"
            return {}, dict.fromkeys(unit.parts, reason), CUT_OFF
        try:
            answer = parse_answer(completion.content, unit.answer)
        except ValueError as exc:
            return {}, dict.fromkeys(unit.parts, str(exc)), ANSWERED
        done, problems = unit.check(answer)
        return done, problems, ANSWERED

    # --- the article as the curated sections see it ---------------------------------------------------------

    def _article(self, briefing: Briefing, blocks: list[AlignedParagraph]) -> dict[str, Any]:
        """Title, site and text of the source (as quoted in the file), cut at a block boundary to the context."""
        limit = self.settings.llm_context_tokens
        parts: list[str] = []
        used = 0
        for block in blocks:
            text = _block_text(block)
            cost = estimate_tokens(text) + 2
            if used + cost > limit:
                self.report.warnings.append(
                    f"the article was cut to its first {len(parts)} of {len(blocks)} blocks for the curated sections "
                    "(BRIEFING_LLM_CONTEXT_TOKENS)"
                )
                break
            parts.append(text)
            used += cost
        return {"title": briefing.source.title, "site": briefing.source.site, "text": "\n\n".join(parts)}


def _block_text(block: AlignedParagraph) -> str:
    if block.kind is ParagraphKind.HEADING:
        return f"## {block.source}"
    if block.kind is ParagraphKind.IMAGE:
        return f"(image: {block.source})"
    if block.kind is ParagraphKind.FOOTNOTE:
        return f"(footnote) {block.source}"
    return block.source


def _curated_values(briefing: Briefing) -> dict[str, Any]:
    return {
        "verdict": briefing.verdict,
        "judgement": briefing.judgement,
        "core_points": [(p.lead, p.explanation) for p in briefing.core_points],
        "prompts": list(briefing.prompts),
    }


def _prompt_estimate(ask: Ask) -> int:
    return estimate_tokens(ask.system) + estimate_tokens(ask.user) + 2 * MESSAGE_OVERHEAD

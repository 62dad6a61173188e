"""`briefing draft` and `briefing approve`: machine drafts of a briefing's empty parts, and the editor's review."""

from __future__ import annotations

import logging
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.core.errors import BriefingError

logger = logging.getLogger(__name__)

FAILURES_SHOWN = 30
SECTION_HELP = (
    "Only this part (repeatable): verdict, judgement, core_points, notes, notes.<audience>, prompts, translation."
)


def draft(
    slug: str = typer.Argument(..., help="The briefing's slug (or the path of its file)."),
    section: list[str] = typer.Option([], "--section", "-s", help=SECTION_HELP),
    fresh: bool = typer.Option(False, "--fresh", help="Ask the model again instead of reusing cached answers."),
) -> None:
    """Fill the empty sections of a draft briefing with a model's drafts, each marked for the editor's review.

    Needs BRIEFING_LLM_URL and BRIEFING_LLM_MODEL (any OpenAI-compatible endpoint; see docs/drafting.md). Only
    empty parts are written — the verdict, judgement, core points, discussion prompts, one note per audience and
    every untranslated block — each under a `<!-- machine-draft … -->` marker; everything else in the file stays
    as it is. `briefing check` refuses `status: ready` until every marker is gone (`briefing approve`). Prints what
    was filled, what failed and why, requests, tokens, cache hits and wall time; exit 11 when some part could not
    be drafted (it stays empty).

    Example: briefing draft metr-task-horizons --section translation
    """
    from flows.app.output import emit, fail
    from flows.core.settings import load_settings
    from flows.core.store import open_store
    from flows.draft import draft_briefing

    try:
        settings = load_settings()
        report = draft_briefing(settings, open_store(settings.store_url), slug, section or None, fresh=fresh)
    except BriefingError as err:
        raise fail(err) from None
    data = report.to_dict()
    emit(data, _draft_table(data), _draft_text(data))
    if not report.ok:
        raise typer.Exit(11)


def _draft_table(data: dict[str, Any]) -> Table:
    stats = data["stats"]
    table = Table(title=f"briefing draft {data['slug']}", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("detail", overflow="fold")
    table.add_row("parts filled", str(len(data["filled"])), ", ".join(data["filled"]) or "—")
    table.add_row("blocks translated", str(data["blocks_filled"]), f"{data['blocks_from_cache']} from the cache")
    table.add_row("already written", str(len(data["already_written"])), ", ".join(data["already_written"]) or "—")
    table.add_row("failed (left empty)", str(len(data["failures"])), "")
    table.add_row(
        "requests", str(stats["requests"]), f"{stats['retries']} retries, {stats['reasks']} asked again"
    )
    estimated = " (estimated)" if stats["tokens_estimated"] else ""
    split = f"{stats['prompt_tokens']} prompt + {stats['completion_tokens']} completion{estimated}"
    table.add_row("tokens", str(stats["tokens"]), split)
    table.add_row("cache hits", str(stats["cache_hits"]), f"structured output: {stats['structured_output']}")
    table.add_row("wall time", f"{data['wall_seconds']:.2f} s", f"{data['model']} at {data['endpoint']}")
    table.add_row("file", "", data["path"] if data["written"] else f"{data['path']} (unchanged)")
    return table


def _draft_text(data: dict[str, Any]) -> str:
    lines = [f"[yellow]warning:[/] {escape(w)}" for w in data["warnings"]]
    failures = data["failures"]
    lines += [f"[red]failed:[/] {escape(f['part'])}: {escape(f['reason'])}" for f in failures[:FAILURES_SHOWN]]
    if len(failures) > FAILURES_SHOWN:
        lines.append(f"… and {len(failures) - FAILURES_SHOWN} more (use --json for all)")
    if data["filled"]:
        approve = f"briefing approve {data['slug']} --section …"
        lines.append(f"Review the machine drafts, then delete their markers or run `{approve}`.")
    return "\n".join(lines)


def approve(
    slug: str = typer.Argument(..., help="The briefing's slug (or the path of its file)."),
    section: list[str] = typer.Option(
        [],
        "--section",
        "-s",
        help="What was reviewed (repeatable): a section (translation, notes, verdict …), notes.<audience> or "
        "translation.<block id>.",
    ),
    all_parts: bool = typer.Option(False, "--all", help="Every machine draft in the file."),
) -> None:
    """Record that an editor reviewed machine drafts: their `<!-- machine-draft … -->` markers are removed.

    The text stays exactly as it is in the file (correct it first). Deleting a marker by hand does the same.
    Prints what was approved and which machine drafts are still unreviewed.

    Example: briefing approve metr-task-horizons --section translation --section notes.neta
    """
    from flows.app.output import emit, fail
    from flows.core.settings import load_settings
    from flows.draft import approve_sections, resolve_briefing

    if not section and not all_parts:
        raise typer.BadParameter("name what you reviewed with --section (or use --all)")
    try:
        settings = load_settings()
        approval = approve_sections(resolve_briefing(settings.content_dir, slug), ["all"] if all_parts else section)
    except BriefingError as err:
        raise fail(err) from None
    data = approval.to_dict()
    approved = ", ".join(approval.approved) or "nothing (no machine-draft marker matched)"
    text = f"approved: {escape(approved)}"
    if approval.remaining:
        text += f"\n[yellow]still to review:[/] {escape(', '.join(approval.remaining))}"
    emit(data, None, text)


def register(app: typer.Typer) -> None:
    app.command(name="draft")(draft)
    app.command(name="approve")(approve)

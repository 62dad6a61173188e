"""What every command module needs to talk to the terminal: the output mode (--json / --quiet / --verbose),
`emit` for results, `fail` for one-line errors, a progress bar, and the run-summary tables. Command modules
import this, never `flows.app.cli`, so the CLI's modules import one way.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from flows.core.content import load_content
from flows.core.errors import BriefingError

logger = logging.getLogger(__name__)

STATE_COLUMNS = ("sent", "queued", "sending", "deferred", "failed", "uncertain", "suppressed")
console = Console()
err_console = Console(stderr=True)


class Output:
    """Global output mode chosen by --json / --quiet."""

    json = False
    quiet = False
    verbose = False


def emit(data: Any, table: Table | None = None, text: str = "") -> None:
    """Print a result in the chosen mode."""
    if Output.json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    elif not Output.quiet:
        if table is not None:
            console.print(table)
        if text:
            console.print(text)


@contextmanager
def progress(description: str, total: int | None = None) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr with counts and ETA (a spinner when the total is unknown); silent with --json/--quiet.

    Yields `advance(n=1, description=None)`. Example::

        with progress("sending", total=len(rows)) as advance:
            for row in rows:
                send(row)
                advance()
    """
    if Output.json or Output.quiet:
        yield lambda *_args, **_kwargs: None
        return
    columns: list[Any] = [SpinnerColumn(), TextColumn("[progress.description]{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1, description: str | None = None) -> None:
            bar.update(task, advance=n, description=description)  # None leaves the description as it is

        yield advance


def refuse_strict_early(settings: Any) -> None:
    """Strict mode checks the content before a flow starts: exit 3 at once, no Prefect server, no traceback."""
    if settings.strict:
        from flows.edition import refuse_if_strict

        refuse_if_strict(True, load_content(settings.content_dir))


def fail(err: BriefingError) -> typer.Exit:
    """Print one clear error line (JSON on stdout with --json) and return the exit to raise."""
    if Output.json:
        sys.stdout.write(json.dumps({"error": str(err), "exit_code": err.exit_code}, ensure_ascii=False) + "\n")
    else:
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
    return typer.Exit(err.exit_code)


def summary_table(result: dict[str, Any]) -> Table:
    table = Table(title="briefing run", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("where / detail", overflow="fold")
    table.add_row("articles new", str(result["articles_new"]), f"{result['articles_updated']} updated")
    table.add_row("feeds failed", str(len(result["feeds_failed"])), "; ".join(result["feeds_failed"]))
    table.add_row("draft stubs", str(len(result["stubs"])), "\n".join(result["stubs"]))
    if result.get("stubs_skipped"):
        table.add_row("stored without stubs", "", "\n".join(result["stubs_skipped"]))
    if result.get("drafts"):
        drafted = [f"{d['path']}: {', '.join(d['filled']) or 'nothing'}" for d in result["drafts"]]
        filled = sum(bool(d["filled"]) for d in result["drafts"])
        table.add_row("machine-drafted stubs", str(filled), "\n".join(drafted))
    table.add_row("briefings rendered", str(len(result["briefings_rendered"])), ", ".join(result["briefings_rendered"]))
    table.add_row("briefings held back", str(len(result["briefings_held"])), ", ".join(result["briefings_held"]))
    if result.get("render_failed"):
        table.add_row("briefings not rendered", str(len(result["render_failed"])), "\n".join(result["render_failed"]))
    destination = f"over SMTP to {result['smtp']}" if result.get("smtp") else result["outbox"]
    table.add_row("emails sent", str(result["emails_sent"]), destination)
    table.add_row("emails uncertain/failed", f"{result['emails_uncertain']}/{result['emails_failed']}", "")
    table.add_row("delivery errors", str(len(result["delivery_errors"])), "\n".join(result["delivery_errors"]))
    table.add_row(
        "pages published",
        str(len(result["pages_written"])),
        f"{result['archive']} ({result['pages_unchanged']} unchanged)",
    )
    if result.get("markdown_written") or result.get("markdown_unchanged"):
        table.add_row(
            "Markdown briefings",
            str(len(result["markdown_written"])),
            f"{result['markdown_unchanged']} unchanged\n" + "\n".join(result["markdown_written"]),
        )
    return table


def delivery_table(delivery: dict[str, dict[str, dict[str, int]]]) -> Table:
    table = Table(title="emails per audience (this run)")
    for column in ("briefing", "audience", *STATE_COLUMNS):
        table.add_column(column, justify="left" if column in ("briefing", "audience") else "right")
    for slug, audiences in delivery.items():
        for audience, states in audiences.items():
            table.add_row(slug, audience, *(str(states.get(state, 0)) for state in STATE_COLUMNS))
    return table


def summary_text(result: dict[str, Any]) -> str:
    return "\n".join(f"[yellow]{escape(p)}[/]" for p in result["problems"])

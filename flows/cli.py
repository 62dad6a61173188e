"""The `briefing` command line. The CLI owns the terminal: rich tables, one-line errors, exit codes.

Exit codes: 0 ok; 1 unexpected error; 2 bad settings; 3 content problems; 4 fetch error; 5 render error;
6 delivery error (or emails left uncertain/failed); 7 publish error; 8 bad unsubscribe token.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")

from flows.content import load_content
from flows.errors import BriefingError
from flows.settings import load_settings

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="Curated AI/tech briefings: ingest feeds, render per-audience emails, send exactly once, publish an archive.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


class Output:
    """Global output mode chosen by --json / --quiet."""

    json = False
    quiet = False


@app.callback()
def main_options(
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs."),
) -> None:
    """Run `briefing COMMAND --help` for each command's options and an example."""
    Output.json, Output.quiet = json_output, quiet
    level = logging.DEBUG if verbose else (logging.ERROR if quiet or json_output else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if quiet or json_output:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")


def emit(data: Any, table: Table | None = None, text: str = "") -> None:
    """Print a result in the chosen mode."""
    if Output.json:
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")
    elif not Output.quiet:
        if table is not None:
            console.print(table)
        if text:
            console.print(text)


def fail(err: BriefingError) -> typer.Exit:
    if Output.json:
        sys.stdout.write(json.dumps({"error": str(err), "exit_code": err.exit_code}, ensure_ascii=False) + "\n")
    else:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
    return typer.Exit(err.exit_code)


@app.command()
def check(
    content_dir: Path | None = typer.Option(None, "--content", help="Content folder (default: BRIEFING_CONTENT_DIR)."),
) -> None:
    """Load every content file and report every problem at once (file, field, line, what to do).

    Exit status 0 only when everything is valid.

    Example: briefing check --content content/
    """
    try:
        settings = load_settings(**({"content_dir": content_dir} if content_dir else {}))
    except BriefingError as err:
        raise fail(err) from None
    loaded = load_content(settings.content_dir)
    problems = list(loaded.problems)
    problems.extend(_alignment_problems(settings, loaded))
    errors = [p for p in problems if p.severity == "error"]
    data = {
        "ok": not errors,
        "briefings": len(loaded.content.briefings),
        "ready": len(loaded.content.ready),
        "problems": [p.__dict__ for p in problems],
    }
    if Output.json:
        emit(data)
    else:
        for problem in problems:
            (err_console if problem.severity == "error" else console).print(
                str(problem), highlight=False, soft_wrap=True
            )
        if not Output.quiet:
            console.print(
                f"{len(loaded.content.briefings)} briefings ({len(loaded.content.ready)} ready), "
                f"{len(loaded.content.audiences)} audiences, {len(loaded.content.feeds)} feeds: "
                f"{len(errors)} errors, {len(problems) - len(errors)} warnings"
            )
    if errors:
        raise typer.Exit(3)


def _alignment_problems(settings: Any, loaded: Any) -> list[Any]:
    """Check translations against stored articles when a store exists (no store is created by checking)."""
    from flows.join import join_briefing
    from flows.store import open_store

    if not settings.database_url and not (settings.output_dir / "store.db").exists():
        return []
    store = open_store(settings.store_url)
    problems = []
    for briefing in loaded.content.ready:
        problems.extend(p for p in join_briefing(briefing, store).problems if p.severity == "error")
    return problems


@app.command()
def run(
    dry_run: bool = typer.Option(False, "--dry-run", help="Ingest and render, but send and publish nothing."),
    resend_updated: bool = typer.Option(False, "--resend-updated", help="Send briefings edited after sending again."),
    resend_uncertain: bool = typer.Option(False, "--resend-uncertain", help="Resend rows left uncertain by a crash."),
) -> None:
    """Run the whole pipeline once as a Prefect flow (embedded API; no server to start).

    Ingest feeds → draft stubs → join ready briefings → render per audience → deliver → publish the archive.
    Running it twice sends nothing twice and leaves the archive unchanged.

    Example: briefing run
    """
    try:
        load_settings()
        from flows.pipeline import pipeline

        result = pipeline(dry_run=dry_run, resend_updated=resend_updated, resend_uncertain=resend_uncertain)
    except BriefingError as err:
        raise fail(err) from None
    emit(result, _summary_table(result), _summary_text(result))
    if result["emails_uncertain"] or result["emails_failed"]:
        raise typer.Exit(6)


def _summary_table(result: dict[str, Any]) -> Table:
    table = Table(title="briefing run", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("where / detail", overflow="fold")
    table.add_row("articles new", str(result["articles_new"]), f"{result['articles_updated']} updated")
    table.add_row("feeds failed", str(len(result["feeds_failed"])), "; ".join(result["feeds_failed"]))
    table.add_row("draft stubs", str(len(result["stubs"])), "\n".join(result["stubs"]))
    table.add_row("briefings rendered", str(len(result["briefings_rendered"])), ", ".join(result["briefings_rendered"]))
    table.add_row("briefings held back", str(len(result["briefings_held"])), ", ".join(result["briefings_held"]))
    table.add_row("emails sent", str(result["emails_sent"]), result["outbox"])
    table.add_row("emails uncertain/failed", f"{result['emails_uncertain']}/{result['emails_failed']}", "")
    table.add_row(
        "pages published",
        str(len(result["pages_written"])),
        f"{result['archive']} ({result['pages_unchanged']} unchanged)",
    )
    return table


def _summary_text(result: dict[str, Any]) -> str:
    return "\n".join(f"[yellow]{p}[/]" for p in result["problems"])


from flows.cli_ingest import register as register_ingest  # noqa: E402

register_ingest(app)


def main() -> None:
    try:
        app()
    except BriefingError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()

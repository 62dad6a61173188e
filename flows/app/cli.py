"""The `briefing` command line. The CLI owns the terminal: rich tables, one-line errors, exit codes.

Exit codes: 0 ok; 1 unexpected error; 2 bad settings; 3 content problems; 4 fetch error; 5 render error;
6 delivery error (or emails left uncertain/failed); 7 publish error; 8 bad unsubscribe token; 9 store;
10 the mailbox (BRIEFING_IMAP_URL) cannot be read. A command that runs to its end but falls short somewhere
exits with the highest code that applies (`flows.core.errors.partial_failure_code`).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")

from flows.app.commands.collect import register as register_collect
from flows.app.commands.content import register as register_init
from flows.app.commands.deliver import register as register_delivery
from flows.app.commands.draft import register as register_draft
from flows.app.commands.ingest import register as register_ingest
from flows.app.commands.orchestrate import register as register_orchestrate
from flows.app.commands.preview import register as register_preview
from flows.app.commands.publish import register as register_publish
from flows.app.output import (
    Output,
    console,
    delivery_table,
    emit,
    err_console,
    fail,
    progress,
    refuse_strict_early,
    summary_table,
    summary_text,
)
from flows.core.content import load_content
from flows.core.errors import BriefingError
from flows.core.settings import load_settings

logger = logging.getLogger(__name__)

app = typer.Typer(
    help="Curated AI/tech briefings: ingest feeds, render per-audience emails, send exactly once, publish an archive.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


@app.callback()
def main_options(
    json_output: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs."),
) -> None:
    """Run `briefing COMMAND --help` for each command's options and an example."""
    Output.json, Output.quiet, Output.verbose = json_output, quiet, verbose
    level = logging.DEBUG if verbose else (logging.ERROR if quiet or json_output else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if quiet or json_output:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
        os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")


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
    from flows.status import check_problems  # the store and the edition: not loaded by other commands

    loaded = load_content(settings.content_dir)
    problems = check_problems(settings, loaded)
    errors = [p for p in problems if p.severity == "error"]
    data = {
        "ok": not errors,
        "briefings": len(loaded.content.briefings),
        "ready": len(loaded.content.ready),
        "problems": [p.__dict__ for p in problems],
    }
    from flows.events import announce_from_command

    data["announced"] = announce_from_command(loaded.content.ready, settings.store_url)
    if Output.json:
        emit(data)
    else:
        for problem in problems:
            (err_console if problem.severity == "error" else console).print(
                str(problem), highlight=False, soft_wrap=True, markup=False
            )
        if not Output.quiet:
            console.print(
                f"{len(loaded.content.briefings)} briefings ({len(loaded.content.ready)} ready), "
                f"{len(loaded.content.audiences)} audiences, {len(loaded.content.feeds)} feeds: "
                f"{len(errors)} errors, {len(problems) - len(errors)} warnings"
            )
    if errors:
        raise typer.Exit(3)


@app.command()
def run(
    dry_run: bool = typer.Option(False, "--dry-run", help="Ingest and render, but send and publish nothing."),
    resend_updated: bool = typer.Option(False, "--resend-updated", help="Send briefings edited after sending again."),
    resend_uncertain: bool = typer.Option(False, "--resend-uncertain", help="Resend rows left uncertain by a crash."),
) -> None:
    """Run the whole pipeline once as a Prefect flow, on the server `briefing serve` runs when there is one.

    Uses PREFECT_API_URL when set, else the Prefect server of a `briefing serve` running on the same output
    folder (found by itself), else a temporary local API started for this run (nothing to set up).

    Ingest feeds → draft stubs → join ready briefings → render per audience → deliver → publish the archive.
    Running it twice sends nothing twice and leaves the archive unchanged. A ready briefing that `briefing
    check` rejects is held back and the others still go out. Exit status 0, or the code of what fell short:
    3 a briefing held back (or other content errors), 4 a feed failed, 5 a briefing not rendered, 6 emails
    failed or uncertain; the highest when several apply.

    Example: briefing run
    """
    try:
        settings = load_settings()
        refuse_strict_early(settings)
        from flows.prefect_session import one_off_session

        running = progress("running the pipeline (ingest → render → deliver → publish)")
        with running, one_off_session(settings.output_dir) as session:
            from flows.pipeline import pipeline  # while a temporary API server starts, if one is needed

            result = session.run(
                pipeline, dry_run=dry_run, resend_updated=resend_updated, resend_uncertain=resend_uncertain
            )
    except BriefingError as err:
        raise fail(err) from None
    emit(result, summary_table(result), summary_text(result))
    if result["delivery"] and not Output.json:
        emit(None, delivery_table(result["delivery"]))
    if result["exit_code"]:
        raise typer.Exit(result["exit_code"])


@app.command()
def status() -> None:
    """Show what is draft, ready, sent (per audience) and failed, and the last ingest per feed.

    Reads the content folder and the store, which it opens read-only: it works on a read-only store and
    never creates or migrates it. The exit status is 0 even when something failed: read the attention
    lines (or `--json`) to act on them.

    Example: briefing --json status
    """
    from flows.status import read_store, status_report

    try:
        settings = load_settings()
        store = read_store(settings)
    except BriefingError as err:
        raise fail(err) from None
    report = status_report(load_content(settings.content_dir), store)
    emit(report, _status_table(report))
    if not Output.json and not Output.quiet:
        if report["feeds"]:
            console.print(_feeds_table(report["feeds"]))
        if report["suppressed"]:
            from flows.app.commands.collect import suppression_table

            console.print(suppression_table(report["suppressed"]))
        for line in report["attention"]:
            console.print(f"[yellow]{escape(line)}[/]", highlight=False, soft_wrap=True)


def _status_table(report: dict[str, Any]) -> Table:
    table = Table(title="briefings")
    for column in ("date", "briefing", "stage", "check", "emails per audience"):
        table.add_column(column, overflow="fold")
    colours = {"draft": "yellow", "ready": "cyan", "sending": "blue", "sent": "green", "attention": "red"}
    for item in report["briefings"]:
        check = "ok" if not item["errors"] + item["warnings"] else f"{item['errors']} err, {item['warnings']} warn"
        emails = "\n".join(
            f"{audience}: " + ", ".join(f"{state} {n}" for state, n in sorted(states.items()))
            for audience, states in sorted(item["audiences"].items())
        )
        stage = f"[{colours[item['stage']]}]{item['stage']}[/]"
        table.add_row(item["date"], item["slug"], stage, check, emails or "—")
    return table


def _feeds_table(feeds: list[dict[str, Any]]) -> Table:
    table = Table(title="last ingest per feed")
    for column in ("feed", "last fetched (UTC)", "status", "new entries", "error"):
        table.add_column(column, overflow="fold")
    for feed in feeds:
        fetched = feed["last_fetched_at"]
        table.add_row(
            str(feed["feed"]),
            fetched.strftime("%Y-%m-%d %H:%M") if fetched else "never",
            str(feed["last_status"] or ""),
            str(feed["entries_new"] or 0),
            str(feed["last_error"] or ""),
        )
    return table


GLOBAL_FLAGS = ("--json", "--quiet", "-q", "--verbose", "-v")


def hoist_global_flags(argv: list[str]) -> list[str]:
    """Let `briefing check --json` mean `briefing --json check`: global flags may follow the command too."""
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in GLOBAL_FLAGS]
    return flags + [a for a in argv[:end] if a not in GLOBAL_FLAGS] + argv[end:]


def main() -> None:
    """Console-script entry point: every error ends as one line and a documented exit code."""
    try:
        app(args=hoist_global_flags(sys.argv[1:]))
    except BriefingError as err:
        raise SystemExit(fail(err).exit_code) from None
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if Output.verbose:
            raise
        logger.debug("unexpected error", exc_info=True)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        message = f"unexpected {type(exc).__name__}: {first_line} — run again with --verbose for the traceback"
        raise SystemExit(fail(BriefingError(message)).exit_code) from None


# Typer lists commands in registration order: check, run and status (above), then these.
register_preview(app)
register_publish(app)
register_delivery(app)
register_orchestrate(app)
register_ingest(app)
register_collect(app)
register_draft(app)
register_init(app)

if __name__ == "__main__":
    main()

"""The `briefing` command line. The CLI owns the terminal: rich tables, one-line errors, exit codes.

Exit codes: 0 ok; 1 unexpected error; 2 bad settings; 3 content problems; 4 fetch error; 5 render error;
6 delivery error (or emails left uncertain/failed); 7 publish error; 8 bad unsubscribe token; 9 store;
10 the mailbox (BRIEFING_IMAP_URL) cannot be read. A command that runs to its end but falls short somewhere
exits with the highest code that applies (`flows.core.errors.partial_failure_code`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
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

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")

from flows.core.content import file_feed_problems, load_content
from flows.core.errors import BriefingError, Problem
from flows.core.settings import load_settings

logger = logging.getLogger(__name__)

STATE_COLUMNS = ("sent", "queued", "sending", "deferred", "failed", "uncertain", "suppressed")

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
    verbose = False


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
    problems.extend(file_feed_problems(loaded.content.feeds, settings.content_dir, settings.file_feed_dirs))
    problems.extend(_alignment_problems(settings, loaded))
    problems.extend(_suppression_problems(settings, loaded))
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


def _alignment_problems(settings: Any, loaded: Any) -> list[Any]:
    """Check translations against stored articles when a store exists (no store is created by checking)."""
    from flows.core.store import open_store
    from flows.edition import errors_in, translation_problems

    if not settings.database_url and not (settings.output_dir / "store.db").exists():
        return []
    store = open_store(settings.store_url)
    return [p for briefing in loaded.content.ready for p in errors_in(translation_problems(briefing, store))]


def _suppression_problems(settings: Any, loaded: Any) -> list[Any]:
    """A warning per subscriber-file row whose address is suppressed (bounced or complained): it is not mailed."""
    from flows.core.store import open_store

    if not settings.database_url and not (settings.output_dir / "store.db").exists():
        return []
    suppressed = open_store(settings.store_url).suppressed()
    problems: list[Any] = []
    for audience in loaded.content.audiences:
        where = str(settings.content_dir / audience.subscribers_file) if audience.subscribers_file else "audiences.yaml"
        for subscriber in audience.subscribers:
            reason = suppressed.get(subscriber.email.lower())
            if reason:
                problems.append(
                    Problem(
                        where,
                        f"{subscriber.email} is suppressed ({reason}): it is not mailed",
                        field=f"{audience.id}.subscribers",
                        hint="remove the row, or `briefing suppression lift ADDRESS` if the address works again",
                        severity="warning",
                    )
                )
    return problems


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
    emit(result, _summary_table(result), _summary_text(result))
    if result["delivery"] and not Output.json:
        emit(None, _delivery_table(result["delivery"]))
    if result["exit_code"]:
        raise typer.Exit(result["exit_code"])


def _summary_table(result: dict[str, Any]) -> Table:
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
    return table


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


def _delivery_table(delivery: dict[str, dict[str, dict[str, int]]]) -> Table:
    table = Table(title="emails per audience (this run)")
    for column in ("briefing", "audience", *STATE_COLUMNS):
        table.add_column(column, justify="left" if column in ("briefing", "audience") else "right")
    for slug, audiences in delivery.items():
        for audience, states in audiences.items():
            table.add_row(slug, audience, *(str(states.get(state, 0)) for state in STATE_COLUMNS))
    return table


def _summary_text(result: dict[str, Any]) -> str:
    return "\n".join(f"[yellow]{escape(p)}[/]" for p in result["problems"])


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


# Command modules register themselves here, one import+call each; typer lists commands in registration order.
from flows.app.commands.collect import register as register_collect  # noqa: E402
from flows.app.commands.content import register as register_init  # noqa: E402
from flows.app.commands.deliver import register as register_delivery  # noqa: E402
from flows.app.commands.draft import register as register_draft  # noqa: E402
from flows.app.commands.ingest import register as register_ingest  # noqa: E402
from flows.app.commands.orchestrate import register as register_orchestrate  # noqa: E402
from flows.app.commands.preview import register as register_preview  # noqa: E402
from flows.app.commands.publish import register as register_publish  # noqa: E402

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

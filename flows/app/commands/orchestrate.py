"""Orchestration commands: `briefing serve`, `briefing ingest`, `briefing brief SLUG`, `briefing deliver`.

Each one-off command runs its Prefect flow in this process (on PREFECT_API_URL when set, else on the server of a
`briefing serve` running on the same output folder, else on a temporary local API: `flows.prefect_session`);
`serve` keeps the deployments, the ingest schedule and the ready trigger running until Ctrl-C.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer

from flows.core.errors import BriefingError
from flows.core.settings import load_settings

logger = logging.getLogger(__name__)


def _finish(result: dict[str, Any]) -> None:
    from flows.app.output import emit, summary_table, summary_text

    emit(result, summary_table(result), summary_text(result))
    if result["exit_code"]:
        raise typer.Exit(result["exit_code"])


def _run_flow(flow_name: str, **parameters: Any) -> dict[str, Any]:
    """Run one flow of `flows.pipeline` in this process, on the API `flows.prefect_session` picks. The flow module
    is imported inside the session, so that importing Prefect overlaps a temporary API server's start-up."""
    from flows.app.output import fail, refuse_strict_early

    try:
        settings = load_settings()
        refuse_strict_early(settings)
        from flows.prefect_session import one_off_session

        with one_off_session(settings.output_dir) as session:
            import flows.pipeline

            result: dict[str, Any] = session.run(getattr(flows.pipeline, flow_name), **parameters)
            return result
    except BriefingError as err:
        raise fail(err) from None


def serve(
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Watch content/ and announce ready briefings."),
) -> None:
    """Serve the deployments until Ctrl-C/SIGTERM: ingest on its schedule, brief when a briefing becomes ready.

    Starts a loopback Prefect server (state under OUTPUT_DIR/.prefect) unless PREFECT_API_URL is set, and
    stops it on exit. Marking a briefing `status: ready` in its file delivers and publishes it within seconds.

    Example: briefing serve
    """
    from flows.app.output import Output, fail

    try:
        settings = load_settings()
        from flows.app.serve import serve as run_serve

        def announce(url: str) -> None:
            if not Output.quiet and not Output.json:
                ui = url[: -len("/api")] if url.endswith("/api") else url
                sys.stdout.write(f"serving ingest, brief, deliver, publish, pipeline, collect on {url} (UI: {ui})\n")
                sys.stdout.flush()

        run_serve(settings, watch=watch, on_ready=announce)
    except BriefingError as err:
        raise fail(err) from None


def ingest(
    feed: str = typer.Option("", "--feed", help="Only the feed with this id (from content/feeds.yaml)."),
) -> None:
    """Fetch every feed once, store new articles and write draft stubs (the `ingest` flow).

    One failing feed stops no other; the exit status is then 4 (3 when content files have errors, and no
    fetch failed). A new feed's back catalogue gets at most BRIEFING_NEW_FEED_STUBS stubs and a run at
    most BRIEFING_MAX_STUBS_PER_RUN; the summary says how many articles were stored without one.

    Example: briefing ingest --feed frontier-notes
    """
    _finish(_run_flow("ingest", feed=feed))


def brief(
    slug: str = typer.Argument(..., help="The briefing's slug (the `slug:` line of its file)."),
    audience: str = typer.Option("", "--audience", help="Only this audience id."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Render only: send and publish nothing."),
    resend_updated: bool = typer.Option(False, "--resend-updated", help="Send again if edited after sending."),
    resend_uncertain: bool = typer.Option(False, "--resend-uncertain", help="Resend rows left uncertain by a crash."),
) -> None:
    """Deliver and publish one ready briefing (the `brief` flow the ready trigger runs).

    Example: briefing brief anthropic-ai-builds-ai --audience atou
    """
    _finish(
        _run_flow(
            "brief",
            slug=slug,
            audience=audience,
            dry_run=dry_run,
            resend_updated=resend_updated,
            resend_uncertain=resend_uncertain,
        )
    )


def deliver(
    slug: str = typer.Option("", "--slug", help="Only the briefing with this slug."),
    audience: str = typer.Option("", "--audience", help="Only this audience id."),
    resend_updated: bool = typer.Option(False, "--resend-updated", help="Send again if edited after sending."),
    resend_uncertain: bool = typer.Option(False, "--resend-uncertain", help="Resend rows left uncertain by a crash."),
) -> None:
    """Send every ready briefing to its audiences (the `deliver` flow); rows already sent are skipped.

    Example: briefing deliver --slug anthropic-ai-builds-ai
    """
    _finish(
        _run_flow(
            "deliver", slug=slug, audience=audience, resend_updated=resend_updated, resend_uncertain=resend_uncertain
        )
    )


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(ingest)
    app.command()(brief)
    app.command()(deliver)

"""`briefing send` and `briefing unsubscribe`: deliver ready briefings exactly once, record unsubscribes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from flows.core.content import Loaded, load_content
from flows.core.errors import BriefingError, DeliveryError
from flows.core.settings import Settings, load_settings

if TYPE_CHECKING:  # the store, the edition and the renderer load SQLAlchemy and MJML: only when a command runs
    from flows.core.store import Store
    from flows.edition import EditionReport, TestSend

logger = logging.getLogger(__name__)

FAILURES_SHOWN = 50


def _report_table(outcome: EditionReport) -> Table:
    from flows.core.store import ledger

    table = Table(title="briefing send", show_header=True)
    table.add_column("briefing / audience", overflow="fold")
    table.add_column("sent now", justify="right")
    table.add_column("ledger rows by state", overflow="fold")
    table.add_column("status", overflow="fold")
    for report in outcome.deliveries:
        for audience, result in report.audiences.items():
            states = " ".join(f"{s}={result.totals[s]}" for s in ledger.STATES if result.totals[s])
            status = "done" if result.complete else (result.error or f"{result.pending} pending")
            table.add_row(f"{report.slug}/{audience}", str(result.states[ledger.SENT]), states or "-", status)
    return table


def _failure_lines(outcome: EditionReport) -> list[str]:
    lines: list[str] = []
    for report in outcome.deliveries:
        for audience, result in report.audiences.items():
            lines.extend(f"{report.slug}/{audience} {f.recipient}: {f.state}: {f.reason}" for f in result.failures)
    if len(lines) > FAILURES_SHOWN:
        lines = [*lines[:FAILURES_SHOWN], f"… and {len(lines) - FAILURES_SHOWN} more (use --json for all)"]
    return lines


def _report_text(outcome: EditionReport) -> str:
    parts = [f"[yellow]held back: {escape(h)}[/]" for h in outcome.held_lines()]
    parts += [f"[red]not rendered: {escape(h)}[/]" for h in outcome.not_rendered]
    failures = _failure_lines(outcome)
    if failures:
        parts.append("[bold]not delivered:[/]")
        parts.extend(escape(line) for line in failures)
    uncertain = outcome.uncertain
    if uncertain:
        parts.append(
            f"[red]{uncertain} uncertain[/]: the server may or may not have them; "
            "`briefing send --resend-uncertain` sends them again with the same Message-ID"
        )
    if not outcome.deliveries and not outcome.held and not outcome.not_rendered:
        parts.append("no ready briefings to send")
    return "\n".join(parts)


def register(app: typer.Typer) -> None:
    from flows.app.output import emit, fail

    @app.command("send")
    def send(
        slug: str | None = typer.Option(None, "--slug", help="Send only this briefing (default: every ready one)."),
        audience: list[str] = typer.Option([], "--audience", help="Send only to this audience (repeatable)."),
        resend_uncertain: bool = typer.Option(
            False, "--resend-uncertain", help="Send rows left uncertain by a crash again (same Message-ID)."
        ),
        resend_updated: bool = typer.Option(
            False, "--resend-updated", help="Send a briefing edited after it was sent again to its recipients."
        ),
        test: str | None = typer.Option(
            None, "--test", metavar="ADDRESS", help="Send one test message to ADDRESS (needs --audience)."
        ),
    ) -> None:
        """Render ready briefings and send each audience's email to its subscribers, exactly once.

        Prints, per briefing and audience, what was sent now and how many ledger rows are in each state, then
        every recipient not delivered with the reason. A ready briefing that `briefing check` rejects (or whose
        translation no longer matches the source) is held back and the others are still sent. Exit status 6 when
        anything failed in this run, is uncertain, or is still pending (deferred by the server); else 5 when a
        ready briefing could not be rendered; else 3 when one was held back. With --test, sends one message
        marked as a test to one address and touches no ledger.

        Example: briefing send --slug anthropic-ai-builds-ai --audience investors
        """
        from flows import edition
        from flows.core.store import open_store

        try:
            settings = load_settings()
            store = open_store(settings.store_url)
            loaded = load_content(settings.content_dir)
            edition.refuse_if_strict(settings.strict, loaded)
            if test is not None:
                sent = _send_test(settings, store, loaded, test, slug, audience)
                emit(sent.to_dict(), text=f"test of {sent.slug}/{sent.audience} sent to {sent.to}: {sent.reply}")
                return
            outcome = edition.send(
                settings,
                store,
                loaded,
                slug=slug,
                audiences=audience,
                resend_uncertain=resend_uncertain,
                resend_updated=resend_updated,
            )
        except BriefingError as err:
            raise fail(err) from None
        emit(outcome.to_dict(), _report_table(outcome) if outcome.deliveries else None, _report_text(outcome))
        if outcome.exit_code:
            raise typer.Exit(outcome.exit_code)

    @app.command("unsubscribe")
    def unsubscribe(
        token: str = typer.Argument(..., help="The token (or the whole unsubscribe link) from an email."),
    ) -> None:
        """Record an unsubscribe from a token: that address gets nothing more from that audience.

        Example: briefing unsubscribe 'https://briefing.example.org/unsubscribe?t=eyJh…'
        """
        from flows.core.store import open_store
        from flows.deliver.unsubscribe import unsubscribe_with_token

        try:
            settings = load_settings()
            done = unsubscribe_with_token(settings, open_store(settings.store_url), token, "cli")
        except BriefingError as err:
            raise fail(err) from None
        state = "unsubscribed" if done.newly else "was already unsubscribed"
        emit(done.__dict__, text=f"{done.email} {state} from {done.audience}")


def _send_test(
    settings: Settings, store: Store, loaded: Loaded, address: str, slug: str | None, audiences: list[str]
) -> TestSend:
    """`--test`: one audience, and the named ready briefing or else the first."""
    from flows import edition

    content = loaded.content
    if len(audiences) != 1:
        raise DeliveryError("--test needs exactly one --audience", hint="e.g. --test me@example.org --audience atou")
    edition.check_choice(content, slug, audiences)
    if not content.ready:
        raise DeliveryError("no ready briefing to send a test of", hint="set `status: ready` in a briefing")
    return edition.send_test(settings, loaded, store, slug or content.ready[0].slug, audiences[0], address)

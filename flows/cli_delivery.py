"""`briefing send` and `briefing unsubscribe`: deliver ready briefings exactly once, record unsubscribes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.content import load_content
from flows.errors import BriefingError, DeliveryError
from flows.models import Content
from flows.settings import Settings, load_settings

if TYPE_CHECKING:  # the store, ledger and renderer load SQLAlchemy and MJML: only when a command needs them
    from flows.render import RenderedBriefing
    from flows.store import Store

logger = logging.getLogger(__name__)

FAILURES_SHOWN = 50


@dataclass
class SendOutcome:
    reports: list[Any] = field(default_factory=list)  # DeliveryReport
    held: list[str] = field(default_factory=list)

    @property
    def needs_attention(self) -> bool:
        """Exit 6: a delivery needs the editor, or a ready briefing could not be sent at all."""
        return bool(self.held) or any(r.needs_attention for r in self.reports)

    def to_dict(self) -> dict[str, Any]:
        return {
            "briefings": [r.to_dict() for r in self.reports],
            "held": self.held,
            "needs_attention": self.needs_attention,
        }


def render_for_send(
    settings: Settings,
    store: Store,
    content: Content,
    slug: str,
    *,
    audiences: list[str] | None = None,
    is_test: bool = False,
) -> RenderedBriefing:
    """Render one ready briefing as the pipeline's render task does (same archive URL, same budget)."""
    from flows.publish import assign_paths, render_for_archive

    briefing = next(b for b in content.ready if b.slug == slug)
    page = assign_paths(store, content.ready)[slug]
    return render_for_archive(settings, content, briefing, page, audiences=audiences, is_test=is_test)


def _check_choice(content: Content, slug: str | None, audiences: list[str]) -> None:
    ready = [b.slug for b in content.ready]
    if slug and slug not in ready:
        raise DeliveryError(
            f"no ready briefing with slug '{slug}'",
            hint=f"ready: {', '.join(ready) or 'none'} (set `status: ready` in the briefing file)",
        )
    known = [a.id for a in content.audiences]
    unknown = [a for a in audiences if a not in known]
    if unknown:
        raise DeliveryError(f"unknown audience {', '.join(unknown)}", hint=f"use one of: {', '.join(known)}")


def send_briefings(
    settings: Settings,
    store: Store,
    content: Content,
    *,
    slug: str | None,
    audiences: list[str],
    resend_uncertain: bool,
    resend_updated: bool,
) -> SendOutcome:
    """Render and deliver every ready briefing (or one); a briefing whose translation drifted is held back."""
    from flows.deliver import deliver_briefing, warn_if_unsubscribe_url_is_not_https
    from flows.join import join_briefings

    _check_choice(content, slug, audiences)
    warn_if_unsubscribe_url_is_not_https(settings)
    outcome = SendOutcome()
    for joined in join_briefings(content, store, [slug] if slug else None):
        if not joined.ok:
            outcome.held.extend(f"{joined.briefing.slug}: {p}" for p in joined.problems if p.severity == "error")
            continue
        try:
            rendered = render_for_send(settings, store, content, joined.briefing.slug, audiences=audiences or None)
        except BriefingError as err:  # one briefing that cannot render does not stop the others
            outcome.held.append(f"{joined.briefing.slug}: {err}")
            continue
        outcome.reports.append(
            deliver_briefing(
                rendered,
                content,
                store,
                settings,
                audiences=audiences or None,
                resend_updated=resend_updated,
                resend_uncertain=resend_uncertain,
            )
        )
    return outcome


def _report_table(outcome: SendOutcome) -> Table:
    from flows import ledger

    table = Table(title="briefing send", show_header=True)
    table.add_column("briefing / audience", overflow="fold")
    table.add_column("sent now", justify="right")
    table.add_column("ledger rows by state", overflow="fold")
    table.add_column("status", overflow="fold")
    for report in outcome.reports:
        for audience, result in report.audiences.items():
            states = " ".join(f"{s}={result.totals[s]}" for s in ledger.STATES if result.totals[s])
            status = "done" if result.complete else (result.error or f"{result.pending} pending")
            table.add_row(f"{report.slug}/{audience}", str(result.states[ledger.SENT]), states or "-", status)
    return table


def _failure_lines(outcome: SendOutcome) -> list[str]:
    lines: list[str] = []
    for report in outcome.reports:
        for audience, result in report.audiences.items():
            lines.extend(f"{report.slug}/{audience} {f.recipient}: {f.state}: {f.reason}" for f in result.failures)
    if len(lines) > FAILURES_SHOWN:
        lines = [*lines[:FAILURES_SHOWN], f"… and {len(lines) - FAILURES_SHOWN} more (use --json for all)"]
    return lines


def _report_text(outcome: SendOutcome) -> str:
    parts = [f"[yellow]held back: {escape(h)}[/]" for h in outcome.held]
    failures = _failure_lines(outcome)
    if failures:
        parts.append("[bold]not delivered:[/]")
        parts.extend(escape(line) for line in failures)
    uncertain = sum(r.uncertain for r in outcome.reports)
    if uncertain:
        parts.append(
            f"[red]{uncertain} uncertain[/]: the server may or may not have them; "
            "`briefing send --resend-uncertain` sends them again with the same Message-ID"
        )
    if not outcome.reports and not outcome.held:
        parts.append("no ready briefings to send")
    return "\n".join(parts)


def register(app: typer.Typer) -> None:
    from flows.cli import emit, fail

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
        every recipient not delivered with the reason. Exit status 6 when anything failed in this run, is
        uncertain, or is still pending (deferred by the server), or when a ready briefing was held back (its
        translation no longer matches the source, or it cannot be rendered); the other briefings are still
        sent. With --test, sends one message marked as a test to one address and touches no ledger.

        Example: briefing send --slug anthropic-ai-builds-ai --audience investors
        """
        from flows.store import open_store

        try:
            settings = load_settings()
            store = open_store(settings.store_url)
            loaded = load_content(settings.content_dir)
            if settings.strict and loaded.errors:
                raise BriefingError(f"{len(loaded.errors)} content problems (strict mode): {loaded.errors[0]}")
            if test is not None:
                _send_test(settings, store, loaded.content, test, slug, audience, emit)
                return
            outcome = send_briefings(
                settings,
                store,
                loaded.content,
                slug=slug,
                audiences=audience,
                resend_uncertain=resend_uncertain,
                resend_updated=resend_updated,
            )
        except BriefingError as err:
            raise fail(err) from None
        emit(outcome.to_dict(), _report_table(outcome) if outcome.reports else None, _report_text(outcome))
        if outcome.needs_attention:
            raise typer.Exit(6)

    @app.command("unsubscribe")
    def unsubscribe(
        token: str = typer.Argument(..., help="The token (or the whole unsubscribe link) from an email."),
    ) -> None:
        """Record an unsubscribe from a token: that address gets nothing more from that audience.

        Example: briefing unsubscribe 'https://briefing.example.org/unsubscribe?t=eyJh…'
        """
        from flows.store import open_store
        from flows.unsubscribe import unsubscribe_with_token

        try:
            settings = load_settings()
            done = unsubscribe_with_token(settings, open_store(settings.store_url), token, "cli")
        except BriefingError as err:
            raise fail(err) from None
        state = "unsubscribed" if done.newly else "was already unsubscribed"
        emit(done.__dict__, text=f"{done.email} {state} from {done.audience}")


def _send_test(
    settings: Settings,
    store: Store,
    content: Content,
    address: str,
    slug: str | None,
    audiences: list[str],
    emit: Any,
) -> None:
    from flows import ledger
    from flows.deliver import send_test

    if len(audiences) != 1:
        raise DeliveryError("--test needs exactly one --audience", hint="e.g. --test me@example.org --audience atou")
    _check_choice(content, slug, audiences)
    if not content.ready:
        raise DeliveryError("no ready briefing to send a test of", hint="set `status: ready` in a briefing")
    chosen = slug or content.ready[0].slug
    rendered = render_for_send(settings, store, content, chosen, audiences=audiences, is_test=True)
    email = rendered.emails[audiences[0]]
    message_id, result = send_test(email, content.audience(audiences[0]), address, settings)
    data = {"slug": chosen, "audience": audiences[0], "to": address, "message_id": message_id, **result.__dict__}
    if result.state != ledger.SENT:
        raise DeliveryError(f"test message {result.state}: {result.reply}", where=f"{chosen}/{audiences[0]}")
    emit(data, text=f"test of {chosen}/{audiences[0]} sent to {address}: {result.reply}")

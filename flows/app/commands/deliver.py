"""`briefing send` and `briefing unsubscribe`: deliver ready briefings exactly once, record unsubscribes."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.core.content import Loaded, load_content
from flows.core.errors import BriefingError, DeliveryError, partial_failure_code
from flows.core.models import Content
from flows.core.settings import Settings, load_settings

if TYPE_CHECKING:  # the store, ledger and renderer load SQLAlchemy and MJML: only when a command needs them
    from flows.core.store import Store
    from flows.render.email import RenderedBriefing

logger = logging.getLogger(__name__)

FAILURES_SHOWN = 50


@dataclass
class SendOutcome:
    reports: list[Any] = field(default_factory=list)  # DeliveryReport
    held: list[str] = field(default_factory=list)  # ready briefings `briefing check` rejects: not sent
    not_rendered: list[str] = field(default_factory=list)  # ready briefings whose rendering failed: not sent

    @property
    def needs_attention(self) -> bool:
        """A delivery needs the editor, or a ready briefing could not be sent at all."""
        return bool(self.held or self.not_rendered) or any(r.needs_attention for r in self.reports)

    @property
    def exit_code(self) -> int:
        """3 held back, 5 not rendered, 6 failed, uncertain or pending; the highest wins (partial_failure_code)."""
        return partial_failure_code(
            content=bool(self.held),
            render=bool(self.not_rendered),
            delivery=any(r.needs_attention for r in self.reports),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "briefings": [r.to_dict() for r in self.reports],
            "held": self.held,
            "not_rendered": self.not_rendered,
            "needs_attention": self.needs_attention,
            "exit_code": self.exit_code,
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
    from flows.publish.archive import assign_paths, render_for_archive

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
    loaded: Loaded,
    *,
    slug: str | None,
    audiences: list[str],
    resend_uncertain: bool,
    resend_updated: bool,
) -> SendOutcome:
    """Render and deliver every ready briefing (or one); one that `briefing check` rejects (or whose translation
    drifted from its article) is held back, and the others are still sent."""
    from flows.deliver.send import deliver_briefing, warn_if_unsubscribe_url_is_not_https
    from flows.readiness import errors_in, gate

    content = loaded.content
    _check_choice(content, slug, audiences)
    warn_if_unsubscribe_url_is_not_https(settings)
    outcome = SendOutcome()
    checked = gate(loaded, store, [slug] if slug else None)
    for joined in checked.held:
        outcome.held.extend(f"{joined.briefing.slug}: {p}" for p in errors_in(joined.problems))
    for joined in checked.passed:
        try:
            rendered = render_for_send(settings, store, content, joined.briefing.slug, audiences=audiences or None)
        except BriefingError as err:  # one briefing that cannot render does not stop the others
            outcome.not_rendered.append(f"{joined.briefing.slug}: {err}")
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
    from flows.core.store import ledger

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
    parts += [f"[red]not rendered: {escape(h)}[/]" for h in outcome.not_rendered]
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
    if not outcome.reports and not outcome.held and not outcome.not_rendered:
        parts.append("no ready briefings to send")
    return "\n".join(parts)


def register(app: typer.Typer) -> None:
    from flows.app.cli import emit, fail

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
        from flows.core.store import open_store
        from flows.readiness import refuse_if_strict

        try:
            settings = load_settings()
            store = open_store(settings.store_url)
            loaded = load_content(settings.content_dir)
            refuse_if_strict(settings.strict, loaded)
            if test is not None:
                _send_test(settings, store, loaded, test, slug, audience, emit)
                return
            outcome = send_briefings(
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
        emit(outcome.to_dict(), _report_table(outcome) if outcome.reports else None, _report_text(outcome))
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
    settings: Settings,
    store: Store,
    loaded: Loaded,
    address: str,
    slug: str | None,
    audiences: list[str],
    emit: Any,
) -> None:
    from flows.core.store import ledger
    from flows.deliver import send_test
    from flows.readiness import ContentProblemsError, gate

    content = loaded.content
    if len(audiences) != 1:
        raise DeliveryError("--test needs exactly one --audience", hint="e.g. --test me@example.org --audience atou")
    _check_choice(content, slug, audiences)
    if not content.ready:
        raise DeliveryError("no ready briefing to send a test of", hint="set `status: ready` in a briefing")
    chosen = slug or content.ready[0].slug
    held = gate(loaded, store, [chosen]).held_lines()
    if held:
        raise ContentProblemsError(f"not sending a test of a briefing `briefing check` rejects: {held[0]}")
    rendered = render_for_send(settings, store, content, chosen, audiences=audiences, is_test=True)
    email = rendered.emails[audiences[0]]
    message_id, result = send_test(email, content.audience(audiences[0]), address, settings)
    data = {"slug": chosen, "audience": audiences[0], "to": address, "message_id": message_id, **result.__dict__}
    if result.state != ledger.SENT:
        raise DeliveryError(f"test message {result.state}: {result.reply}", where=f"{chosen}/{audiences[0]}")
    emit(data, text=f"test of {chosen}/{audiences[0]} sent to {address}: {result.reply}")

"""`briefing collect`, `briefing discussion list|approve|reject`, `briefing suppression list|add|lift`."""

from __future__ import annotations

import logging
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.core.errors import BriefingError

logger = logging.getLogger(__name__)

discussion_app = typer.Typer(
    help="Moderate readers' replies: list, approve or reject discussion entries.\n\nExample: briefing discussion list",
    no_args_is_help=True,
)
suppression_app = typer.Typer(
    help="Addresses that are never mailed (bounced or complained): list, add, lift.\n\n"
    "Example: briefing suppression list",
    no_args_is_help=True,
)


def _open() -> tuple[Any, Any]:
    from flows.core.settings import load_settings
    from flows.core.store import open_store

    settings = load_settings()
    return settings, open_store(settings.store_url)


def collect() -> None:
    """Read the mailbox (BRIEFING_IMAP_URL) once: replies become pending discussion entries, bounces and
    complaints suppress addresses, mailto unsubscribes are recorded; every message is moved to a folder for its
    class (Briefing/Replies, …). Each message is acted on once, even across crashes and reruns.

    Example: briefing collect   (with BRIEFING_IMAP_URL=imaps://news:secret@imap.example.org/INBOX)
    """
    from flows.app.output import emit, fail
    from flows.collect import collect_mailbox

    try:
        settings, store = _open()
        report = collect_mailbox(settings, store)
    except BriefingError as err:
        raise fail(err) from None
    data = report.to_dict()
    emit(data, _collect_table(data), _collect_text(data))


def _collect_table(data: dict[str, Any]) -> Table:
    table = Table(title=f"briefing collect · {data['mailbox']}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("detail", overflow="fold")
    table.add_row("messages in the folder", str(data["seen"]), f"UIDVALIDITY {data['uidvalidity']}")
    for kind, count in sorted(data["processed"].items()):
        details = [m["detail"] for m in data["messages"] if m["kind"] == kind][:5]
        table.add_row(kind, str(count), "\n".join(details))
    table.add_row("processed before (moved now)", str(data["repeats"]), "")
    table.add_row("moved", str(data["moved"]), "")
    table.add_row("new discussion entries", str(data["entries"]), "`briefing discussion list` to moderate")
    table.add_row("suppressed", str(len(data["suppressed"])), ", ".join(data["suppressed"]))
    table.add_row("unsubscribed", str(len(data["unsubscribed"])), ", ".join(data["unsubscribed"]))
    return table


def _collect_text(data: dict[str, Any]) -> str:
    lines = [f"[yellow]{escape(e)}[/]" for e in data["move_errors"]]
    if data["uidvalidity_changed"]:
        lines.append("[yellow]the folder's UIDVALIDITY changed: messages were recognised by their content[/]")
    return "\n".join(lines)


@discussion_app.command("list")
def discussion_list(
    status: str = typer.Option("pending", "--status", help="pending, approved, rejected or all."),
    slug: str = typer.Option("", "--slug", help="Only entries replying to this briefing."),
) -> None:
    """List discussion entries made from readers' replies (pending ones by default), with their ids.

    Example: briefing discussion list --status all --slug github-commit-flood
    """
    from flows.app.output import emit, fail
    from flows.core.store.discussion import STATUSES, list_entries

    if status not in (*STATUSES, "all"):
        raise fail(BriefingError(f"unknown status {status!r}", hint="use pending, approved, rejected or all"))
    try:
        _settings, store = _open()
        entries = list_entries(store, status=None if status == "all" else status, slug=slug or None)
    except BriefingError as err:
        raise fail(err) from None
    table = Table(title=f"discussion entries ({status})")
    for column in ("id", "status", "briefing / audience", "from", "received (UTC)", "text"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(
            str(entry.id),
            entry.status,
            f"{entry.slug}\n{entry.audience}",
            f"{entry.sender_name}\n{entry.sender_email}".strip(),
            entry.received_at.strftime("%Y-%m-%d %H:%M"),
            entry.text if len(entry.text) <= 400 else entry.text[:399] + "…",
        )
    emit({"entries": [e.to_dict() for e in entries]}, table, f"{len(entries)} entries")


def _decide(entry_ids: list[int], status: str) -> None:
    from flows.app.output import emit, fail
    from flows.core.store.discussion import decide

    try:
        _settings, store = _open()
        results = decide(store, entry_ids, status)
    except BriefingError as err:
        raise fail(err) from None
    missing = [i for i, r in results.items() if r == "no such entry"]
    emit(
        {"results": {str(k): v for k, v in results.items()}},
        text="\n".join(f"entry {i}: {r}" for i, r in results.items())
        + ("\nthe archive changes at the next `briefing publish`" if len(missing) < len(results) else ""),
    )
    if missing:
        ids = ", ".join(map(str, missing))
        hint = "see `briefing discussion list --status all`"
        raise fail(BriefingError(f"no discussion entry with id {ids}", hint=hint))


@discussion_app.command("approve")
def discussion_approve(entry_ids: list[int] = typer.Argument(..., help="Entry ids from `discussion list`.")) -> None:
    """Approve entries: they appear in the archive's discussion view (讨论归档) at the next `briefing publish`.

    Example: briefing discussion approve 3 4 && briefing publish
    """
    _decide(entry_ids, "approved")


@discussion_app.command("reject")
def discussion_reject(entry_ids: list[int] = typer.Argument(..., help="Entry ids from `discussion list`.")) -> None:
    """Reject entries: they never appear, and an entry approved before is removed at the next `briefing publish`.

    Example: briefing discussion reject 5
    """
    _decide(entry_ids, "rejected")


@suppression_app.command("list")
def suppression_list(
    lifted: bool = typer.Option(False, "--lifted", help="Include suppressions an editor has lifted."),
) -> None:
    """List suppressed addresses with the reason (hard bounce, soft bounces, complaint, manual) and since when.

    Example: briefing suppression list
    """
    from flows.app.output import emit, fail
    from flows.core.store.suppressions import list_suppressions

    try:
        _settings, store = _open()
        rows = list_suppressions(store, include_lifted=lifted)
    except BriefingError as err:
        raise fail(err) from None
    items = [r.to_dict() for r in rows]
    emit({"suppressed": items}, suppression_table(items), f"{len(rows)} addresses")


def suppression_table(items: list[dict[str, str]]) -> Table:
    table = Table(title="suppressed addresses (never mailed)")
    for column in ("address", "since (UTC)", "source", "reason", "lifted"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(item["email"], item["at"], item["source"], item["reason"], item["lifted_at"])
    return table


@suppression_app.command("lift")
def suppression_lift(address: str = typer.Argument(..., help="The suppressed address.")) -> None:
    """Lift a suppression: briefings sent from now on go to the address again (emails already marked
    `suppressed` in the ledger are not sent late).

    Example: briefing suppression lift reader@example.org
    """
    from flows.app.output import emit, fail
    from flows.core.store.suppressions import lift

    try:
        _settings, store = _open()
        lifted = lift(store, address)
    except BriefingError as err:
        raise fail(err) from None
    if lifted is None:
        raise fail(BriefingError(f"{address} is not suppressed", hint="see `briefing suppression list`"))
    emit(lifted.to_dict(), text=f"lifted the suppression of {lifted.email} ({lifted.reason})")


@suppression_app.command("add")
def suppression_add(
    address: str = typer.Argument(..., help="The address never to mail."),
    reason: str = typer.Option("suppressed by an editor", "--reason", help="Why (shown by status and preview)."),
) -> None:
    """Suppress an address by hand (for example after a reader asked by phone): it is never mailed until lifted.

    Example: briefing suppression add reader@example.org --reason "asked to stop by phone"
    """
    from flows.app.output import emit, fail
    from flows.core.content import check_address
    from flows.core.store.suppressions import add_manual

    try:
        email = check_address(address)
    except ValueError as exc:
        raise fail(BriefingError(f"invalid address {address!r}: {exc}", hint="give a full address")) from None
    try:
        _settings, store = _open()
        added = add_manual(store, email, reason)
    except BriefingError as err:
        raise fail(err) from None
    emit({"email": email, "added": added}, text=f"{email}: {'suppressed' if added else 'already suppressed'}")


def register(app: typer.Typer) -> None:
    app.command()(collect)
    app.add_typer(discussion_app, name="discussion")
    app.add_typer(suppression_app, name="suppression")

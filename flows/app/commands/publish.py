"""`briefing publish`: publish the archive (Markdown, HTML, feed) from the current content and store."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from flows.core.errors import BriefingError, partial_failure_code

logger = logging.getLogger(__name__)


def publish(
    mkdocs_config: Path | None = typer.Option(
        None, "--mkdocs-config", help="Also write a mkdocs.yml for building the Markdown archive with MkDocs."
    ),
) -> None:
    """Publish every ready briefing to the archive: Markdown pages, the static HTML version, indexes and the feed.

    Only files whose bytes changed are written; with BRIEFING_ARCHIVE_GIT_REMOTE set, the changes are committed
    and pushed. Prints how many files were written and left unchanged, and every written path. A ready briefing
    that `briefing check` rejects is left out (its page already on disk stays as it was) and the exit status is 3.

    Example: briefing publish --mkdocs-config mkdocs.yml && mkdocs build --strict -f mkdocs.yml
    """
    from flows.app.output import emit, fail
    from flows.core.content import load_content
    from flows.core.files import atomic_write_bytes
    from flows.core.settings import load_settings
    from flows.core.store import open_store
    from flows.edition import gate, refuse_if_strict
    from flows.publish import publish_archive
    from flows.publish.archive import mkdocs_config as make_mkdocs_config

    try:
        settings = load_settings()
        loaded = load_content(settings.content_dir)
        refuse_if_strict(settings.strict, loaded)
        store = open_store(settings.store_url)
        checked = gate(loaded, store, pages=False)
        report = publish_archive(loaded.content, store, settings, checked.publishable)
        report.held = checked.held_lines()
        if mkdocs_config is not None:
            site = settings.output_dir / "site"
            atomic_write_bytes(mkdocs_config, make_mkdocs_config(settings, site).encode("utf-8"))
    except BriefingError as err:
        raise fail(err) from None
    data = report.to_dict(settings.archive_path)
    if mkdocs_config is not None:
        data["mkdocs_config"] = str(mkdocs_config)
    emit(data, _table(data), _text(data))
    if report.held:
        raise typer.Exit(partial_failure_code(content=True))


def _table(data: dict) -> Table:
    table = Table(title="briefing publish", show_header=True)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("where / detail", overflow="fold")
    table.add_row("pages", str(len(data["pages"])), "\n".join(f"{s}: {p}" for s, p in data["pages"].items()))
    table.add_row("files written", str(len(data["written"])), "\n".join(data["written"]))
    table.add_row("files unchanged", str(data["unchanged"]), data["archive"])
    if data["commit"]:
        table.add_row("git commit", "1", data["commit"])
    return table


def _text(data: dict) -> str:
    lines = [f"[yellow]held back (not published): {escape(line)}[/]" for line in data["held"]]
    if data.get("mkdocs_config"):
        lines.append(f"mkdocs config: {data['mkdocs_config']}")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    app.command(name="publish")(publish)

"""`briefing init DIR`: a new project folder with working sample content. Imports neither Prefect nor the store."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from flows.core.errors import BriefingError

logger = logging.getLogger(__name__)


def init(
    folder: Path = typer.Argument(..., metavar="DIR", help="The project folder to create (new, or empty)."),
) -> None:
    """Create a project folder: DIR/content/ with audiences, feeds, subscribers, a sample feed and sample briefings.

    Never overwrites anything: a DIR that exists and is not empty is refused (exit code 3). Then
    `cd DIR && briefing run` works with default settings: it reads DIR/content/ and writes DIR/outputs/
    (or set BRIEFING_CONTENT_DIR=DIR/content from anywhere else).

    Example: briefing init my-briefing
    """
    from flows.app.output import emit, fail
    from flows.core.resources import init_project

    try:
        report = init_project(folder)
    except BriefingError as err:
        raise fail(err) from None
    table = Table(title=f"briefing init {folder}", show_header=False)
    table.add_column("created", overflow="fold")
    for path in report.created:
        table.add_row(str(path))
    emit(report.to_dict(), table, f"next: [bold]{escape(report.next_command)}[/]")


def register(app: typer.Typer) -> None:
    app.command()(init)

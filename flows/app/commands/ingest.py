"""`briefing add URL` (alias `briefing new URL`): one article outside any feed, stored and given a draft stub."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import typer
from rich.table import Table

from flows.core.content import load_content
from flows.core.errors import BriefingError

logger = logging.getLogger(__name__)


def add(url: str = typer.Argument(..., help="The article's http(s) URL.")) -> None:
    """Ingest one article outside any feed and write its draft stub under content/briefings/.

    The page is fetched with the same limits and safety checks as feeds, its main text, title, author,
    date and images extracted, the article stored, and a `draft` stub written with its paragraphs ready
    for translation. A briefing that already exists for the article is never overwritten; its path is
    printed instead. `briefing new URL` does the same. With BRIEFING_DRAFT_NEW_STUBS on, the new stub's empty
    sections are then drafted by the model (see `briefing draft`).

    Example: briefing add https://example.org/2026/06/some-article --json
    """
    from flows.app.output import emit, fail
    from flows.core.settings import load_settings
    from flows.core.store import open_store
    from flows.edition import refuse_if_strict
    from flows.ingest import ingest_url
    from flows.ingest.stubs import find_briefing, write_stub

    try:
        settings = load_settings()
        loaded = load_content(settings.content_dir)
        refuse_if_strict(settings.strict, loaded)
        added = ingest_url(url, open_store(settings.store_url), settings)
        existing = find_briefing(added.article, loaded.content.briefings)
        if existing is not None:
            stub, created = existing.path, False
        else:
            path = write_stub(added.article, settings.content_dir, loaded.content.audiences, date.today())
            stub, created = str(path), True
        drafted = _draft_new_stub(settings, stub) if created and settings.draft_new_stubs else None
    except BriefingError as err:
        raise fail(err) from None
    article = added.article
    data = {
        "stub": stub,
        "created": created,
        "article_id": article.id,
        "status": added.status,
        "url": article.url,
        "title": article.title,
        "paragraphs": len(article.paragraphs),
    }
    if drafted is not None:
        data["drafted"] = drafted
    table = Table(title="briefing add", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        table.add_row(key, str(value))
    note = "" if created else "[yellow]a briefing for this article already exists; it was left unchanged[/]"
    emit(data, table, note)


def _draft_new_stub(settings: Any, stub: str) -> list[str]:
    """The opt-in machine draft of a new stub (BRIEFING_DRAFT_NEW_STUBS): what was filled, for the editor to review."""
    from flows.core.store import open_store
    from flows.draft import draft_briefing

    report = draft_briefing(settings, open_store(settings.store_url), stub)
    for failure in report.failures:
        logger.warning("%s: %s was not drafted: %s", stub, failure.part, failure.reason)
    return report.filled


def register(app: typer.Typer) -> None:
    app.command("add")(add)
    app.command(
        "new",
        help="Same as `briefing add`: ingest one article URL and write its draft stub.\n\n"
        "Example: briefing new https://example.org/2026/06/some-article",
    )(add)

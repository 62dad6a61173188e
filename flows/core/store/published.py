"""The published pages repository: where each briefing's archive page was first published, its source article,
the digest of what it shows and when it changed (`flows.core.pages` plans with it, publishing records it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert, select, update

from flows.core.store.base import Database
from flows.core.store.schema import published


class PublishedPage(Protocol):
    """What `record` needs of a planned page (`flows.core.pages.PlannedPage`)."""

    @property
    def slug(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def digest(self) -> str: ...
    @property
    def first_published(self) -> datetime: ...
    @property
    def updated(self) -> datetime: ...
    @property
    def stored_slug(self) -> str | None: ...


def all_pages(store: Database) -> list[Any]:
    """Every published row (slug, path, content_hash, first_published, updated, article_key)."""
    with store.engine.connect() as conn:
        return list(conn.execute(select(published)))


def record(store: Database, pages: tuple[PublishedPage, ...]) -> None:
    """Remember each page's path, source article, content hash and times (after its files were written)."""
    with store.begin() as conn:
        # Renamed slugs are parked first, so two briefings that swap slugs never collide on the primary key.
        renamed = [p for p in pages if p.stored_slug is not None and p.stored_slug != p.slug]
        parked = {p.slug: f"~{p.stored_slug}" for p in renamed}
        for page in renamed:
            conn.execute(update(published).where(published.c.slug == page.stored_slug).values(slug=parked[page.slug]))
        for page in pages:
            current = parked.get(page.slug, page.stored_slug)
            values = {
                "slug": page.slug,
                "path": page.path,
                "content_hash": page.digest,
                "article_key": page.key,
                "updated": page.updated,
            }
            if page.stored_slug is None:
                conn.execute(insert(published).values(first_published=page.first_published, **values))
            else:
                conn.execute(update(published).where(published.c.slug == current).values(**values))

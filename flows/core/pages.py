"""Where a briefing's archive page lives, decided before anything is rendered, sent or written.

Every email links to its briefing's archive page, so delivery needs the page's URL as much as publishing needs its
path; both ask here. A page keeps the path of its first publication (`YYYY/MM/<slug>.md`, recorded in the store's
`published` table); a briefing is recognised by its source article (`article_key`) even after a slug or date
edit. `plan_pages` plans every page (path, content digest, first publication, last change) without writing;
`assign_paths` gives slug → path. `archive_url` is a page's web address (the emails' "read online" link).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flows.core.errors import PublishError
from flows.core.identity import canonical_url, short_hash
from flows.core.models import Briefing, stable_dump
from flows.core.settings import Settings
from flows.core.store import Store, published, utcnow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedPage:
    """Where one briefing is published and when its content last changed, decided before anything is written."""

    briefing: Briefing
    path: str  # archive-relative Markdown path, fixed at first publication
    key: str  # identity of the source article
    digest: str  # hash of everything the page shows
    first_published: datetime
    updated: datetime
    stored_slug: str | None  # primary key of the existing `published` row, None for a first publication

    @property
    def slug(self) -> str:
        return self.briefing.slug

    @property
    def html_path(self) -> str:
        return html_link(self.path)

    @property
    def month(self) -> str:
        return self.path[:7]


def page_path_for(briefing: Briefing) -> str:
    return f"{briefing.date:%Y/%m}/{briefing.slug}.md"


def html_link(md_path: str) -> str:
    return md_path[:-3] + ".html" if md_path.endswith(".md") else md_path


def archive_url(settings: Settings, md_path: str) -> str:
    """Absolute web address of an archive page (the emails' "read online" link): BASE/YYYY/MM/slug.html."""
    return f"{settings.base_url}/{html_link(md_path)}"


def archive_index_url(settings: Settings) -> str:
    return f"{settings.base_url}/index.html"


def article_key(briefing: Briefing) -> str:
    """Identity of the briefing's source article: its article id, else a hash of its canonical URL."""
    return briefing.article_id or short_hash("link", canonical_url(briefing.source.url))


def page_digest(briefing: Briefing) -> str:
    """Hash of everything the archive page shows (the discussion archive included, unlike the email hash)."""
    payload = stable_dump(briefing, exclude={"path", "status"})
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _newest_first(briefings: tuple[Briefing, ...]) -> tuple[Briefing, ...]:
    return tuple(sorted(briefings, key=lambda b: (b.date, b.slug), reverse=True))


def _check_duplicate_slugs(briefings: tuple[Briefing, ...]) -> None:
    seen: dict[str, Briefing] = {}
    for briefing in briefings:
        if briefing.slug in seen:
            raise PublishError(
                f"{seen[briefing.slug].path} and {briefing.path} both use the slug '{briefing.slug}'",
                hint="give one of the two briefings another slug",
            )
        seen[briefing.slug] = briefing


def _match_rows(briefings: tuple[Briefing, ...], rows: list[Any]) -> dict[str, Any]:
    """Slug → the `published` row of the same briefing: by source article first, then by slug."""
    by_key = {r.article_key: r for r in rows if r.article_key}
    by_slug = {r.slug: r for r in rows}
    matched: dict[str, Any] = {}
    claimed: set[str] = set()
    for briefing in briefings:
        row = by_key.get(article_key(briefing))
        if row is not None and row.slug not in claimed:
            matched[briefing.slug] = row
            claimed.add(row.slug)
    for briefing in briefings:
        row = by_slug.get(briefing.slug)
        if briefing.slug in matched or row is None or row.slug in claimed:
            continue
        if row.article_key and row.article_key != article_key(briefing):
            logger.warning(
                "%s: slug '%s' was published for another source article; keeping its page %s",
                briefing.path,
                briefing.slug,
                row.path,
            )
        matched[briefing.slug] = row
        claimed.add(row.slug)
    return matched


def plan_pages(store: Store, briefings: tuple[Briefing, ...], now: datetime | None = None) -> tuple[PlannedPage, ...]:
    """Decide every page's path and `updated` time, newest first, without writing anything.

    A page keeps the path of its first publication; a briefing is recognised by its source article (article id
    or canonical URL) even after a slug edit. Two briefings that would share a path are an error naming both.
    """
    ordered = _newest_first(briefings)
    _check_duplicate_slugs(ordered)
    now = (now or utcnow()).replace(microsecond=0)
    rows = published.all_pages(store)
    matched = _match_rows(ordered, rows)
    plans = []
    for briefing in ordered:
        row = matched.get(briefing.slug)
        digest = page_digest(briefing)
        if row is None:
            plans.append(PlannedPage(briefing, page_path_for(briefing), article_key(briefing), digest, now, now, None))
            continue
        updated = row.updated if row.content_hash == digest else now
        plans.append(
            PlannedPage(briefing, row.path, article_key(briefing), digest, row.first_published, updated, row.slug)
        )
    _check_clashes(plans, rows, matched)
    return tuple(plans)


def _check_clashes(plans: list[PlannedPage], rows: list[Any], matched: dict[str, Any]) -> None:
    claimed = {row.slug for row in matched.values()}
    unclaimed_paths = {r.path: r for r in rows if r.slug not in claimed}
    unclaimed_slugs = {r.slug: r for r in rows if r.slug not in claimed}
    seen: dict[str, PlannedPage] = {}
    for plan in plans:
        other = seen.get(plan.path)
        if other is not None:
            raise PublishError(
                f"{other.briefing.path} and {plan.briefing.path} would both publish to {plan.path}",
                hint="give one of the two briefings another slug",
            )
        seen[plan.path] = plan
        old = unclaimed_paths.get(plan.path) or (unclaimed_slugs.get(plan.slug) if plan.stored_slug else None)
        if old is not None:
            raise PublishError(
                f"{plan.briefing.path}: {old.path} was already published for the briefing '{old.slug}'",
                hint="give this briefing another slug; published URLs never change hands",
            )


def assign_paths(store: Store, briefings: tuple[Briefing, ...]) -> dict[str, str]:
    """Slug → archive Markdown path: the path of first publication, or where a first publication will go."""
    return {plan.slug: plan.path for plan in plan_pages(store, briefings)}

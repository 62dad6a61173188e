"""Curation stubs: a draft briefing file per new article, pre-filled for the editor. Entry point: `write_stubs`."""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from flows.core.briefing_format import dump_front_matter, write_image
from flows.core.content import BRIEFINGS_DIR
from flows.core.identity import canonical_url
from flows.core.models import Article, Audience, Briefing, ParagraphKind

logger = logging.getLogger(__name__)


def slugify(text: str, fallback: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    slug = "-".join(slug.split("-")[:8])[:60].strip("-")
    return slug or fallback


def find_briefing(article: Article, briefings: tuple[Briefing, ...]) -> Briefing | None:
    """The briefing (an editor's file or an earlier stub) already written for this article, if any."""
    url = canonical_url(article.url)
    return next(
        (b for b in briefings if b.article_id == article.id or (url and canonical_url(b.source.url) == url)), None
    )


def has_briefing(article: Article, briefings: tuple[Briefing, ...]) -> bool:
    return find_briefing(article, briefings) is not None


def render_stub(article: Article, slug: str, audiences: tuple[Audience, ...], today: date) -> str:
    published = article.published.date() if article.published else None
    source = {
        "url": article.url,
        "title": article.title,
        "site": article.site,
        "author": article.author,
        "published": published.isoformat() if published else None,
    }
    meta = {
        "slug": slug,
        "status": "draft",
        "date": today.isoformat(),
        "source": {k: v for k, v in source.items() if v},
        "article_id": article.id,
        "feed": article.feed_id,
        "tags": [],
    }
    if not article.feed_id:
        del meta["feed"]
    parts = [
        dump_front_matter(meta),
        "",
        "<!-- A draft: fill in every section, then set status: ready. Format: docs/content-format.md -->",
        "",
        "## Verdict",
        "",
        "<!-- One sentence: the headline judgement. -->",
        "",
        "## Judgement",
        "",
        "<!-- One paragraph: what holds up, what does not, and why. -->",
        "",
        "## Core points",
        "",
        "<!-- - **Bold lead** explanation (one bullet per point) -->",
        "",
        "## Audience notes",
        "",
    ]
    for audience in audiences:
        parts += [f"### {audience.id}", "Means: ", "Next: ", ""]
    parts += [
        "## Discussion prompts",
        "",
        "<!-- 1. A question per line -->",
        "",
        "## Translation",
        "",
        "<!-- Write the translation under each quoted source paragraph; keep the ### ids. -->",
        "",
    ]
    for paragraph in article.paragraphs:
        parts.append(f"### {paragraph.id}")
        if paragraph.kind is ParagraphKind.IMAGE:
            parts.append(f"> {write_image(paragraph.image_alt, paragraph.image_src)}")
            if paragraph.text:
                parts.append(f"> {paragraph.text}")
        else:
            parts.append(f"> {paragraph.text}")
        parts += ["", ""]
    parts += ["## Discussion archive", "", "<!-- ### YYYY-MM-DD · Name, then the entry -->", ""]
    return "\n".join(parts)


def _unique_path(folder: Path, slug: str) -> tuple[Path, str]:
    candidate, n = slug, 2
    while (folder / f"{candidate}.md").exists() or (folder / candidate).exists():
        candidate, n = f"{slug}-{n}", n + 1
    return folder / f"{candidate}.md", candidate


def write_stub(article: Article, content_dir: Path, audiences: tuple[Audience, ...], today: date) -> Path:
    """Create the stub file exclusively: an existing file (an editor's) is never overwritten."""
    folder = content_dir / BRIEFINGS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path, slug = _unique_path(folder, slugify(article.title, f"article-{article.id[:8]}"))
    text = render_stub(article, slug, audiences, today)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    logger.info("wrote draft stub %s for %s", path, article.url)
    return path


@dataclass
class StubPlan:
    """Which new articles get a draft stub this run, and why the others do not (lines for the run summary)."""

    articles: list[Article] = field(default_factory=list)
    quiet: list[str] = field(default_factory=list)
    left_out: int = 0


def _published(article: Article) -> datetime:
    if article.published is None:
        return datetime.min.replace(tzinfo=UTC)
    return article.published if article.published.tzinfo else article.published.replace(tzinfo=UTC)


def _newest_first(articles: list[Article]) -> list[Article]:
    """Newest first; undated articles last, in their feed's order (sorted() is stable)."""
    return sorted(articles, key=_published, reverse=True)


def plan_stubs(
    outcomes: Iterable[Any],
    articles: dict[str, Article],
    briefings: tuple[Briefing, ...],
    *,
    new_feed_stubs: int,
    max_per_run: int,
) -> StubPlan:
    """The new articles of a run (`outcomes`: FeedOutcomes, each with `new` ids and `first_sight`) that get stubs.

    A feed read for the first time brings its back catalogue: only its newest `new_feed_stubs` get stubs. Then at
    most `max_per_run` stubs in all, newest first. The rest stay stored (`briefing add URL` writes a stub later);
    articles that already have a briefing get none, as before."""
    plan = StubPlan()
    wanted: list[Article] = []
    for outcome in outcomes:
        fresh = [articles[i] for i in outcome.new if i in articles and not has_briefing(articles[i], briefings)]
        if outcome.first_sight and len(fresh) > new_feed_stubs:
            quiet = len(fresh) - new_feed_stubs
            fresh = _newest_first(fresh)[:new_feed_stubs]
            plan.left_out += quiet
            plan.quiet.append(
                f"{outcome.feed_id}: first read of this feed; its {quiet} older new articles are stored without "
                f"draft stubs (BRIEFING_NEW_FEED_STUBS={new_feed_stubs})"
            )
        wanted.extend(fresh)
    if len(wanted) > max_per_run:
        over = len(wanted) - max_per_run
        wanted = _newest_first(wanted)[:max_per_run]
        plan.left_out += over
        plan.quiet.append(
            f"{over} more new articles are stored without draft stubs: at most {max_per_run} per run "
            "(BRIEFING_MAX_STUBS_PER_RUN); `briefing add URL` writes one for any of them"
        )
    plan.articles = wanted
    return plan


def write_stubs(
    articles: list[Article],
    briefings: tuple[Briefing, ...],
    content_dir: Path,
    audiences: tuple[Audience, ...],
    today: date | None = None,
) -> list[Path]:
    """A draft stub for every article that has no briefing yet."""
    written = []
    for article in articles:
        if has_briefing(article, briefings):
            continue
        written.append(write_stub(article, content_dir, audiences, today or date.today()))
    return written

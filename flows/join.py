"""Join stage: match each ready briefing with its stored article and check the translation's alignment.

Entry point: `join_briefings`. A briefing whose source article is not in the store still renders from the
source paragraphs quoted in its own file; one whose translation no longer matches the article is held back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flows.core.content import check_alignment, unreviewed_drafts
from flows.core.errors import Problem
from flows.core.identity import canonical_url
from flows.core.models import Article, Briefing, Content
from flows.core.store import Store

logger = logging.getLogger(__name__)


@dataclass
class Joined:
    briefing: Briefing
    article: Article | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def find_article(briefing: Briefing, store: Store) -> Article | None:
    if briefing.article_id:
        article = store.get_article(briefing.article_id)
        if article is not None:
            return article
    return store.find_article(canonical_url=canonical_url(briefing.source.url))


def join_briefing(briefing: Briefing, store: Store) -> Joined:
    article = find_article(briefing, store)
    if article is None:
        note = Problem(
            briefing.path,
            "source article is not in the store; using the paragraphs quoted in the file",
            field="source.url",
            severity="warning",
            hint="run `briefing ingest` or `briefing add URL`",
        )
        return Joined(briefing, None, [note])
    if not article.paragraphs:
        return Joined(briefing, article)
    return Joined(briefing, article, check_alignment(briefing, article))


def join_briefings(content: Content, store: Store, slugs: list[str] | None = None) -> list[Joined]:
    """Every ready briefing (or the named ones) joined with its article."""
    chosen = [b for b in content.ready if not slugs or b.slug in slugs]
    joined = [join_briefing(b, store) for b in chosen]
    for item in joined:
        item.problems.extend(unreviewed_drafts(item.briefing))  # the review gate: never sent unreviewed
        for problem in item.problems:
            logger.warning("%s", problem)
    return joined

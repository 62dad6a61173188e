"""The articles repository: stored articles, found by id, canonical URL, GUID or fingerprint, saved race-free.

Two workers ingesting the same feed at once store each article once: the primary key is the article id, inserts
are INSERT … ON CONFLICT DO NOTHING, and a changed article is updated only `WHERE fingerprint <> new`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from itertools import zip_longest
from operator import attrgetter
from typing import Any

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.engine import Connection

from flows.core.models import Article, Paragraph
from flows.core.store.base import Database, chunks, utcnow
from flows.core.store.schema import articles


class ArticleRepository(Database):
    """The `articles` table (a part of `flows.core.store.Store`)."""

    def get_article(self, article_id: str) -> Article | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(articles).where(articles.c.id == article_id)).mappings().first()
        return _article_from_row(row) if row else None

    def find_article(self, *, canonical_url: str = "", fingerprint: str = "") -> Article | None:
        with self.engine.connect() as conn:
            for column, value in ((articles.c.canonical_url, canonical_url), (articles.c.fingerprint, fingerprint)):
                if value:
                    row = conn.execute(select(articles).where(column == value)).mappings().first()
                    if row:
                        return _article_from_row(row)
        return None

    def all_articles(self) -> list[Article]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(articles).order_by(articles.c.first_seen)).mappings().all()
        return [_article_from_row(r) for r in rows]

    def save_article(self, article: Article, *, canonical_url: str, guid: str) -> str:
        """Insert a new article or update a changed one. Returns 'new', 'updated' or 'seen'."""
        with self.begin() as conn:
            return _save_article(self, conn, article, canonical_url=canonical_url, guid=guid)

    def save_articles(self, items: list[tuple[Article, str, str]], *, conn: Connection | None = None) -> list[str]:
        """Save many (article, canonical_url, guid) in one transaction; 'new' / 'updated' / 'seen' for each.

        New articles go in as one multi-row insert; if another writer stored one of them meanwhile, the
        inserts are redone one by one so that each still gets its true result. Pass `conn` (from `begin()`)
        to make it part of the caller's write transaction.
        """
        if conn is None:
            with self.begin() as own:
                return self._save_articles(own, items)
        return self._save_articles(conn, items)

    def _save_articles(self, conn: Connection, items: list[tuple[Article, str, str]]) -> list[str]:
        stored: dict[str, tuple[str, int, str]] = {}
        for chunk in chunks(sorted({a.id for a, _c, _g in items})):
            found = conn.execute(_STORED_VERSIONS, {"values": chunk})
            stored.update({r.id: (r.fingerprint, r.version, r.feed_id or "") for r in found})
        results: list[str] = []
        inserts: list[int] = []
        now = utcnow()
        for position, (article, canonical, guid) in enumerate(items):
            known = stored.get(article.id)
            if known is None:
                inserts.append(position)
                results.append("new")
                stored[article.id] = (article.fingerprint, 1, article.feed_id)
            elif known[0] == article.fingerprint or not _may_update(known[2], article.feed_id):
                results.append("seen")
            else:
                values = _article_values(article, canonical, guid, now)
                conn.execute(update(articles).where(articles.c.id == article.id).values(version=known[1] + 1, **values))
                stored[article.id] = (article.fingerprint, known[1] + 1, article.feed_id)
                results.append("updated")
        rows = [
            {"id": items[i][0].id, "first_seen": now, "version": 1, **_article_values(*items[i], now)} for i in inserts
        ]
        if rows:
            # ON CONFLICT: another worker may have stored some of these since we looked; RETURNING tells which
            # rows are ours (rowcount is -1 for INSERT … ON CONFLICT through psycopg).
            statement = (
                self.insert(articles).on_conflict_do_nothing(index_elements=[articles.c.id]).returning(articles.c.id)
            )
            added = set(conn.execute(statement, rows).scalars())
            for i in inserts:
                if items[i][0].id not in added:
                    article, canonical, guid = items[i]
                    results[i] = _save_article(self, conn, article, canonical_url=canonical, guid=guid)
        return results

    def match_articles(
        self, *, ids: set[str], guids: set[str], canonical_urls: set[str], fingerprints: set[str], feed_id: str
    ) -> ArticleMatches:
        """Existing articles (id → fingerprint) met by any of these keys; guids match within one feed only.

        One query for all four keys (a feed's worth fits in one; larger sets go `MATCH_CHUNK` per key at a
        time): it runs once per feed, and four statements cost more than their index lookups. Where two
        stored articles share a key, the one first seen wins, whatever order the database returns rows in."""
        matches = ArticleMatches()
        keys = [
            list(chunks(sorted(v for v in values if v), MATCH_CHUNK))
            for values in (ids, guids, canonical_urls, fingerprints)
        ]
        with self.engine.connect() as conn:
            rows = [
                row
                for chunks in zip_longest(*keys, fillvalue=[])
                for row in conn.execute(_MATCH_ANY, dict(zip(_MATCH_KEYS, chunks, strict=True)))
            ]
        for row in sorted(rows, key=attrgetter("first_seen", "id")):
            matches.add(row, feed_id)
        return matches

    def article_ids(self) -> set[str]:
        with self.engine.connect() as conn:
            return {r.id for r in conn.execute(select(articles.c.id))}


def _article_values(article: Article, canonical_url: str, guid: str, now: datetime) -> dict[str, Any]:
    return {
        "url": article.url,
        "canonical_url": canonical_url,
        "guid": guid,
        "feed_id": article.feed_id,
        "title": article.title,
        "site": article.site,
        "author": article.author,
        "published": article.published.replace(tzinfo=None) if article.published else None,
        "summary": article.summary,
        "content_html": article.content_html,
        "paragraphs": json.dumps([p.model_dump(mode="json") for p in article.paragraphs], ensure_ascii=False),
        "fingerprint": article.fingerprint,
        "updated_at": now,
    }


def _save_article(store: Database, conn: Connection, article: Article, *, canonical_url: str, guid: str) -> str:
    """Insert or update one article inside the caller's write transaction: 'new', 'updated' or 'seen'.

    ON CONFLICT makes two workers storing the same article at once end with one row, one of them 'new';
    RETURNING, not rowcount, because psycopg reports -1 for INSERT … ON CONFLICT through SQLAlchemy 2.1."""
    now = utcnow()
    values = _article_values(article, canonical_url, guid, now)
    added = conn.execute(
        store.insert(articles)
        .values(id=article.id, first_seen=now, version=1, **values)
        .on_conflict_do_nothing(index_elements=[articles.c.id])
        .returning(articles.c.id)
    ).first()
    if added is not None:
        return "new"
    # The fingerprint and owner tests are in the UPDATE itself: a concurrent identical update changes nothing.
    owner_may_update = or_(
        articles.c.feed_id.is_(None), articles.c.feed_id == "", articles.c.feed_id == article.feed_id
    )
    changed = conn.execute(
        update(articles)
        .where(articles.c.id == article.id, articles.c.fingerprint != article.fingerprint, owner_may_update)
        .values(version=articles.c.version + 1, **values)
    ).rowcount
    return "updated" if changed else "seen"


def _may_update(stored_feed: str, incoming_feed: str) -> bool:
    """An article brought by one feed is not overwritten by another feed's (or a single URL's) version of it."""
    return not stored_feed or stored_feed == incoming_feed


@dataclass
class ArticleMatches:
    """Stored articles found by identity keys, for resolving a feed's entries to existing ids."""

    fingerprint_of: dict[str, str] = field(default_factory=dict)
    feed_of: dict[str, str] = field(default_factory=dict)
    by_guid: dict[str, str] = field(default_factory=dict)
    by_canonical_url: dict[str, str] = field(default_factory=dict)
    by_fingerprint: dict[str, str] = field(default_factory=dict)

    def add(self, row: Any, feed_id: str) -> None:
        self.fingerprint_of[row.id] = row.fingerprint or ""
        self.feed_of[row.id] = row.feed_id or ""
        if row.guid and row.feed_id == feed_id:
            self.by_guid.setdefault(row.guid, row.id)
        if row.canonical_url:
            self.by_canonical_url.setdefault(row.canonical_url, row.id)
        if row.fingerprint:
            self.by_fingerprint.setdefault(row.fingerprint, row.id)


# Built once: statements with an expanding IN parameter are compiled once and cached by SQLAlchemy; building
# `column.in_(values)` anew for every feed cost more than running the query.
_MATCH_COLUMNS = (
    articles.c.id,
    articles.c.fingerprint,
    articles.c.guid,
    articles.c.canonical_url,
    articles.c.feed_id,
    articles.c.first_seen,
)
# Four keys of this many values bind 960 parameters at most, under the 999 that SQLite before 3.32 allows.
MATCH_CHUNK = 240
_MATCH_KEYS = ("ids", "guids", "canonical_urls", "fingerprints")
_MATCH_ANY = select(*_MATCH_COLUMNS).where(
    or_(
        *(
            column.in_(bindparam(key, expanding=True))
            for key, column in zip(
                _MATCH_KEYS,
                (articles.c.id, articles.c.guid, articles.c.canonical_url, articles.c.fingerprint),
                strict=True,
            )
        )
    )
)
_STORED_VERSIONS = select(articles.c.id, articles.c.fingerprint, articles.c.version, articles.c.feed_id).where(
    articles.c.id.in_(bindparam("values", expanding=True))
)


def _article_from_row(row: Any) -> Article:
    return Article(
        id=row["id"],
        url=row["url"],
        title=row["title"],
        site=row["site"] or "",
        author=row["author"] or "",
        published=row["published"],
        feed_id=row["feed_id"] or "",
        summary=row["summary"] or "",
        content_html=row["content_html"] or "",
        paragraphs=tuple(Paragraph(**p) for p in json.loads(row["paragraphs"] or "[]")),
        fingerprint=row["fingerprint"] or "",
    )

"""The ingest stage: feeds and single article URLs become stored articles with stable ids.

Entry points: `ingest_feeds(feeds, store, settings) -> IngestReport` (every feed of feeds.yaml) and
`ingest_url(url, store, settings) -> AddedArticle` (`briefing add`), both in flows/ingest/run.py. Inside:
fetch.py and transport.py (the HTTP client, its limits and address policy), reading.py (parsing a fetched feed
and storing its entries, the part the parser processes run), feedparser_rs.py, extract.py (full text from a
page), stubs.py (draft stubs for new articles) and gc_tuning.py (garbage-collector settings for a run).

The entry points are imported on first use: a parser process imports `flows.ingest.reading` alone, without the
HTTP client and trafilatura (docs/ingest.md, "Parser processes ready sooner").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.ingest.run import AddedArticle, IngestReport, ingest_feeds, ingest_url

__all__ = ["AddedArticle", "IngestReport", "ingest_feeds", "ingest_url"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from flows.ingest import run

        return getattr(run, name)
    raise AttributeError(name)

"""Prefect events the pipeline emits, and the trigger that turns a readiness event into a `brief` run.

- `briefing.article.ingested` (resource `briefing.article.<id>`): ingest stored a new article.
- `briefing.briefing.ready` (resource `briefing.briefing.<slug>`, label `briefing.slug`): a briefing file is
  `ready`. Emitted at most once per (slug, content hash): the claim is recorded in the store's
  `ready_events` table *before* emitting, so two watchers or a restart never announce the same version twice.

Prefect drops duplicate event ids only for a few minutes and only in memory, so the event id is derived from
(slug, content hash) as a second line of defence; the send ledger is what makes delivery exactly once.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from typing import Any

from flows.core.models import Article, Briefing
from flows.core.store import Store

logger = logging.getLogger(__name__)

ARTICLE_INGESTED = "briefing.article.ingested"
BRIEFING_READY = "briefing.briefing.ready"
SLUG_LABEL = "briefing.slug"
_NAMESPACE = uuid.UUID("6f1d3c52-3c7e-4a55-9d8e-2b7f0f5c9a10")


def ready_event_id(slug: str, content_hash: str) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"ready:{slug}:{content_hash}")


def api_configured() -> bool:
    """True when Prefect talks to a real server (PREFECT_API_URL), where deployment triggers live.

    On the embedded (ephemeral) API each process gets its own temporary server, so a readiness event would
    reach no trigger; it is then neither emitted nor recorded. The same holds for the temporary server a one-off
    command starts itself (`flows.prefect_session`), though PREFECT_API_URL then names it.
    """
    from flows.prefect_session import TEMPORARY_API_ENV

    if os.environ.get(TEMPORARY_API_ENV):
        return False
    if os.environ.get("PREFECT_API_URL"):
        return True
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def _emit(event: str, resource: dict[str, str], payload: dict[str, Any], event_id: uuid.UUID | None = None) -> bool:
    from prefect.events import emit_event

    return emit_event(event=event, resource=resource, payload=payload, id=event_id) is not None


def emit_article_ingested(articles: Iterable[Article]) -> int:
    """Emit one `briefing.article.ingested` event per new article; returns how many were emitted."""
    emitted = 0
    for article in articles:
        resource = {
            "prefect.resource.id": f"briefing.article.{article.id}",
            "prefect.resource.name": article.title[:200],
            "briefing.feed": article.feed_id or "",
        }
        payload = {"title": article.title, "url": article.url, "feed": article.feed_id}
        emitted += _emit(ARTICLE_INGESTED, resource, payload)
    return emitted


def ready_resource(briefing: Briefing, content_hash: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"briefing.briefing.{briefing.slug}",
        "prefect.resource.name": briefing.verdict[:200],
        SLUG_LABEL: briefing.slug,
        "briefing.content-hash": content_hash,
    }


def announce_ready(briefings: Iterable[Briefing], store: Store) -> list[str]:
    """Emit `briefing.briefing.ready` for each ready briefing version not announced before; returns the slugs.

    Does nothing without a configured Prefect server (see `api_configured`).
    """
    if not api_configured():
        logger.debug("no PREFECT_API_URL: readiness events are not emitted on the embedded API")
        return []
    announced = []
    for briefing in briefings:
        if briefing.status != "ready":
            continue
        if briefing.machine_drafts:
            # Held back until reviewed. Approving deletes only comments, so the content hash stays the same: had
            # this version been recorded now, the approved one would never be announced.
            continue
        content_hash = briefing.content_hash()
        if store.ready_announced(briefing.slug, content_hash):
            continue
        event_id = ready_event_id(briefing.slug, content_hash)
        if not store.record_ready_announced(briefing.slug, content_hash, str(event_id)):
            continue  # another process claimed this version a moment ago
        payload = {"slug": briefing.slug, "date": str(briefing.date), "content_hash": content_hash}
        if _emit(BRIEFING_READY, ready_resource(briefing, content_hash), payload, event_id):
            announced.append(briefing.slug)
            logger.info("announced %s ready (content %s)", briefing.slug, content_hash[:12])
        else:
            store.forget_ready_announced(briefing.slug, content_hash)
            logger.warning(
                "could not emit the ready event for %s; it will be retried on the next change", briefing.slug
            )
    return announced


def flush_events(timeout: float = 10.0) -> None:
    """Wait until queued events reached the server (short-lived commands exit right after emitting)."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=timeout)


def brief_trigger() -> Any:
    """Run the `brief` deployment for the slug of every readiness event."""
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name="brief-on-ready",
        description="Deliver and publish a briefing as soon as its file is marked ready.",
        expect={BRIEFING_READY},
        match={"prefect.resource.id": "briefing.briefing.*"},
        parameters={"slug": "{{ event.resource['" + SLUG_LABEL + "'] }}"},
        threshold=1,
    )


def announce_from_command(briefings: Iterable[Briefing], store_url: str) -> list[str]:
    """`briefing check`: announce ready briefings when PREFECT_API_URL names a server, then flush the events."""
    if not os.environ.get("PREFECT_API_URL"):
        return []
    from flows.core.store import open_store

    slugs = announce_ready(briefings, open_store(store_url))
    flush_events()
    return slugs

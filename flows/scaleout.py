"""Delivery from several workers at once: a global send-rate limit and a deliverer any worker can run.

Several processes (Prefect flow runs on a process work pool, on one machine or many) may deliver the same
briefing at the same time against one shared store: the send ledger hands each row to one of them
(`ledger.claim_batch`). What they must also share is the SMTP provider's rate limit. A per-process throttle
cannot do that, so sends are paced by a Prefect global concurrency limit with slot decay (a rate limit):
`ensure_send_rate_limit` creates it at start-up, `GlobalRateLimitedTransport` takes permits from it in small
chunks (one API call per chunk, never one per message).

Run one deliverer without Prefect: `python -m flows.scaleout SLUG [--audience ID] [--resend-uncertain]`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from flows.core.content import load_content
from flows.core.errors import BriefingError, DeliveryError
from flows.core.settings import Settings, load_settings
from flows.core.store import Store, open_store
from flows.deliver.messages import Envelope
from flows.deliver.send import deliver_briefing, make_transport, warn_if_unsubscribe_url_is_not_https
from flows.deliver.transports import SendResult, Transport
from flows.publish.archive import assign_paths, render_for_archive
from flows.readiness import ContentProblemsError, gate, refuse_if_strict
from flows.render.email import RenderedBriefing

logger = logging.getLogger(__name__)

# Permits taken per call to the Prefect API: about a fifth of a second's worth, at most 100.
MAX_CHUNK = 100


def permit_chunk(rate: float) -> int:
    return max(1, min(MAX_CHUNK, int(rate / 5)))


def prefect_api_configured() -> bool:
    from prefect.settings import PREFECT_API_URL

    return bool(PREFECT_API_URL.value())


def ensure_send_rate_limit(settings: Settings) -> str | None:
    """Create (or update) the global limit pacing sends at `smtp_rate`/s. None when sends are unlimited or no
    Prefect API is configured (then one process's own throttle is all there is)."""
    if settings.smtp_rate <= 0 or not prefect_api_configured():
        return None
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectAlreadyExists

    chunk = permit_chunk(settings.smtp_rate)
    with get_client(sync_client=True) as client:
        for _attempt in range(2):  # two workers may both find it missing and create it at once
            try:
                client.upsert_global_concurrency_limit_by_name(
                    settings.send_rate_limit, limit=chunk, slot_decay_per_second=settings.smtp_rate
                )
                break
            except ObjectAlreadyExists:
                continue
    logger.info("send rate limit %r: %s messages/s, %d per permit", settings.send_rate_limit, settings.smtp_rate, chunk)
    return settings.send_rate_limit


class GlobalRateLimitedTransport:
    """A Transport that takes a permit from a Prefect rate limit before each message (in chunks)."""

    def __init__(self, inner: Transport, limit_name: str, chunk: int) -> None:
        self.inner = inner
        self.name = f"{inner.name}+rate-limit"
        self.limit_name = limit_name
        self.chunk = chunk
        self._permits = 0

    def send(self, envelope: Envelope, folder: str) -> SendResult:
        if self._permits == 0:
            from prefect.concurrency.sync import rate_limit

            rate_limit(self.limit_name, occupy=self.chunk, strict=True)
            self._permits = self.chunk
        self._permits -= 1
        return self.inner.send(envelope, folder)

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()


def render_for_delivery(slug: str, settings: Settings, store: Store) -> tuple[RenderedBriefing, Any]:
    """Render one ready briefing the way the pipeline does; every worker renders the same bytes."""
    loaded = load_content(settings.content_dir)
    refuse_if_strict(settings.strict, loaded)
    checked = gate(loaded, store, [slug])
    if checked.held:  # exit 3, as every other command that holds a briefing back
        held = checked.held_lines()[0]
        raise ContentProblemsError(f"briefing {slug!r} is held back: {held}", hint="run `briefing check`")
    if not checked.passed:
        raise DeliveryError(f"no ready briefing with slug {slug!r}", hint="check the slug and `status: ready`")
    page = assign_paths(store, loaded.content.ready)[slug]
    rendered = render_for_archive(settings, loaded.content, checked.passed[0].briefing, page)
    return rendered, loaded.content


def deliver_slug(
    slug: str,
    *,
    audiences: list[str] | None = None,
    resend_uncertain: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Deliver one briefing from this process alongside any other workers doing the same. Returns a summary."""
    settings = settings or load_settings()
    store = open_store(settings.store_url)
    rendered, content = render_for_delivery(slug, settings, store)
    warn_if_unsubscribe_url_is_not_https(settings)
    transport: Transport = make_transport(settings)
    limit = ensure_send_rate_limit(settings)
    if limit:
        transport = GlobalRateLimitedTransport(transport, limit, permit_chunk(settings.smtp_rate))
    try:
        report = deliver_briefing(
            rendered,
            content,
            store,
            settings,
            audiences=audiences,
            resend_uncertain=resend_uncertain,
            transport=transport,
        )
    finally:
        transport.close()
    states: dict[str, int] = {}
    for result in report.audiences.values():
        for state, n in result.states.items():
            states[state] = states.get(state, 0) + n
    return {"slug": slug, "pid": os.getpid(), "states": states, "rate_limit": limit or ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.scaleout", description=deliver_slug.__doc__)
    parser.add_argument("slug")
    parser.add_argument("--audience", action="append", dest="audiences")
    parser.add_argument("--resend-uncertain", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(name)s %(message)s")
    try:
        summary = deliver_slug(args.slug, audiences=args.audiences, resend_uncertain=args.resend_uncertain)
    except BriefingError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

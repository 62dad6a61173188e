"""The global send rate: several deliverers (Prefect flow runs, `python -m flows.app.worker` processes, on one
machine or many) share the SMTP provider's rate limit.

A per-process throttle cannot do that, so sends are paced by a Prefect global concurrency limit with slot decay
(a rate limit): `ensure_send_rate_limit` creates it at start-up, `GlobalRateLimitedTransport` takes permits from
it in small chunks (`permit_chunk`: one API call per chunk, never one per message). The send ledger is what hands
each recipient to one deliverer (`flows.core.store.ledger.claim_batch`).
"""

from __future__ import annotations

import logging

from flows.core.settings import Settings
from flows.deliver.messages import Envelope
from flows.deliver.transports import SendResult, Transport

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

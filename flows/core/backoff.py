"""Exponential backoff with jitter: the one schedule for every retry of the product.

Fetch retries (`flows.ingest.fetch`), deferred deliveries (`flows.deliver.send`), the LLM client
(`flows.draft.client`), the ingest flow's re-run of retryable feeds and the Prefect task retries
(`flows.pipeline`) all take their delays from here. The jitter spreads retries of many feeds, recipients or
workers that failed at the same moment, so they do not return together.
"""

from __future__ import annotations

import random

HALF = 0.5  # ±50 %: a delay scaled by a random factor in [0.5, 1.5)


def exponential_delays(base: float, retries: int, *, cap: float | None = None) -> list[float]:
    """base, 2·base, 4·base, ... for `retries` retries, each at most `cap` (no jitter: Prefect adds its own)."""
    return [delay_before_retry(base, n, cap=cap) for n in range(retries)]


def delay_before_retry(base: float, retry_number: int, *, cap: float | None = None) -> float:
    """base·2^n for the n-th retry (counted from 0), at most `cap`."""
    delay = base * 2**retry_number
    return delay if cap is None else min(cap, delay)


def backoff_delay(base: float, retry_number: int, *, jitter: float = HALF, cap: float | None = None) -> float:
    """base·2^n (at most `cap`) scaled by a random factor in [1 - jitter, 1 + jitter)."""
    return delay_before_retry(base, retry_number, cap=cap) * (1 - jitter + 2 * jitter * random.random())

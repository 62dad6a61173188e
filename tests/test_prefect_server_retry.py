"""The loopback Prefect server's 503s carry a Retry-After, and Prefect's own client then retries in a fraction of
a second instead of its 2 s backoff (flows/app/prefect_server.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from flows.app.prefect_server import RETRY_AFTER_SECONDS, RetrySoonOn503


class BusyOnce:
    """An ASGI app that answers 503 (as Prefect's server does on SQLITE_BUSY) to the first request, then 200."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls += 1
        status = 503 if self.calls == 1 else 200
        body = b'{"exception_message": "Service Unavailable"}' if status == 503 else b"{}"
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _timed_get(app: Any) -> tuple[float, int]:
    from prefect.client.base import PrefectHttpxAsyncClient

    async with PrefectHttpxAsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://server/api") as client:
        started = time.perf_counter()
        response = await client.get("/flow_runs/x")
        return time.perf_counter() - started, response.status_code


def test_a_503_gets_a_retry_after_and_the_prefect_client_retries_within_a_second() -> None:
    busy = BusyOnce()
    hinted = RetrySoonOn503(busy)
    elapsed, status = asyncio.run(_timed_get(hinted))
    assert (status, busy.calls) == (200, 2)
    assert float(RETRY_AFTER_SECONDS) <= elapsed < 1.0, elapsed

    bare = BusyOnce()  # the same exchange without the header: Prefect's own backoff (2 ** 1 s, ±20 % jitter)
    elapsed_bare, status_bare = asyncio.run(_timed_get(bare))
    assert (status_bare, bare.calls) == (200, 2)
    assert elapsed_bare > 1.5, elapsed_bare


def test_a_503_that_names_its_own_retry_after_keeps_it() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": [(b"retry-after", b"7")]})
        await send({"type": "http.response.body", "body": b""})

    async def fetch() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=RetrySoonOn503(app)), base_url="http://s") as c:
            return await c.get("/")

    response = asyncio.run(fetch())
    assert response.status_code == 503 and response.headers.get_list("retry-after") == ["7"]

"""Fetch benchmark: CPU per conditional GET through httpx with each transport, against httpx's default.

A warm ingest run (every feed answers 304) is little more than these requests, so their CPU cost decides
its time. The server (bench_ingest's, in its own process, no delay) answers 304 to the ETag sent; the
measured process's CPU time (`time.process_time`) is divided by the number of requests. Variants:

- httpx's default transport (anyio network backend, one connection pool): the baseline;
- the asyncio network backend under one pool;
- one pool per host on the anyio backend;
- `FetchTransport`, both together (what the fetcher uses);
- `Fetcher.fetch` itself (address checks, retries, semaphores) over `FetchTransport`.

Each variant runs `--rounds` times (fastest and median reported); rounds interleave the variants so a
machine that slows down mid-run slows them all alike.

    python -m benchmarks.bench_fetch              # 500 requests over 100 loopback hosts, 128 at once
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpcore
import httpx

from benchmarks.bench_ingest import served_feeds
from flows.core.settings import Settings, load_settings
from flows.ingest.fetch import Fetcher
from flows.ingest.transport import AsyncioBackend, FetchTransport

Variant = Callable[[list[str]], Coroutine[Any, Any, None]]


def etag_for(url: str) -> str:
    return f'"/{url.split("/", 3)[3]}-v1"'  # what bench_ingest's server sends for that path


async def through_client(urls: list[str], transport: httpx.AsyncBaseTransport, concurrency: int) -> None:
    slots = asyncio.Semaphore(concurrency)

    async def one(url: str) -> None:
        async with slots:
            response = await client.get(url, headers={"If-None-Match": etag_for(url)})
            if response.status_code != 304:
                raise SystemExit(f"{url}: expected 304, got {response.status_code}")

    async with httpx.AsyncClient(transport=transport) as client:
        await asyncio.gather(*(one(url) for url in urls))


def default_transport(concurrency: int) -> httpx.AsyncBaseTransport:
    # the keep-alive limit the fetcher used before it had its own transport
    return httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=8))


def asyncio_backend_one_pool(concurrency: int) -> httpx.AsyncBaseTransport:
    transport = default_transport(concurrency)
    transport._pool = httpcore.AsyncConnectionPool(
        max_connections=concurrency, max_keepalive_connections=8, network_backend=AsyncioBackend()
    )
    return transport


def anyio_backend_per_host(per_host: int) -> httpx.AsyncBaseTransport:
    transport = FetchTransport(ssl.create_default_context(), per_host)
    transport.pools._backend = httpcore.AnyIOBackend()
    return transport


async def through_fetcher(urls: list[str], settings: Settings) -> None:
    async with Fetcher(settings) as fetcher:
        results = await asyncio.gather(*(fetcher.fetch(url, etag=etag_for(url)) for url in urls))
    if any(result.status != 304 for result in results):
        raise SystemExit("Fetcher.fetch: expected every answer to be 304")


def variants(concurrency: int, per_host: int, settings: Settings) -> dict[str, Variant]:
    return {
        "httpx default transport (baseline)": lambda u: through_client(u, default_transport(concurrency), concurrency),
        "asyncio backend, one pool": lambda u: through_client(u, asyncio_backend_one_pool(concurrency), concurrency),
        "anyio backend, a pool per host": lambda u: through_client(u, anyio_backend_per_host(per_host), concurrency),
        "FetchTransport (both)": lambda u: through_client(
            u, FetchTransport(ssl.create_default_context(), per_host), concurrency
        ),
        "Fetcher.fetch over FetchTransport": lambda u: through_fetcher(u, settings),
    }


def cpu_per_request(variant: Variant, urls: list[str]) -> float:
    started = time.process_time()
    asyncio.run(variant(urls))
    return (time.process_time() - started) / len(urls) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=500)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with (
        served_feeds(args.hosts, args.feeds, 1, 0.0) as urls,
        tempfile.TemporaryDirectory(prefix="bench-fetch-") as workdir,
    ):
        settings = load_settings(
            content_dir=Path(workdir) / "content",
            output_dir=Path(workdir) / "outputs",
            fetch_allowed_networks=["127.0.0.0/8"],
            fetch_concurrency=args.concurrency,
            fetch_per_host=4,
        )
        runs = variants(args.concurrency, 4, settings)
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, variant in runs.items():
                samples[name].append(cpu_per_request(variant, urls))
    print_table(args, samples)


def print_table(args: argparse.Namespace, samples: dict[str, list[float]]) -> None:
    print(
        f"\nfetch benchmark: {args.feeds} conditional GETs (all 304) over {args.hosts} loopback hosts, "
        f"{args.concurrency} at once, {args.rounds} rounds\n"
    )
    header = f"{'variant':<38} {'fastest ms/req':>15} {'median ms/req':>14} {'vs baseline':>12}"
    print(header)
    print("-" * len(header))
    baseline = min(next(iter(samples.values())))
    for name, values in samples.items():
        fastest = min(values)
        print(f"{name:<38} {fastest:>15.3f} {statistics.median(values):>14.3f} {baseline / fastest:>11.2f}×")
    print(f"\nCPU time of this process per request; load average now: {os.getloadavg()}")


if __name__ == "__main__":
    main()

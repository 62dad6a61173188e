"""Memory under compression bombs: peak RSS of an ingest against bombs, next to a normal feed's in the same run.

A loopback server (in this process) answers feeds with bodies that are small on the wire and huge decoded:

- `gzip, gzip`: 512 MiB of zeros gzipped twice (about 1 KB on the wire), the issue's probe;
- `gzip` 1 GiB: 1 GiB gzipped once (about 1 MB on the wire);
- `br` 512 MiB and `deflate` 512 MiB;
- four at once: the four bombs above as four feeds of one ingest.

Each scenario runs `flows.ingest.ingest_feeds` in a fresh child process (the stage `briefing ingest` runs, with
the same fetcher, limits and parser) with BRIEFING_MAX_BODY_BYTES=1,500,000, and the child reports its own peak
RSS (`ru_maxrss`). The baseline is the same child ingesting a normal 20-entry feed. Target per bomb row: peak ≤
2 × baseline + the body limit. `--cli` adds the whole command (`briefing ingest`, Prefect's embedded API
included) for the baseline and the `gzip, gzip` bomb; its peak is the largest process of the command.

    python -m benchmarks.bench_bombs            # every scenario
    python -m benchmarks.bench_bombs --cli      # and the `briefing ingest` rows
    python -m benchmarks.bench_bombs --code ../other-checkout   # the children run that checkout's flows/
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bomb_support import MIB, brotli_bomb, deflate_bomb, gzip_bomb
from tests.ingest_support import Item, LoopbackServer, Reply, long_text, rss

LIMIT = 1_500_000
REPO = Path(__file__).resolve().parent.parent
BOMBS = {  # path → (Content-Encoding, decoded size, builder)
    "/gzip2-512m.xml": ("gzip, gzip", 512 * MIB, lambda: gzip_bomb(512 * MIB, layers=2)),
    "/gzip-1g.xml": ("gzip", 1024 * MIB, lambda: gzip_bomb(1024 * MIB)),
    "/br-512m.xml": ("br", 512 * MIB, lambda: brotli_bomb(512 * MIB)),
    "/deflate-512m.xml": ("deflate", 512 * MIB, lambda: deflate_bomb(512 * MIB)),
}
NORMAL = "/normal.xml"


def normal_feed() -> bytes:
    items = [Item(f"Story {n}", f"http://news.invalid/{n}", f"g-{n}", long_text(f"story{n}")) for n in range(20)]
    return rss(items).encode()


def serve(server: LoopbackServer) -> dict[str, int]:
    """Routes for the normal feed and every bomb; returns each path's size on the wire."""
    wire = {NORMAL: len(normal_feed())}
    server.static(NORMAL, normal_feed())
    for path, (encoding, _size, build) in BOMBS.items():
        body = build()
        wire[path] = len(body)
        headers = {"Content-Type": "application/rss+xml", "Content-Encoding": encoding}
        server.route(path, lambda _r, body=body, headers=headers: Reply(200, headers, body))
    return wire


def child(urls: list[str]) -> None:
    """Ingest `urls` as feeds in a fresh project; print peak RSS and each feed's outcome as JSON."""
    from flows.core.models import Feed
    from flows.core.settings import load_settings
    from flows.core.store import Store
    from flows.ingest import ingest_feeds

    folder = Path(tempfile.mkdtemp(prefix="bench-bombs-"))
    try:
        settings = load_settings(
            content_dir=folder / "content",
            output_dir=folder / "outputs",
            max_body_bytes=LIMIT,
            fetch_allowed_networks=["127.0.0.1/32"],
            fetch_retries=0,
            fetch_timeout=60.0,
        )
        feeds = [Feed(id=f"feed{n}", url=url) for n, url in enumerate(urls)]
        started = time.perf_counter()
        report = ingest_feeds(feeds, Store(settings.store_url), settings)
        seconds = time.perf_counter() - started
        outcomes = [o.error or f"ok, {len(o.new)} new" for o in report.outcomes]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write(json.dumps({"peak_kib": peak_kib, "seconds": seconds, "outcomes": outcomes}) + "\n")


def run_child(urls: list[str], code: Path = REPO) -> dict:
    """A child ingest of `urls`; `code` is the checkout whose `flows` package it imports (tests/ is shared)."""
    env = {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{REPO}", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", *urls],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cli(url: str) -> dict:
    """`briefing ingest` on a project whose only feed is `url`; peak RSS of its largest process."""
    folder = Path(tempfile.mkdtemp(prefix="bench-bombs-cli-"))
    try:
        (folder / "content").mkdir()
        (folder / "content" / "feeds.yaml").write_text(f"feeds:\n  - id: probe\n    url: {url}\n", "utf-8")
        (folder / "content" / "audiences.yaml").write_text("audiences: []\n", "utf-8")
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "BRIEFING_CONTENT_DIR": str(folder / "content"),
            "BRIEFING_OUTPUT_DIR": str(folder / "outputs"),
            "BRIEFING_MAX_BODY_BYTES": str(LIMIT),
            "BRIEFING_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
            "BRIEFING_FETCH_RETRIES": "0",
            "BRIEFING_TASK_RETRIES": "0",
        }
        script = (
            "import json, resource, subprocess, sys, time; t = time.perf_counter();"
            "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
            "print(json.dumps({'peak_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
            " 'seconds': time.perf_counter() - t, 'code': p.returncode, 'out': p.stdout}))"
        )
        exe = str(Path(sys.executable).parent / "briefing")
        done = subprocess.run(
            [sys.executable, "-c", script, exe, "--json", "ingest"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=900,
        )
        data = json.loads(done.stdout.strip().splitlines()[-1])
        summary = json.loads(data["out"]) if data["out"].strip().startswith("{") else {}
        data["outcomes"] = summary.get("feeds_failed") or [f"exit {data['code']}"]
        return data
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--cli", action="store_true", help="also measure `briefing ingest` (Prefect included)")
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose flows/ the stage rows run")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    with LoopbackServer() as server:
        print("building the bombs …", flush=True)
        wire = serve(server)
        rows = [("baseline: normal feed", [NORMAL])]
        rows += [(f"{BOMBS[p][0]} {BOMBS[p][1] // MIB} MiB", [p]) for p in BOMBS]
        rows.append(("4 bombs at once", list(BOMBS)))
        results = [(name, paths, run_child([server.url(p) for p in paths], args.code)) for name, paths in rows]
        if args.cli:
            cli_rows = (("briefing ingest: normal feed", NORMAL), ("briefing ingest: gzip, gzip", "/gzip2-512m.xml"))
            for name, path in cli_rows:
                results.append((name, [path], run_cli(server.url(path))))
    if args.code != REPO:
        print(f"stage rows ran the flows/ of {args.code.resolve()}")
    print_table(results, wire)


def print_table(results: list[tuple[str, list[str], dict]], wire: dict[str, int]) -> None:
    limit_mib = LIMIT / MIB
    print(f"\nPeak RSS under compression bombs (BRIEFING_MAX_BODY_BYTES={LIMIT:,}; target ≤ 2 × baseline + limit)")
    header = f"{'scenario':<32}{'on the wire':>13}{'decoded':>11}{'seconds':>9}{'peak MiB':>10}{'vs base':>9}"
    print(header + f"{'target MiB':>12}  {'met':<4} outcome")
    baselines: dict[bool, float] = {}
    for name, paths, data in results:
        cli = name.startswith("briefing ingest")
        peak = data["peak_kib"] / 1024
        if name.startswith("baseline") or name == "briefing ingest: normal feed":
            baselines[cli] = peak
        base = baselines[cli]
        target = 2 * base + limit_mib
        decoded = sum(BOMBS[p][1] for p in paths if p in BOMBS) // MIB
        on_wire = sum(wire[p] for p in paths)
        met = "yes" if peak <= target else "NO"
        outcome = "; ".join(sorted(set(o[:70] for o in data["outcomes"])))
        print(
            f"{name:<32}{on_wire:>13,}{(str(decoded) + ' MiB') if decoded else '-':>11}{data['seconds']:>9.2f}"
            f"{peak:>10.1f}{peak / base:>8.2f}x{target:>12.1f}  {met:<4} {outcome}"
        )


if __name__ == "__main__":
    main()

"""Drafting benchmark: the translation of a 100-block article against a loopback chat-completions server.

    python -m benchmarks.bench_draft            # 100 blocks, 0.3 s per request; and 0.3 s + 20 ms per block
    python -m benchmarks.bench_draft --small    # 20 blocks, 0.1 s per request: a quick check

No model runs here, so the server (tests/llm_support.py, in its own process so serving costs the measured
process nothing) answers each request after a fixed delay — the latency and prompt processing a real endpoint
adds to every request. Measured in the same run against the same server:

- naive: one request per block in a sequential loop (the official client, the same prompt for one block);
- ours, cold: `draft_briefing(…, sections=["translation"])` on an empty store: batches under the token budget,
  `llm_concurrency` requests in flight;
- ours, rerun with no change: the same command again (nothing is empty: no request);
- ours, rerun from the cache: the empty stub written again (an editor threw the draft away): every block
  comes from the store, no request.

A second server adds a delay per translated block on top (generation time grows with the answer, as on a
real model): batching then saves only the per-request part, and the gain comes from concurrency. Its rows
are printed too, so the figures are not read as more than they are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import openai

from flows.core.briefing_format import parse_briefing_file
from flows.core.settings import load_settings
from flows.core.store import Store
from flows.draft import draft_briefing
from flows.draft.prompts import TranslationAnswer, parse_answer, translation_ask
from tests.llm_support import long_article_items, write_article_stub

REPO = Path(__file__).resolve().parent.parent
SLUG = "bench-article"
COLD_TARGET = 5.0


@dataclass
class Row:
    name: str
    seconds: float
    requests: int
    blocks: int
    tokens: int = 0


@contextmanager
def chat_server(delay: float, per_block: float) -> Iterator[str]:
    """tests/llm_support.py as a separate process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.llm_support", "--delay", str(delay), "--per-block-delay", str(per_block)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the loopback server did not start: {line!r}")
        yield f"http://127.0.0.1:{line.split()[1]}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def naive(url: str, stub: Path) -> Row:
    """One request per block, one after the other."""
    briefing, _, _ = parse_briefing_file(stub)
    assert briefing is not None
    client = openai.OpenAI(base_url=url, api_key="no-key", max_retries=0, timeout=60)
    started = time.perf_counter()
    filled = tokens = 0
    for block in briefing.aligned:
        ask = translation_ask([block], "zh-CN")
        response = client.chat.completions.create(
            model="loopback-model",
            messages=ask.messages(structured=True),  # type: ignore[arg-type]
            response_format=ask.response_format(),  # type: ignore[arg-type]
            max_tokens=1024,
        )
        answer = parse_answer(response.choices[0].message.content or "", TranslationAnswer)
        tokens += response.usage.total_tokens if response.usage else 0
        filled += sum(1 for item in answer.blocks if item.id == block.id and item.text)  # type: ignore[attr-defined]
    client.close()
    seconds = time.perf_counter() - started
    return Row("naive: one request per block, in a loop", seconds, len(briefing.aligned), filled, tokens)


def ours(url: str, root: Path, stub: Path, concurrency: int) -> list[Row]:
    empty = stub.read_text("utf-8")
    settings = load_settings(
        content_dir=root / "content",
        output_dir=root / "outputs",
        llm_url=url,
        llm_model="loopback-model",
        llm_concurrency=concurrency,
    )
    store = Store(settings.store_url)
    rows = []
    for name in ("ours: cold (empty cache)", "ours: rerun, no change", "ours: rerun from the cache (fresh stub)"):
        if name.startswith("ours: rerun from"):
            stub.write_text(empty, "utf-8")
        report = draft_briefing(settings, store, SLUG, ["translation"])
        if not report.ok:
            raise RuntimeError(f"{name}: {report.failures[:3]}")
        rows.append(Row(name, report.wall_seconds, report.stats.requests, report.blocks_filled, report.stats.tokens))
    store.close()
    return rows


def scenario(title: str, delay: float, per_block: float, blocks: int, concurrency: int) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-draft-") as folder, chat_server(delay, per_block) as url:
        root = Path(folder)
        shutil.copytree(REPO / "content", root / "content")
        stub = write_article_stub(root / "content", SLUG, long_article_items(blocks))
        baseline = naive(url, stub)
        rows = [baseline, *ours(url, root, stub, concurrency)]
    print(f"\n{title}")
    print(f"{'run':<44}{'wall s':>9}{'requests':>10}{'blocks':>8}{'tokens':>9}{'speed-up':>10}")
    for row in rows:
        ratio = baseline.seconds / row.seconds if row.seconds else float("inf")
        print(f"{row.name:<44}{row.seconds:>9.3f}{row.requests:>10}{row.blocks:>8}{row.tokens:>9}{ratio:>9.1f}x")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="20 blocks and 0.1 s per request: a quick pass")
    parser.add_argument("--blocks", type=int, help="blocks in the article (default 100; 20 with --small)")
    parser.add_argument("--delay", type=float, help="seconds the server takes per request (default 0.3)")
    parser.add_argument("--per-block-delay", type=float, default=0.02, help="extra seconds per block, 2nd scenario")
    parser.add_argument("--concurrency", type=int, default=4, help="BRIEFING_LLM_CONCURRENCY for our runs")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args(argv)
    blocks = args.blocks or (20 if args.small else 100)
    delay = args.delay if args.delay is not None else (0.1 if args.small else 0.3)
    print(f"drafting the translation of a {blocks}-block article; concurrency {args.concurrency}")
    fixed = scenario(f"server: {delay:g} s per request", delay, 0.0, blocks, args.concurrency)
    scaled = scenario(
        f"server: {delay:g} s per request + {args.per_block_delay:g} s per block",
        delay,
        args.per_block_delay,
        blocks,
        args.concurrency,
    )
    cold = fixed[0].seconds / fixed[1].seconds
    reruns_free = all(row.requests == 0 for row in fixed[2:] + scaled[2:])
    print(
        f"\ntarget: cold ≥ {COLD_TARGET:g}× the naive loop — {cold:.1f}× {'met' if cold >= COLD_TARGET else 'MISSED'}; "
        f"reruns make 0 requests — {'met' if reruns_free else 'MISSED'}"
    )
    if args.json:
        print(json.dumps({"fixed": [row.__dict__ for row in fixed], "per_block": [row.__dict__ for row in scaled]}))
    return 0 if cold >= COLD_TARGET and reruns_free else 1


if __name__ == "__main__":
    raise SystemExit(main())

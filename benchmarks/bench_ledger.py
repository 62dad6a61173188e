"""Ledger cost per message (SQLite vs PostgreSQL) and send throughput with 1 and 2 deliverers on PostgreSQL.

    python -m benchmarks.bench_ledger [--small]

Part 1 runs the ledger's per-message cycle without any transport: claim a batch of 200, then for each row
`start_sending` + `finish(sent)`. Part 2 starts 1 or 2 `python -m flows.app.worker` deliverers on one
PostgreSQL ledger against one loopback aiosmtpd and measures messages per second at the server (first to last
arrival), next to the ceiling measured in the same run: pre-built bytes over one SMTP connection.

PostgreSQL is a throwaway cluster (tests/pg_support.py) unless BRIEFING_TEST_POSTGRES_URL is set.
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flows.core.content import load_content
from flows.core.store import Store, ledger
from tests.pg_support import (
    CountingSmtp,
    deliver_env,
    fresh_schema,
    session_postgres,
    write_big_audience,
)

REPO = Path(__file__).resolve().parent.parent

BATCH = 200


def ledger_cycle(store: Store, rows: int) -> dict[str, float]:
    recipients = {f"r{i:06d}@example.org": f"<m{i}@example.org>" for i in range(rows)}
    started = time.perf_counter()
    ledger.enqueue(store, "bench", "atou", "hash", recipients)
    enqueue_s = time.perf_counter() - started
    claim_s = update_s = 0.0
    worker = ledger.worker_id()
    while True:
        t0 = time.perf_counter()
        batch = ledger.claim_batch(store, "bench", "atou", worker, BATCH)
        claim_s += time.perf_counter() - t0
        if not batch:
            break
        t0 = time.perf_counter()
        for row in batch:
            ledger.start_sending(store, row.id, worker)
            ledger.finish(store, row.id, ledger.SENT, "250 ok")
        update_s += time.perf_counter() - t0
    assert ledger.summarise(store, "bench")[ledger.SENT] == rows
    return {
        "enqueue rows/s": rows / enqueue_s,
        "claimed rows/s": rows / claim_s,
        "start+finish rows/s": rows / update_s,
        "ledger ms/message": 1000 * (claim_s + update_s) / rows,
    }


def smtp_ceiling(port: int, messages: int, size: int = 30_000) -> float:
    body = b"Subject: ceiling\r\nMessage-ID: <c@example.org>\r\n\r\n" + (b"x" * 76 + b"\r\n") * (size // 78)
    with smtplib.SMTP("127.0.0.1", port) as conn:
        started = time.perf_counter()
        for i in range(messages):
            conn.sendmail("b@example.org", [f"ceiling{i}@example.org"], body)
        return messages / (time.perf_counter() - started)


def deliver_throughput(project: Path, url: str, smtp: CountingSmtp, workers: int, recipients: int) -> float:
    slug = load_content(project / "content").content.ready[0].slug
    env = deliver_env(project, url, smtp.port)
    before = len(smtp.arrivals)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "flows.app.worker", slug, "--audience", "atou"],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(workers)
    ]
    for proc in procs:
        _out, err = proc.communicate(timeout=1800)
        if proc.returncode:
            raise RuntimeError(err.decode(errors="replace")[-2000:])
    times = sorted(t for t, _rcpt in smtp.arrivals[before:])
    if len(times) != recipients:
        raise RuntimeError(f"expected {recipients} messages at the server, got {len(times)}")
    return recipients / (times[-1] - times[0])


@contextmanager
def project_copy(recipients: int) -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    try:
        shutil.copytree(REPO / "content", folder / "content")
        (folder / "outputs").mkdir()
        write_big_audience(folder / "content", "atou", recipients)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def table(title: str, rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n{title}")
    for n, row in enumerate(rows):
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="quick run: fewer rows and recipients")
    args = parser.parse_args()
    ledger_rows, recipients = (1000, 300) if args.small else (5000, 2000)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; ledger rows {ledger_rows}, ", end="")
    print(f"recipients {recipients}")

    postgres = session_postgres()
    pg_url = next(postgres)
    try:
        with tempfile.TemporaryDirectory() as folder:
            lite = Store(f"sqlite:///{folder}/bench.db")
            sqlite_figures = ledger_cycle(lite, ledger_rows)
            lite.close()
        with fresh_schema(pg_url) as url:
            pg = Store(url)
            pg_figures = ledger_cycle(pg, ledger_rows)
            pg.close()
        rows = [("ledger (no transport)", "SQLite", "PostgreSQL", "PG / SQLite")]
        for key in sqlite_figures:
            rows.append(
                (
                    key,
                    f"{sqlite_figures[key]:.1f}",
                    f"{pg_figures[key]:.1f}",
                    f"{pg_figures[key] / sqlite_figures[key]:.2f}",
                )
            )
        table("Ledger cost per message", rows)

        with CountingSmtp() as smtp, project_copy(recipients) as project:
            ceiling = smtp_ceiling(smtp.port, min(recipients, 1000))
            results = {}
            for workers in (1, 2):
                with fresh_schema(pg_url) as url:
                    results[workers] = deliver_throughput(project, url, smtp, workers, recipients)
        rows = [("deliver on PostgreSQL", "msgs/s", "vs 1 worker", "vs SMTP ceiling")]
        rows.append(("SMTP ceiling (pre-built bytes)", f"{ceiling:.0f}", "", "1.00"))
        for workers, rate in results.items():
            rows.append((f"{workers} deliverer(s)", f"{rate:.0f}", f"{rate / results[1]:.2f}", f"{rate / ceiling:.2f}"))
        table(f"Send throughput, {recipients} recipients, one loopback aiosmtpd", rows)
    finally:
        next(postgres, None)


if __name__ == "__main__":
    main()

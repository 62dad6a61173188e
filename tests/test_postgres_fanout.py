"""Recipient batches fanned out over two Prefect workers, with the send rate limited globally.

A real `prefect server start` on loopback (SQLite for Prefect's own database, PREFECT_HOME in a temporary
folder), a process work pool, two `prefect worker start --type process --limit 1` processes and a deployment
of `deliver_flow` below (it calls the product's deliverer, `flows.edition.deliver_slug`, which runs
`flows.deliver.deliver_briefing` on the shared PostgreSQL ledger). Two flow runs of the same audience go to
the two workers and send at the same time against one loopback SMTP server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prefect import flow

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = "tests/test_postgres_fanout.py:deliver_flow"
POOL = "briefing-scale"
RECIPIENTS = int(os.environ.get("BRIEFING_SCALE_RECIPIENTS", "5000"))  # smaller only while developing
RATE_RECIPIENTS = 240
RATE = 40.0


@flow(name="scale-deliver")
def deliver_flow(slug: str, audience: str, report_dir: str) -> dict:
    """One worker's share of an audience; the ledger decides which rows are its share."""
    from flows.edition import deliver_slug

    started = time.time()
    summary = deliver_slug(slug, audiences=[audience])
    summary.update(started=started, finished=time.time())
    Path(report_dir, f"{audience}-{os.getpid()}.json").write_text(json.dumps(summary), encoding="utf-8")
    return summary


pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    api_url: str
    project: Path
    reports: Path
    smtp: object
    store_url: str
    slug: str
    atou: list[str]


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def _wait_healthy(api_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert server.poll() is None, f"prefect server exited:\n{log.read_text(errors='replace')[-3000:]}"
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"prefect server did not become healthy:\n{log.read_text(errors='replace')[-3000:]}")


SETUP = """
import sys
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from flows.deliver.rate_limit import ensure_send_rate_limit
from flows.core.settings import load_settings

with get_client(sync_client=True) as client:
    client.create_work_pool(WorkPoolCreate(name=sys.argv[2], type="process"))
# start-up: the global send-rate limit exists before any worker sends
print(ensure_send_rate_limit(load_settings(smtp_rate=float(sys.argv[3]))))
# .deploy() would also list the pool's workers, a request Prefect 3.8.8's server rejects (422): apply() only registers
remote = flow.from_source(source=sys.argv[1], entrypoint=sys.argv[4])
print(remote.to_deployment(name="scale", work_pool_name=sys.argv[2]).apply())
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Cluster]:
    from pg_support import CountingSmtp, deliver_env, free_port, fresh_schema, write_big_audience

    from flows.core.content import load_content

    root = tmp_path_factory.mktemp("fanout")
    project = root / "project"
    shutil.copytree(REPO / "content", project / "content")
    (project / "outputs").mkdir()
    reports = root / "reports"
    reports.mkdir()
    atou = write_big_audience(project / "content", "atou", RECIPIENTS)
    write_big_audience(project / "content", "neta", RATE_RECIPIENTS)
    slug = load_content(project / "content").content.ready[0].slug
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    processes: list[subprocess.Popen[bytes]] = []
    with fresh_schema(postgres_url) as store_url, CountingSmtp() as smtp:
        env = deliver_env(project, store_url, smtp.port)
        env.update(
            {
                "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}",
                "PREFECT_HOME": str(root / "prefect-home"),
                "PREFECT_API_URL": api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_UI_ENABLED": "false",
                "PREFECT_UI_ENABLED": "false",
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_CLI_PROMPT": "false",
                "PREFECT_LOGGING_LEVEL": "WARNING",
            }
        )
        try:
            server_log = root / "server.log"
            server = _start(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                env,
                server_log,
            )
            processes.append(server)
            _wait_healthy(api_url, server, server_log)
            setup = subprocess.run(
                [sys.executable, "-c", SETUP, str(REPO), POOL, str(RATE), ENTRYPOINT],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            assert setup.returncode == 0, setup.stderr[-3000:]
            assert setup.stdout.splitlines()[0] == "briefing-smtp-send"
            for name in ("worker-1", "worker-2"):
                args = [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process"]
                processes.append(_start([*args, "--limit", "1", "--name", name], env, root / f"{name}.log"))
            yield Cluster(api_url, project, reports, smtp, store_url, slug, atou)
        finally:
            for proc in reversed(processes):
                _stop(proc)
            from flows.core.store import close_stores

            close_stores()


def _run_and_wait(cluster: Cluster, audience: str, runs: int, env: dict[str, str]) -> list[dict]:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: cluster.api_url}):
        flow_runs = [
            run_deployment(
                "scale-deliver/scale",
                parameters={"slug": cluster.slug, "audience": audience, "report_dir": str(cluster.reports)},
                job_variables={"env": env},
                timeout=0,
            )
            for _ in range(runs)
        ]
        deadline = time.monotonic() + 360
        with get_client(sync_client=True) as client:
            while True:
                states = [client.read_flow_run(fr.id).state for fr in flow_runs]
                if all(s is not None and s.is_final() for s in states):
                    break
                assert time.monotonic() < deadline, f"flow runs did not finish: {[s and s.name for s in states]}"
                time.sleep(1)
    assert all(s.is_completed() for s in states), [f"{s.name}: {s.message}" for s in states]
    return [json.loads(p.read_text()) for p in sorted(cluster.reports.glob(f"{audience}-*.json"))]


def test_two_prefect_workers_share_one_audience_each_recipient_once(cluster: Cluster) -> None:
    reports = _run_and_wait(cluster, "atou", 2, {})

    assert len(reports) == 2 and len({r["pid"] for r in reports}) == 2
    sent = [r["states"].get("sent", 0) for r in reports]
    assert all(n > 0 for n in sent), f"one worker sent everything: {sent}"
    assert sum(sent) == RECIPIENTS
    first, second = sorted(reports, key=lambda r: r["started"])
    assert second["started"] < first["finished"], "the two deliver runs did not overlap"
    counts = dict(cluster.smtp.per_recipient)
    assert sum(counts.values()) == RECIPIENTS
    assert all(counts.get(e) == 1 for e in cluster.atou), "a recipient got no message or more than one"


def test_send_rate_is_limited_across_both_workers(cluster: Cluster) -> None:
    """Each worker alone would go at RATE (its own throttle): together they stay under RATE, not 2 x RATE."""
    from flows.deliver.rate_limit import permit_chunk

    chunk = permit_chunk(RATE)
    start = time.monotonic()
    reports = _run_and_wait(cluster, "neta", 2, {"BRIEFING_SMTP_RATE": str(RATE)})
    assert sum(r["states"].get("sent", 0) for r in reports) == RATE_RECIPIENTS
    assert all(r["rate_limit"] == "briefing-smtp-send" for r in reports)
    times = sorted(t for t, rcpt in cluster.smtp.arrivals if t >= start and rcpt.startswith("neta."))
    assert len(times) == RATE_RECIPIENTS
    # Permits come in chunks: at most RATE per second plus one chunk per holder (2 workers) and one fresh chunk.
    most_in_a_second = max(sum(1 for t in times[i:] if t - times[i] < 1.0) for i in range(len(times)))
    assert most_in_a_second <= RATE + 3 * chunk, most_in_a_second
    # 2 workers at RATE each would need half this long
    assert times[-1] - times[0] >= 0.8 * (RATE_RECIPIENTS - 3 * chunk) / RATE

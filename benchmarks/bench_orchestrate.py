"""Orchestration benchmark: trigger latency under `briefing serve`, and where `briefing run`'s time goes.

1. Latency from "a briefing file becomes ready" (draft → ready, saved) to "its emails are in a loopback
   SMTP server's mailbox" (aiosmtpd), under a real `briefing serve` subprocess; median of 10 (3 with --small).
   Split by the Prefect API's own timestamps: file saved → flow run created by the trigger → flow run
   started by the runner → first message → last message.
2. Wall time of `briefing run` on a fresh copy of the sample content, split into Prefect start-up (a
   subprocess on the embedded API, minus the same flow in-process on a running server), Prefect's
   per-flow/per-task overhead (the flow on a running server minus the same stages called without Prefect)
   and the pipeline's own work (the stages without Prefect, in the same process). The stages and the in-process
   flow first run once on fresh copies to pay the one-off costs of a process (template compilation, lazy
   imports, the API client and its events and log workers), which belong to start-up; then three times each,
   alternately, on fresh copies, and the split uses the medians. The flow runs with the settings `briefing run`
   gives it. Each whole `briefing run` case (against the server, beside a `serve` record, cold on new Prefect
   homes, cold again on an existing one) is timed three times too, and its median shown. CPU seconds (all
   threads of this process, or of the subprocess) are shown beside wall seconds: on a busy machine they are the
   steadier figure.

Each leg is printed with its target and whether it is met (issue 23): median TOTAL ≤ 3 s over 10 rounds;
`briefing run` ≤ 6 s against a running server and ≤ 15 s cold (embedded API); Prefect's in-flow overhead ≤ 2× the
pipeline's own work; `import flows.pipeline` ≤ 1 s. The cold `briefing run` is measured twice: first with a fresh
PREFECT_HOME (a newcomer's first command: the embedded server creates and migrates its database) and then again
on the same PREFECT_HOME (the database exists).

--serve-command runs another serving command in place of `python -m flows serve` (split as a shell splits words;
it gets the same environment: PREFECT_API_URL, BRIEFING_*), so a prototype or a moved module is measured the same
way; --latency-only skips part 2.

With --postgres the latency is also measured against a Prefect server on PostgreSQL (the production set-up of
docs/deployment.md): a throwaway cluster on loopback started like tests/pg_support.py does, `prefect server
start` with PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://…, `briefing serve` pointed at it by
PREFECT_API_URL. The SQLite server refuses a write that meets another write with a 503 that the Prefect client
retries after 2 s; PostgreSQL does not, so the two rows show what that costs.

Run: python -m benchmarks.bench_orchestrate [--small | --rounds N] [--postgres] [--latency-only]
     [--serve-command 'python -m flows serve']
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path
from typing import Any

import httpx

from flows.app.serve import LocalPrefectServer
from flows.prefect_session import free_port

REPO = Path(__file__).resolve().parent.parent
SAMPLE = "github-commit-flood"
SERVE_COMMAND = [sys.executable, "-m", "flows", "serve"]
TARGET_TOTAL = 3.0  # s, median file saved → last email (issue 23)
TARGET_RUN_WITH_SERVER = 6.0  # s, `briefing run` on the sample against a running server
TARGET_RUN_COLD = 15.0  # s, `briefing run` on the sample on the embedded API
TARGET_OVERHEAD_RATIO = 2.0  # Prefect's in-flow overhead ≤ 2× the pipeline's own work
TARGET_IMPORT = 1.0  # s, `import flows.pipeline` in a new process
REPEATS = 3  # part 2: the stages, the in-process flow and each `briefing run` case, this many times (medians)


class Mailbox:
    """aiosmtpd handler that keeps (arrival time, bytes) of every message."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook
        with self.lock:
            self.messages.append((time.time(), bytes(envelope.content)))
        return "250 OK"

    def arrivals(self, marker: str) -> list[float]:
        """Arrival times of the messages whose X-Briefing header names slug `marker` (the header may be folded)."""
        with self.lock:
            return [t for t, data in self.messages if briefing_slug(data) == marker]


def briefing_slug(data: bytes) -> str:
    header = BytesHeaderParser(policy=default).parsebytes(data).get("X-Briefing", "")
    return str(header).split(";", 1)[0].strip()


def fresh_project(root: Path, name: str) -> Path:
    project = root / name
    shutil.copytree(REPO / "content", project / "content")
    (project / "outputs").mkdir(parents=True)
    return project


def with_subscribers(project: Path, per_audience: int) -> Path:
    """Replace each audience's subscriber file with `per_audience` generated readers (0: keep the sample's)."""
    if per_audience <= 0:
        return project
    import yaml

    config = project / "content" / "audiences.yaml"
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    for audience in data["audiences"]:
        name = f"subscribers/{audience['id']}-bench.csv"
        rows = ["email,name,locale"]
        rows += [f"{audience['id']}.reader{i:05d}@example.net,读者{i},zh-CN" for i in range(per_audience)]
        (project / "content" / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
        audience["subscribers"] = name
    config.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return project


def project_env(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFING_") and k != "PREFECT_API_URL"}
    env.update(
        PYTHONPATH=str(REPO),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        BRIEFING_CONTENT_DIR=str(project / "content"),
        BRIEFING_OUTPUT_DIR=str(project / "outputs"),
        BRIEFING_PREFECT_UI="false",
        **extra,
    )
    return env


def as_new_briefing(source: str, slug: str) -> str:
    """The sample briefing as a new briefing about another article: published pages never change hands, so a
    copy that kept the sample's source article would be refused as a second page for the same article."""
    text = source.replace(f"slug: {SAMPLE}", f"slug: {slug}", 1)
    text = re.sub(r"(?m)^article_id: .*\n", "", text, count=1)
    return re.sub(r"(?m)^(  url: .*/)" + re.escape(SAMPLE) + "$", r"\g<1>" + slug, text, count=1)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


def flow_run_for(api: str, slug: str) -> dict[str, Any] | None:
    body = {"flows": {"name": {"any_": ["brief"]}}, "sort": "START_TIME_DESC", "limit": 200, "offset": 0}
    runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30).json()
    return next((r for r in runs if r["parameters"].get("slug") == slug), None)


def ready_event(api: str, slug: str) -> dict[str, Any]:
    body = {
        "filter": {"event": {"name": ["briefing.briefing.ready"]}, "resource": {"id": [f"briefing.briefing.{slug}"]}},
        "limit": 5,
    }
    response = httpx.post(f"{api}/events/filter", json=body, timeout=30)
    events = response.json().get("events", []) if response.status_code == 200 else []
    return events[0] if events else {}


def stamp(value: str | None) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else float("nan")


class PostgresPrefectServer(LocalPrefectServer):
    """`prefect server start` on loopback with its database on PostgreSQL instead of SQLite."""

    def __init__(self, home: Path, database_url: str) -> None:
        super().__init__(home, ui=False)
        self.database_url = database_url

    def _environment(self) -> dict[str, str]:
        return {**super()._environment(), "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url}


@contextlib.contextmanager
def prefect_on_postgres(root: Path) -> Iterator[tuple[str, float]]:
    """(API URL, start-up s) of a Prefect server on a throwaway PostgreSQL cluster; both stopped after."""
    from sqlalchemy.engine import make_url

    from tests.pg_support import PostgresServer, find_pg_bin, run_admin_sql

    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise SystemExit("--postgres needs PostgreSQL's binaries (/usr/lib/postgresql/<major>/bin or BRIEFING_PG_BIN)")
    postgres = PostgresServer(bin_dir)
    server: LocalPrefectServer | None = None
    try:
        store_url = make_url(postgres.start())
        run_admin_sql(store_url.render_as_string(hide_password=False), 'CREATE DATABASE "prefect"')
        database_url = store_url.set(drivername="postgresql+asyncpg", database="prefect")
        server = PostgresPrefectServer(root / "prefect-postgres", database_url.render_as_string(hide_password=False))
        started = time.perf_counter()
        api = server.start()
        yield api, time.perf_counter() - started
    finally:
        if server is not None:
            server.stop()
        postgres.stop()


def measure_latency(
    root: Path, api: str, rounds: int, name: str = "serve", command: list[str] | None = None
) -> list[dict[str, float]]:
    from aiosmtpd.controller import Controller

    from flows.core.content import load_content

    project = fresh_project(root, name)
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    env = project_env(
        project,
        PREFECT_API_URL=api,
        BRIEFING_SMTP_URL=f"smtp://127.0.0.1:{port}",
        BRIEFING_SMTP_TLS="none",
        BRIEFING_SECRET="benchmark-secret-0123456789-abcdefghijkl",
    )
    log = (root / f"{name}.log").open("w")
    serve = subprocess.Popen(command or SERVE_COMMAND, env=env, stdout=log, stderr=subprocess.STDOUT)
    per_briefing = sum(len(a.subscribers) for a in load_content(project / "content").content.audiences)
    briefings = project / "content" / "briefings"
    source = (briefings / f"{SAMPLE}.md").read_text(encoding="utf-8")
    results = []
    try:
        ready = [b.slug for b in load_content(project / "content").content.ready]
        wait_for(lambda: all(len(mailbox.arrivals(s)) == per_briefing for s in ready), 300, "initial delivery")
        for index in range(rounds):
            slug = f"bench-{index:02d}-flip"
            text = as_new_briefing(source, slug)
            path = briefings / f"{slug}.md"
            path.write_text(text.replace("status: ready", "status: draft", 1), encoding="utf-8")
            time.sleep(1.5)  # the watcher sees the draft and announces nothing
            saved = time.time()
            path.write_text(text, encoding="utf-8")
            wait_for(lambda s=slug: len(mailbox.arrivals(s)) == per_briefing, 180, f"emails of {slug}")
            arrivals = sorted(mailbox.arrivals(slug))
            run = flow_run_for(api, slug) or {}
            time.sleep(0.5)
            event = ready_event(api, slug)
            results.append(
                {
                    "total": arrivals[-1] - saved,
                    "watch": stamp(event.get("occurred")) - saved,
                    "event": stamp(run.get("created")) - stamp(event.get("occurred")),
                    "trigger": stamp(run.get("created")) - saved,
                    "runner": stamp(run.get("start_time")) - stamp(run.get("created")),
                    "first_email": arrivals[0] - stamp(run.get("start_time")),
                    "all_emails": arrivals[-1] - arrivals[0],
                }
            )
            print(f"  {slug}: {results[-1]['total']:.2f} s", flush=True)
            time.sleep(1.0)
    finally:
        serve.terminate()
        serve.wait(120)
        log.close()
        controller.stop()
    return results


def stages_without_prefect(project: Path) -> tuple[float, float]:
    """(wall s, CPU s) of the pipeline's own work: the same stage calls as the `pipeline` flow, no Prefect."""
    from flows.core.content import load_content
    from flows.core.settings import load_settings
    from flows.core.store import Store
    from flows.deliver import deliver_briefing
    from flows.edition import gate, render_for_archive
    from flows.ingest import ingest_feeds
    from flows.ingest.stubs import write_stubs
    from flows.publish import publish_archive

    os.environ.update(BRIEFING_CONTENT_DIR=str(project / "content"), BRIEFING_OUTPUT_DIR=str(project / "outputs"))
    start, cpu = time.perf_counter(), time.process_time()
    settings = load_settings()
    store = Store(settings.store_url)
    loaded = load_content(settings.content_dir)
    report = ingest_feeds(list(loaded.content.feeds), store, settings)
    articles = [a for a in (store.get_article(i) for i in report.new_articles) if a is not None]
    if write_stubs(articles, loaded.content.briefings, settings.content_dir, loaded.content.audiences):
        loaded = load_content(settings.content_dir)
    checked = gate(loaded, store)
    for joined in checked.passed:
        for audience in loaded.content.audiences:
            page = checked.pages[joined.briefing.slug]
            rendered = render_for_archive(settings, loaded.content, joined.briefing, page, audiences=[audience.id])
            deliver_briefing(rendered, loaded.content, store, settings, audiences=[audience.id])
    publish_archive(loaded.content, store, settings)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    store.close()
    return elapsed, cpu


def flow_on_running_server(project: Path, api: str) -> tuple[float, float, int]:
    """(wall s, CPU s, task runs) of the `pipeline` flow run in this process against the running server, with the
    settings `briefing run` gives its flow run (`flows.prefect_session.OneOffSession.run`, where it exists)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.pipeline import pipeline

    try:
        from flows.prefect_session import OneOffSession

        def call() -> Any:
            return OneOffSession(api, "configured").run(pipeline, return_state=True)
    except ImportError:  # the code before issue 23: `run` called the flow as it is

        def call() -> Any:
            return pipeline(return_state=True)

    os.environ.update(BRIEFING_CONTENT_DIR=str(project / "content"), BRIEFING_OUTPUT_DIR=str(project / "outputs"))
    with temporary_settings(updates={PREFECT_API_URL: api}):
        start, cpu = time.perf_counter(), time.process_time()
        state = call()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert state.result()["emails_sent"] > 0
    return elapsed, cpu, recorded_task_runs(api, str(state.state_details.flow_run_id))


def beside_serve(project: Path, api: str) -> Path:
    """The project as if `briefing serve` ran on it: its record of the server (this process stands in for serve)."""
    (project / "outputs" / ".prefect").mkdir(parents=True)
    record = {"api_url": api, "pid": os.getpid()}
    (project / "outputs" / ".prefect" / "server.json").write_text(json.dumps(record), encoding="utf-8")
    return project


def median_of(samples: list[tuple[float, ...]]) -> tuple[float, ...]:
    return tuple(statistics.median(column) for column in zip(*samples, strict=True))


def recorded_task_runs(api: str, flow_run_id: str, settle: float = 0.5, timeout: float = 15.0) -> int:
    """How many task runs the server recorded for the flow run. Task runs reach it as events that its task-run
    recorder writes a moment later, so the count is read until it has not changed for `settle` seconds."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=timeout, at_exit=False)
    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}}
    deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while time.monotonic() < deadline:
        count = int(httpx.post(f"{api}/task_runs/count", json=body, timeout=30).json())
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= settle:
            break
        time.sleep(0.1)
    return last


def timed_subprocess(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of the child and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def verdict(met: bool) -> str:
    return "MET" if met else "MISSED"


def target_line(what: str, value: float, target: float, unit: str = "s") -> str:
    ratio = value / target if target else float("nan")
    met = verdict(value <= target)
    return f"target: {what} ≤ {target:g} {unit} — {met} ({value:.2f} {unit}, {ratio:.2f}× the target)"


LEGS = [
    ("watch", "file saved → event emitted (watcher)"),
    ("event", "event emitted → run created (trigger)"),
    ("runner", "run created → run started (poll + process)"),
    ("first_email", "run started → first email (flow body)"),
    ("all_emails", "first → last email"),
    ("total", "TOTAL: file saved → last email"),
]


def retryable_errors(server: LocalPrefectServer) -> int:
    """How many requests the server answered 503 for a retryable database error (PREFECT_API_LOG_RETRYABLE_ERRORS)."""
    return server.log_path.read_text(errors="replace").count("Encountered retryable exception in request")


def print_latency(backend: str, latency: list[dict[str, float]], rounds: int, retryable: int) -> None:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in latency)

    print(f"\n1. draft → ready → emails in the loopback SMTP mailbox, under `briefing serve` ({rounds} rounds)")
    print(f"   Prefect server on {backend}; 503s for a retryable database error while serving: {retryable}")
    print(f"{'leg':<44}{'median s':>10}{'min s':>8}{'max s':>8}")
    for key, label in LEGS:
        values = [r[key] for r in latency]
        if any(v != v for v in values):  # NaN: the event was not persisted yet
            print(f"{label:<44}{'n/a':>10}")
            continue
        print(f"{label:<44}{med(key):>10.2f}{min(values):>8.2f}{max(values):>8.2f}")
    print(target_line(f"median TOTAL over {rounds} rounds", med("total"), TARGET_TOTAL))
    if rounds < 10:
        print("   (issue 23 judges the median over 10 rounds: run without --small)")


def print_comparison(rows: dict[str, tuple[list[dict[str, float]], int]]) -> None:
    print("\n1c. the same latency by the Prefect server's database (medians, s)")
    print(f"{'server database':<34}{'watch':>7}{'event':>7}{'runner':>8}{'flow':>7}{'all':>7}{'TOTAL':>7}{'503s':>6}")
    for backend, (latency, retryable) in rows.items():
        medians = [statistics.median(r[key] for r in latency) for key, _ in LEGS]
        cells = "".join(f"{m:>{w}.2f}" for m, w in zip(medians, (7, 7, 8, 7, 7, 7), strict=True))
        print(f"{backend:<34}{cells}{retryable:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="3 latency rounds instead of 10")
    parser.add_argument("--rounds", type=int, default=0, help="latency rounds (default 10, 3 with --small)")
    parser.add_argument(
        "--serve-command",
        default="",
        help="the serving command to measure instead of `python -m flows serve` (split as a shell splits words)",
    )
    parser.add_argument("--latency-only", action="store_true", help="part 1 only: skip the `briefing run` split")
    parser.add_argument(
        "--postgres", action="store_true", help="also measure the latency against a Prefect server on PostgreSQL"
    )
    parser.add_argument(
        "--subscribers",
        type=int,
        default=0,
        help="part 2 only: N generated subscribers per audience instead of the sample's 2-6 (a real list's size)",
    )
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.small else 10)
    serve_command = shlex.split(args.serve_command) if args.serve_command else None
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-orchestrate-prefect-"))
    os.environ.setdefault("PREFECT_API_LOG_RETRYABLE_ERRORS", "true")  # so the 503s can be counted in the log

    root = Path(tempfile.mkdtemp(prefix="bench-orchestrate-"))
    server = LocalPrefectServer(root / "prefect-server", ui=False)
    started = time.perf_counter()
    api = server.start()
    server_start = time.perf_counter() - started
    rows: dict[str, tuple[list[dict[str, float]], int]] = {}
    try:
        print(f"Prefect server on {api} started in {server_start:.1f} s; latency rounds: {rounds}", flush=True)
        latency = measure_latency(root, api, rounds, command=serve_command)
        rows["SQLite (as `briefing serve` starts)"] = (latency, retryable_errors(server))
        if args.latency_only:
            server.stop()
            for backend, (measured, retryable) in rows.items():
                print_latency(backend, measured, rounds, retryable)
            return

        # Each measured twice, the first run warming this process (template compilation, lazy imports, the
        # Prefect client and its workers): one-off costs belong to start-up, not to the per-run split.
        def part2_project(name: str) -> Path:
            return with_subscribers(fresh_project(root, name), args.subscribers)

        stages_without_prefect(part2_project("baseline-cold"))
        cold, cold_cpu, _ = flow_on_running_server(part2_project("flow-cold"), api)
        # then alternately, REPEATS times each: medians (a shared machine's load moves single runs by seconds)
        works, flows_ = [], []
        for index in range(REPEATS):
            works.append(stages_without_prefect(part2_project(f"baseline-{index}")))
            flows_.append(flow_on_running_server(part2_project(f"flow-{index}"), api))
        work, work_cpu = median_of(works)
        in_process, flow_cpu, task_runs = median_of(flows_)
        tasks = int(task_runs)
        import_only, import_cpu = median_of(
            [timed_subprocess([sys.executable, "-c", "import flows.pipeline"], project_env(root)) for _ in range(3)]
        )
        run_command = [sys.executable, "-m", "flows", "--quiet", "run"]
        # whole `briefing run` commands, REPEATS times each (medians)
        with_server, with_server_cpu = median_of(
            [
                timed_subprocess(run_command, project_env(part2_project(f"run-server-{i}"), PREFECT_API_URL=api))
                for i in range(REPEATS)
            ]
        )
        found_wall, found_cpu = median_of(
            [timed_subprocess(run_command, project_env(beside_serve(part2_project(f"run-beside-{i}"), api)))
             for i in range(REPEATS)]
        )  # fmt: skip
        server.stop()  # one Prefect server at a time
        homes = [{"PREFECT_HOME": str(root / f"home-{i}")} for i in range(REPEATS)]  # newcomers': no database yet
        run_wall, run_cpu = median_of(
            [timed_subprocess(run_command, project_env(part2_project(f"new-{i}"), **homes[i])) for i in range(REPEATS)]
        )
        rerun_wall, rerun_cpu = median_of(
            [timed_subprocess(run_command, project_env(part2_project(f"re-{i}"), **homes[0])) for i in range(REPEATS)]
        )
        if args.postgres:
            with prefect_on_postgres(root) as (pg_api, pg_start):
                print(f"Prefect server on PostgreSQL on {pg_api} started in {pg_start:.1f} s", flush=True)
                pg_latency = measure_latency(root, pg_api, rounds, "serve-postgres", serve_command)
                pg_log = LocalPrefectServer(root / "prefect-postgres")
                rows["PostgreSQL (docs/deployment.md)"] = (pg_latency, retryable_errors(pg_log))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    for backend, (latency, retryable) in rows.items():
        print_latency(backend, latency, rounds, retryable)
    if len(rows) > 1:
        print_comparison(rows)

    overhead, overhead_cpu = in_process - work, flow_cpu - work_cpu
    startup, startup_cpu = run_wall - in_process, run_cpu - flow_cpu
    readers = f"{args.subscribers} generated subscribers per audience" if args.subscribers else "its own subscribers"
    print(f"\n2. `briefing run` on a fresh copy of the sample content, {readers} (outbox transport)")
    print(f"{'part':<60}{'wall s':>8}{'CPU s':>8}{'× work':>8}")
    rows_2 = [
        ("pipeline's own work (stages, no Prefect; baseline)", work, work_cpu),
        (f"Prefect overhead in the flow ({tasks} task runs, running server)", overhead, overhead_cpu),
        ("  of which per task run", overhead / max(tasks, 1), overhead_cpu / max(tasks, 1)),
        ("  first flow run in a process instead (+ client start-up)", cold - work, cold_cpu - work_cpu),
        ("Prefect start-up (embedded API server, imports; one-off)", startup, startup_cpu),
        ("  of which `import flows.pipeline` in a new process", import_only, import_cpu),
        ("`briefing run` wall time (subprocess, embedded API, new PREFECT_HOME)", run_wall, run_cpu),
        ("`briefing run` again (embedded API, its database exists)", rerun_wall, rerun_cpu),
        ("`briefing run` against the running server (PREFECT_API_URL)", with_server, with_server_cpu),
        ("`briefing run` beside `briefing serve` (its record; nothing set)", found_wall, found_cpu),
        ("loopback `prefect server start` (one-off, for serve)", server_start, float("nan")),
    ]
    for label, seconds, cpu_seconds in rows_2:
        print(f"{label:<60}{seconds:>8.2f}{cpu_seconds:>8.2f}{seconds / work:>8.1f}")
    print(target_line("`briefing run` against a running server", with_server, TARGET_RUN_WITH_SERVER))
    print(target_line("`briefing run` beside `briefing serve`, nothing set", found_wall, TARGET_RUN_WITH_SERVER))
    print(target_line("`briefing run` cold (embedded API, new PREFECT_HOME)", run_wall, TARGET_RUN_COLD))
    print(target_line("`briefing run` cold (embedded API, database exists)", rerun_wall, TARGET_RUN_COLD))
    print(target_line("Prefect's in-flow overhead (wall) / own work", overhead / work, TARGET_OVERHEAD_RATIO, "×"))
    cpu_ratio = overhead_cpu / work_cpu
    print(target_line("Prefect's in-flow overhead (CPU) / own work", cpu_ratio, TARGET_OVERHEAD_RATIO, "×"))
    print(target_line("`import flows.pipeline` in a new process", import_only, TARGET_IMPORT))
    print(f"   (`briefing run` rows: medians of {REPEATS} whole commands; on a shared machine prefer more runs)")


if __name__ == "__main__":
    main()

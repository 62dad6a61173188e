"""`briefing serve`: the deployments, their schedule and trigger, and a watcher on content/ — in one process.

Schedules and event triggers need a real Prefect server (the embedded API refuses schedules and each process
would get its own temporary server, losing events). So when PREFECT_API_URL is unset, `serve` starts
`prefect server start` on loopback with its SQLite database under `<output dir>/.prefect` and stops it on
exit; with PREFECT_API_URL set it uses that server.

The watcher reloads content/ on every change and emits `briefing.briefing.ready` for each ready briefing
version not announced before; the `brief` deployment's trigger turns that event into a run for the slug.

The `brief` runs are executed IN this process (`InProcessRuns`), not by the runner: a runner polls for due
runs and starts a new Python process per run, which costs seconds between "ready" and the first email. Here the
server's `prefect.flow-run.Scheduled` event for a `brief` run reaches this process over the event stream at once;
it claims the run (Scheduled → Pending, which the server grants to one claimant only, as it does for workers)
and runs it with Prefect's own flow engine in a thread, with the stage modules already imported. The run, its
task runs, logs, artifacts and retries are recorded exactly as a runner's would be. A sweep every few seconds
picks up runs whose event was missed (start-up, a dropped connection). The trigger stays on the deployment, so
any other process serving it (a remote `briefing serve`) can claim the same runs. The other deployments
(ingest and collect on their schedules, deliver/publish/pipeline by hand) stay on the runner.

While serving, the API address is written to `<output dir>/.prefect/server.json` so that a one-off command
(`briefing run`) finds the running server by itself (`flows.prefect_session.discover_server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from flows.core.content import load_content
from flows.core.errors import BriefingError
from flows.core.settings import Settings
from flows.core.store import open_store
from flows.events import announce_ready, brief_trigger
from flows.prefect_session import SERVER_RECORD, api_healthy, free_port, stop_process_group

logger = logging.getLogger(__name__)

DEPLOYMENT = "briefing"
POLL_SECONDS = "1"  # how often the runner looks for scheduled/triggered runs (default 10 s)
SWEEP_SECONDS = 5.0  # how often InProcessRuns looks for runs whose Scheduled event it missed
IN_PROCESS_RUNS = 4  # `brief` runs executed at once in the serving process
SCHEDULED_EVENT = "prefect.flow-run.Scheduled"


class PrefectServerError(BriefingError):
    """The loopback Prefect server could not be started."""


class LocalPrefectServer:
    """`prefect server start` (`flows.app.prefect_server`) on 127.0.0.1 in its own process group, state under
    `home`."""

    def __init__(self, home: Path, *, port: int = 0, ui: bool = True, startup_timeout: float = 180.0) -> None:
        self.home = home.resolve()
        self.port = port or free_port()
        self.ui = ui
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def log_path(self) -> Path:
        return self.home / "server.log"

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        ui = "true" if self.ui else "false"
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED=ui,
            PREFECT_SERVER_UI_ENABLED=ui,
            PREFECT_UI_API_URL=self.api_url,
        )
        return env

    def start(self) -> str:
        self.home.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        # `prefect server start`, with a Retry-After on the SQLite server's 503s (flows/app/prefect_server.py)
        command = [sys.executable, "-m", "flows.app.prefect_server", "--host", "127.0.0.1", "--port", str(self.port)]
        logger.info("starting a Prefect server on %s (state in %s)", self.api_url, self.home)
        self.process = subprocess.Popen(
            command, env=self._environment(), stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_healthy()
        return self.api_url

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                self.stop()
                raise PrefectServerError(
                    f"`prefect server start` exited with status {self.process.returncode}",
                    where=str(self.log_path),
                    hint=f"read the log; last lines: {self._tail()}",
                )
            if api_healthy(self.api_url, timeout=2):
                return
            time.sleep(0.2)
        self.stop()
        raise PrefectServerError(
            f"the Prefect server did not answer {self.api_url}/health within {self.startup_timeout:.0f} s",
            where=str(self.log_path),
            hint="set PREFECT_API_URL to a running server, or read the log",
        )

    def _tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            logger.info("stopping the Prefect server on %s", self.api_url)
            stop_process_group(process, timeout)
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def prefect_api(settings: Settings) -> Iterator[str]:
    """Yield the API URL to use: PREFECT_API_URL when set, else a loopback server started for the duration.

    Either way its address is recorded in `<output dir>/.prefect/server.json` while serving."""
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", POLL_SECONDS)
    record = settings.output_dir.resolve() / ".prefect" / SERVER_RECORD
    configured = os.environ.get("PREFECT_API_URL", "")
    if configured:
        write_server_record(record, configured)
        try:
            yield configured
        finally:
            remove_server_record(record)
        return
    server = LocalPrefectServer(settings.output_dir / ".prefect", port=settings.prefect_port, ui=settings.prefect_ui)
    try:
        url = server.start()
        os.environ["PREFECT_API_URL"] = url
        write_server_record(record, url)
        from prefect.settings import PREFECT_API_URL, PREFECT_RUNNER_POLL_FREQUENCY, temporary_settings

        poll = float(os.environ["PREFECT_RUNNER_POLL_FREQUENCY"])
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_RUNNER_POLL_FREQUENCY: poll}):
            yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        remove_server_record(record)
        server.stop()


def write_server_record(record: Path, api_url: str) -> None:
    """Tell one-off commands run on the same output directory where the serving Prefect API is (and who serves it)."""
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"api_url": api_url, "pid": os.getpid()}), encoding="utf-8")


def remove_server_record(record: Path) -> None:
    """Remove the record if it is still this process's (a second `serve` on the same folder may have replaced it)."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(record.read_text(encoding="utf-8")).get("pid") == os.getpid():
            record.unlink()


def build_deployments(settings: Settings) -> list[Any]:
    """The served deployments: ingest and collect (when BRIEFING_IMAP_URL is set) on their cron schedules, brief
    on the ready event (executed by `InProcessRuns`, so it must stay first), the rest by hand."""
    from prefect.deployments.runner import EntrypointType

    from flows import pipeline

    common: dict[str, Any] = {"tags": ["briefing"], "entrypoint_type": EntrypointType.MODULE_PATH}
    return [
        pipeline.brief.to_deployment(
            DEPLOYMENT,
            triggers=[brief_trigger()],
            description="Deliver and publish one briefing; triggered by briefing.briefing.ready.",
            **common,
        ),
        pipeline.ingest.to_deployment(
            DEPLOYMENT, cron=settings.ingest_schedule, description="Fetch the feeds on a schedule.", **common
        ),
        pipeline.deliver.to_deployment(DEPLOYMENT, description="Send every ready briefing (by hand).", **common),
        pipeline.publish.to_deployment(DEPLOYMENT, description="Rebuild the archive (by hand).", **common),
        pipeline.pipeline.to_deployment(DEPLOYMENT, description="Everything, once (by hand).", **common),
        pipeline.collect.to_deployment(
            DEPLOYMENT,
            # no mailbox configured: the deployment is there to run by hand, but nothing is scheduled
            cron=settings.collect_schedule if settings.imap_url else None,
            description="Read the inbound mailbox: replies, bounces, complaints, mailto unsubscribes.",
            **common,
        ),
    ]


def announce_content(settings: Settings) -> list[str]:
    """Load content/ and announce every ready briefing version not announced before."""
    loaded = load_content(settings.content_dir)
    for problem in loaded.errors:
        logger.warning("%s", problem)
    return announce_ready(loaded.content.ready, open_store(settings.store_url))


async def watch_content(settings: Settings, stop: asyncio.Event) -> None:
    """Announce ready briefings now and after every change under content/ (debounced to 200 ms)."""
    from watchfiles import awatch

    await asyncio.to_thread(announce_content, settings)
    async for changes in awatch(settings.content_dir.resolve(), stop_event=stop, debounce=200, step=50):
        logger.debug("content changed: %s", sorted(path for _, path in changes))
        try:
            await asyncio.to_thread(announce_content, settings)
        except BriefingError as err:
            logger.error("%s", err)


class InProcessRuns:
    """Execute the flow runs of some deployments in this process as soon as the server schedules them.

    Learns of a new run from the server's `prefect.flow-run.Scheduled` event (and, as a fallback, from a sweep of
    due runs every `SWEEP_SECONDS`), claims it with a Scheduled → Pending proposal that the server grants to one
    claimant only, then runs it through Prefect's flow engine (`run_flow`) in a worker thread: the same engine a
    runner's subprocess would run, so states, task runs, logs, artifacts and retries are recorded the same way.
    """

    def __init__(self, flows: dict[UUID, Any], limit: int = IN_PROCESS_RUNS) -> None:
        self.flows = flows
        self.pool = ThreadPoolExecutor(limit, thread_name_prefix="flow-run")
        self.inflight: set[UUID] = set()
        self.jobs: set[asyncio.Task[None]] = set()
        self.client: Any = None

    async def run(self, stop: asyncio.Event) -> None:
        """Listen and sweep until `stop` is set; then wait (up to 60 s) for the runs in progress."""
        from prefect import get_client

        async with get_client() as client:
            self.client = client
            loops = [asyncio.create_task(self._listen()), asyncio.create_task(self._sweep())]
            await stop.wait()
            for job in loops:
                job.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            if self.jobs:
                logger.info("waiting for %d flow runs in progress", len(self.jobs))
                await asyncio.wait(set(self.jobs), timeout=60)
        self.pool.shutdown(wait=False)

    async def _listen(self) -> None:
        from prefect.events.clients import get_events_subscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        wanted = {f"prefect.deployment.{deployment_id}" for deployment_id in self.flows}
        event_filter = EventFilter(event=EventNameFilter(name=[SCHEDULED_EVENT]))
        while True:
            try:
                async with get_events_subscriber(filter=event_filter) as subscriber:
                    logger.debug("listening for %s", SCHEDULED_EVENT)
                    async for event in subscriber:
                        if any(related.id in wanted for related in event.related):
                            self.start(UUID(event.resource.id.rsplit(".", 1)[-1]))
            except asyncio.CancelledError:
                raise
            except Exception:  # the sweep still finds the runs; reconnect and keep listening
                logger.warning("the event stream failed; reconnecting in 1 s", exc_info=True)
                await asyncio.sleep(1)

    async def _sweep(self) -> None:
        from datetime import UTC, datetime

        while True:
            try:
                runs = await self.client.get_scheduled_flow_runs_for_deployments(
                    deployment_ids=list(self.flows), scheduled_before=datetime.now(UTC)
                )
                for flow_run in runs:
                    self.start(flow_run.id)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("could not look for scheduled runs", exc_info=True)
            await asyncio.sleep(SWEEP_SECONDS)

    def start(self, run_id: UUID) -> None:
        if run_id in self.inflight:
            return
        self.inflight.add(run_id)
        job = asyncio.create_task(self._claim_and_execute(run_id))
        self.jobs.add(job)
        job.add_done_callback(self.jobs.discard)

    async def _claim(self, run_id: UUID) -> Any:
        """The flow run, claimed for this process; None when it is not ours to run (or someone else claimed it)."""
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.responses import SetStateStatus
        from prefect.states import Pending

        flow_run = await self.client.read_flow_run(run_id)
        if flow_run.deployment_id not in self.flows or flow_run.state_type != StateType.SCHEDULED:
            return None
        result = await self.client.set_flow_run_state(run_id, Pending(), force=False)
        if result.status != SetStateStatus.ACCEPT:
            logger.debug("flow run %s was claimed elsewhere (%s)", run_id, result.status)
            return None
        # the process that runs it, as a runner records its subprocess (shown in the UI, used to tell runs apart)
        await self.client.update_flow_run(run_id, infrastructure_pid=f"{socket.gethostname()}:{os.getpid()}")
        return await self.client.read_flow_run(run_id)

    async def _claim_and_execute(self, run_id: UUID) -> None:
        from prefect.flow_engine import run_flow

        try:
            flow_run = await self._claim(run_id)
            if flow_run is None:
                return
            flow = self.flows[flow_run.deployment_id]
            logger.info("running %s (flow run %s) in this process", flow_run.name, run_id)
            context = contextvars.copy_context()  # the serving process's Prefect settings (its API URL)
            loop = asyncio.get_running_loop()
            state = await loop.run_in_executor(
                self.pool, lambda: context.run(run_flow, flow, flow_run=flow_run, return_type="state")
            )
            logger.info("flow run %s ended %s", flow_run.name, getattr(state, "type", state))
        except Exception:
            logger.exception("flow run %s could not be executed in this process", run_id)
        finally:
            self.inflight.discard(run_id)


async def _serve(settings: Settings, deployments: list[Any], watch: bool, on_ready: Callable[[str], None]) -> None:
    from prefect.runner import Runner

    from flows.pipeline import brief, ensure_limits

    await asyncio.to_thread(ensure_limits, settings)
    brief_deployment, *others = deployments
    in_process = InProcessRuns({await brief_deployment.aapply(): brief})
    runner = Runner(name="briefing-serve", pause_on_shutdown=True)
    for deployment in others:
        await runner.aadd_deployment(deployment)
    stop = asyncio.Event()
    runner_task = asyncio.create_task(runner.start())
    await asyncio.sleep(0)  # let the runner install its own SIGTERM handler, then replace it with ours
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runs_task = asyncio.create_task(in_process.run(stop))
    watcher = asyncio.create_task(watch_content(settings, stop)) if watch else None
    on_ready(os.environ.get("PREFECT_API_URL", ""))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({runner_task, runs_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    logger.info("shutting down")
    if runner.started:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(runner.astop(), 20)
    for task in (runner_task, watcher, runs_task):
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 70 if task is runs_task else 10)
    logger.info("stopped serving")


def serve(settings: Settings, *, watch: bool = True, on_ready: Callable[[str], None] = lambda _url: None) -> None:
    """Serve the deployments (and the content watcher) until Ctrl-C or SIGTERM."""
    with prefect_api(settings):
        deployments = build_deployments(settings)
        asyncio.run(_serve(settings, deployments, watch, on_ready))

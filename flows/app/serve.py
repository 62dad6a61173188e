"""`briefing serve`: the deployments, their schedule and trigger, and a watcher on content/ — in one process.

Schedules and event triggers need a real Prefect server (the embedded API refuses schedules and each process
would get its own temporary server, losing events). So when PREFECT_API_URL is unset, `serve` starts
`prefect server start` on loopback with its SQLite database under `<output dir>/.prefect` and stops it on
exit; with PREFECT_API_URL set it uses that server.

The watcher reloads content/ on every change and emits `briefing.briefing.ready` for each ready briefing
version not announced before; the `brief` deployment's trigger turns that event into a run for the slug.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx

from flows.core.content import load_content
from flows.core.errors import BriefingError
from flows.core.settings import Settings
from flows.core.store import open_store
from flows.events import announce_ready, brief_trigger

logger = logging.getLogger(__name__)

DEPLOYMENT = "briefing"
POLL_SECONDS = "1"  # how often the runner looks for scheduled/triggered runs (default 10 s)


class PrefectServerError(BriefingError):
    """The loopback Prefect server could not be started."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPrefectServer:
    """`prefect server start` on 127.0.0.1 in its own process group, state under `home`."""

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
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
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
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
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
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None


@contextlib.contextmanager
def prefect_api(settings: Settings) -> Iterator[str]:
    """Yield the API URL to use: PREFECT_API_URL when set, else a loopback server started for the duration."""
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", POLL_SECONDS)
    configured = os.environ.get("PREFECT_API_URL", "")
    if configured:
        yield configured
        return
    server = LocalPrefectServer(settings.output_dir / ".prefect", port=settings.prefect_port, ui=settings.prefect_ui)
    try:
        url = server.start()
        os.environ["PREFECT_API_URL"] = url
        from prefect.settings import PREFECT_API_URL, PREFECT_RUNNER_POLL_FREQUENCY, temporary_settings

        poll = float(os.environ["PREFECT_RUNNER_POLL_FREQUENCY"])
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_RUNNER_POLL_FREQUENCY: poll}):
            yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()


def build_deployments(settings: Settings) -> list[Any]:
    """The served deployments: ingest and collect (when BRIEFING_IMAP_URL is set) on their cron schedules, brief
    on the ready event, the rest by hand."""
    from prefect.deployments.runner import EntrypointType

    from flows import pipeline

    common: dict[str, Any] = {"tags": ["briefing"], "entrypoint_type": EntrypointType.MODULE_PATH}
    return [
        pipeline.ingest.to_deployment(
            DEPLOYMENT, cron=settings.ingest_schedule, description="Fetch the feeds on a schedule.", **common
        ),
        pipeline.brief.to_deployment(
            DEPLOYMENT,
            triggers=[brief_trigger()],
            description="Deliver and publish one briefing; triggered by briefing.briefing.ready.",
            **common,
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


async def _serve(settings: Settings, deployments: list[Any], watch: bool, on_ready: Callable[[str], None]) -> None:
    from prefect.runner import Runner

    from flows.pipeline import ensure_limits

    await asyncio.to_thread(ensure_limits, settings)
    runner = Runner(name="briefing-serve", pause_on_shutdown=True)
    for deployment in deployments:
        await runner.aadd_deployment(deployment)
    stop = asyncio.Event()
    runner_task = asyncio.create_task(runner.start())
    await asyncio.sleep(0)  # let the runner install its own SIGTERM handler, then replace it with ours
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    watcher = asyncio.create_task(watch_content(settings, stop)) if watch else None
    on_ready(os.environ.get("PREFECT_API_URL", ""))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({runner_task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    logger.info("shutting down")
    if runner.started:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(runner.astop(), 20)
    for task in (runner_task, watcher):
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 10)
    logger.info("stopped serving")


def serve(settings: Settings, *, watch: bool = True, on_ready: Callable[[str], None] = lambda _url: None) -> None:
    """Serve the deployments (and the content watcher) until Ctrl-C or SIGTERM."""
    with prefect_api(settings):
        deployments = build_deployments(settings)
        asyncio.run(_serve(settings, deployments, watch, on_ready))

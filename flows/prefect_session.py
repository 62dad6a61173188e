"""Which Prefect API a one-off command (`briefing run`, `brief`, `ingest`, `deliver`) talks to, and ending it cleanly.

Chosen BEFORE Prefect is imported, in this order:

1. `PREFECT_API_URL` (or, when Prefect is already loaded, its configured API URL): that server.
2. A server that `briefing serve` is running on the same output directory: it records its address in
   `<output dir>/.prefect/server.json` (`SERVER_RECORD`); the record counts when its process is alive and the API
   answers `/health`. No setting needed: `run` next to a running `serve` shows up in the same UI.
3. Otherwise a temporary API server, as Prefect's embedded ("ephemeral") API would start — the same uvicorn
   command, database and settings — but started at once, in the background, so its start-up (seconds) overlaps
   with importing Prefect and the stages in this process instead of following it. Readiness events are not
   emitted to it (`flows.events.api_configured` is False): no trigger lives on a temporary server.

Flow-run heartbeats are off for these runs: they tell a server that a run's process is still alive, which this
command's own exit status already says, and Prefect's synchronous engine waits up to a second at the end of each
run for the heartbeat thread to notice it should stop.

Ending it, in the right order (`OneOffSession.close`): Prefect's log and event workers (`APILogWorker`,
`EventsWorker`) register their drain with `threading._register_atexit`, which runs before `atexit` handlers. Left
to interpreter exit, the workers stop while threads may still log or emit ("Cannot put items in a stopped service
instance"), and the events worker's client may even start a second temporary server during teardown. So once the
flow has returned, the workers are drained while the server still runs, then the temporary server is stopped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from flows.core.errors import BriefingError

logger = logging.getLogger(__name__)

T = TypeVar("T")

DRAIN_SECONDS = 10.0
SERVER_RECORD = "server.json"
HEALTH_TIMEOUT = 0.5  # s, for a recorded server to answer /health
STARTUP_TIMEOUT = 180.0  # s, for the temporary server (a newcomer's first one creates and migrates its database)
# Set (to its URL) while this process talks to a temporary API server it started: no readiness events then.
TEMPORARY_API_ENV = "BRIEFING_PREFECT_TEMPORARY_API"


class PrefectApiError(BriefingError):
    """The temporary Prefect API server could not be started."""


def configured_api_url() -> str:
    """PREFECT_API_URL from the environment, or from Prefect's settings when Prefect is already imported (a test
    harness sets it there). Never imports Prefect."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    if "prefect.settings" in sys.modules:
        from prefect.settings import PREFECT_API_URL

        return str(PREFECT_API_URL.value() or "")
    return ""


def api_healthy(api_url: str, timeout: float = HEALTH_TIMEOUT) -> bool:
    import httpx

    try:
        response = httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def discover_server(output_dir: Path) -> str | None:
    """The API URL `briefing serve` recorded under `output_dir`, when that process is alive and the API answers."""
    record = output_dir / ".prefect" / SERVER_RECORD
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        api_url, pid = str(data["api_url"]), int(data["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if _pid_alive(pid) and api_healthy(api_url):
        return api_url
    logger.info("ignoring %s: process %d is gone or %s does not answer", record, pid, api_url)
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TemporaryApiServer:
    """Prefect's embedded API server (`SubprocessASGIServer`'s command) on a loopback port, started without
    importing Prefect so that this process can import it meanwhile."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> str:
        spec = importlib.util.find_spec("prefect")  # where Prefect is, without importing it
        if spec is None or spec.origin is None:
            raise PrefectApiError("Prefect is not installed", hint="pip install -e . (pyproject.toml pins it)")
        env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
        env.update(PREFECT_UI_ENABLED="0", PREFECT__SERVER_EPHEMERAL="1", PREFECT__SERVER_FINAL="1")
        command = [
            sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parent.parent),
            "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "error", "--lifespan", "on",
        ]  # fmt: skip
        logger.debug("starting a temporary Prefect API on %s", self.api_url)
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
        return self.api_url

    def wait_healthy(self, timeout: float | None = None) -> None:
        if timeout is None:  # Prefect's own setting for its embedded server, when given
            timeout = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or STARTUP_TIMEOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise PrefectApiError(
                    f"the temporary Prefect API server exited with status {code}",
                    hint="its error is printed above; or start `briefing serve`, or set PREFECT_API_URL",
                )
            if api_healthy(self.api_url, timeout=1.0):
                return
            time.sleep(0.05)
        self.stop()
        raise PrefectApiError(
            f"the temporary Prefect API server did not answer {self.api_url}/health within {timeout:.0f} s",
            hint="start `briefing serve` (its server is found by itself), or set PREFECT_API_URL",
        )

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_process_group(process, timeout)


def stop_process_group(process: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM a server started in a process group of its own (`start_new_session`), SIGKILL it after `timeout`."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


class OneOffSession:
    """The Prefect API of one command; `run` calls a flow on it."""

    def __init__(self, api_url: str, origin: str, server: TemporaryApiServer | None = None) -> None:
        self.api_url = api_url
        self.origin = origin  # "configured", "serve" or "temporary"
        self.server = server

    def run(self, flow: Callable[..., T], **parameters: Any) -> T:
        """Call `flow(**parameters)` on this session's API (waiting for a temporary server to answer first)."""
        if self.server is not None:
            self.server.wait_healthy()
        from prefect.settings import PREFECT_API_URL, PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            return flow(**parameters)

    def close(self, timeout: float = DRAIN_SECONDS) -> None:
        if "prefect" in sys.modules:
            drain_workers(timeout)
        if self.server is not None:
            self.server.stop()


def drain_workers(timeout: float = DRAIN_SECONDS) -> None:
    """Flush Prefect's run-log and event workers to the server while it still runs."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=timeout, at_exit=False)
        except Exception:  # a worker that cannot flush must not hide the command's own result
            logger.debug("draining %s failed", worker.__name__, exc_info=True)


@contextmanager
def one_off_session(output_dir: Path) -> Iterator[OneOffSession]:
    """Choose the API (see the module docstring) and, on the way out, flush Prefect's workers and stop a temporary
    server. Import the flow inside the block: a temporary server starts while it is imported."""
    configured = configured_api_url()
    if configured:
        session = OneOffSession(configured, "configured")
    elif (found := discover_server(output_dir)) is not None:
        os.environ["PREFECT_API_URL"] = found
        session = OneOffSession(found, "serve")
        logger.info("using the Prefect server `briefing serve` runs on %s", found)
    else:
        server = TemporaryApiServer()
        os.environ["PREFECT_API_URL"] = server.start()
        os.environ[TEMPORARY_API_ENV] = server.api_url
        session = OneOffSession(server.api_url, "temporary", server)
    try:
        yield session
    finally:
        session.close()
        if session.origin != "configured":
            os.environ.pop("PREFECT_API_URL", None)
            os.environ.pop(TEMPORARY_API_ENV, None)


# --- flows and tasks built on first use ---------------------------------------------------------------------------
# `import flows.pipeline` must not import Prefect (≈ 2 s) nor the stages: a one-off command imports it while its
# temporary API server starts, and `briefing serve` and the runner's processes load it by name. The flow and task
# functions are recorded by `lazy_flow`/`lazy_task` and turned into Prefect flows and tasks, all at once, the first
# time any of them is looked up on the module (`build_on_first_use` makes the module's `__getattr__`, PEP 562).

_RECORDED: dict[str, list[tuple[str, Callable[..., Any], dict[str, Any]]]] = {}


def _record(kind: str, options: dict[str, Any]) -> Callable[[Callable[..., Any]], Any]:
    def record(fn: Callable[..., Any]) -> Any:
        _RECORDED.setdefault(fn.__module__, []).append((kind, fn, options))
        return fn

    return record


def lazy_task(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`@prefect.task(**options)`, applied on first use; without caching (`cache_policy=NO_CACHE`) unless given."""
    return _record("task", options)


def lazy_flow(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """`@prefect.flow(**options)`, applied on first use."""
    return _record("flow", options)


def build_on_first_use(namespace: dict[str, Any], late_imports: dict[str, tuple[str, ...]]) -> Callable[[str], Any]:
    """Take the module's recorded flows and tasks out of `namespace` and return its `__getattr__`: the first lookup
    of any of them imports `late_imports` ({module: names}) into the namespace, then builds every flow and task."""
    module = namespace["__name__"]
    recorded = _RECORDED.get(module, [])
    for _kind, fn, _options in recorded:
        namespace.pop(fn.__name__, None)
    names = {fn.__name__ for _kind, fn, _options in recorded}
    lock = threading.Lock()

    def build() -> None:
        import importlib

        from prefect import flow, task
        from prefect.cache_policies import NO_CACHE

        for source, imported in late_imports.items():
            loaded = importlib.import_module(source)
            namespace.update({name: getattr(loaded, name) for name in imported})
        for kind, fn, options in recorded:
            if kind == "task":
                namespace[fn.__name__] = task(**{"cache_policy": NO_CACHE, **options})(fn)
            else:
                namespace[fn.__name__] = flow(**options)(fn)

    def module_getattr(name: str) -> Any:
        if name in names:
            with lock:
                if name not in namespace:
                    build()
            return namespace[name]
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return module_getattr

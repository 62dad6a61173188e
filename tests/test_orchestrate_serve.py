"""`briefing serve` for real: subprocesses, a loopback Prefect server, events, triggers and the watcher.

Bounded in time (every wait has a deadline); marked slow but run in CI.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from flows.app.serve import LocalPrefectServer
from flows.core.content import load_content

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=str(REPO), PREFECT_SERVER_ANALYTICS_ENABLED="false", BRIEFING_PREFECT_UI="false", **extra)
    return env


class Serve:
    """`briefing serve` in a subprocess; its output is collected by a thread so the pipe never fills."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flows", "serve", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_serving(self, timeout: float = 240) -> str:
        wait_until(lambda: any(line.startswith("serving ") for line in self.lines), timeout, self)
        line = next(line for line in self.lines if line.startswith("serving "))
        return line.split(" on ", 1)[1].split(" ", 1)[0]

    def stop(self, timeout: float = 120) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            self.reader.join(5)


@pytest.fixture
def serve_factory() -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(env: dict[str, str], *args: str) -> Serve:
        started.append(Serve(env, *args))
        return started[-1]

    yield start
    for serve in started:
        if serve.process.poll() is None:
            serve.stop()


def wait_until(condition: Callable[[], bool], timeout: float, serve: Serve | None = None) -> float:
    start = time.monotonic()
    while not condition():
        if serve is not None and serve.process.poll() is not None:
            pytest.fail(f"briefing serve exited with {serve.process.returncode}:\n{serve.output[-4000:]}")
        if time.monotonic() - start > timeout:
            tail = serve.output[-4000:] if serve else ""
            pytest.fail(f"condition not met within {timeout:.0f} s\n{tail}")
        time.sleep(0.1)
    return time.monotonic() - start


def _emails(project: Path, slug: str) -> int:
    return len(list((project / "outputs" / "outbox" / slug).rglob("*.eml")))


def _brief_runs(api: str) -> list[dict]:
    body = {"flows": {"name": {"any_": ["brief"]}}, "sort": "START_TIME_DESC", "limit": 50, "offset": 0}
    response = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


def _subscribers(project: Path) -> int:
    return sum(len(a.subscribers) for a in load_content(project / "content").content.audiences)


def test_check_emits_ready_events_that_trigger_brief_runs(
    project: Path, tmp_path: Path, serve_factory: Callable[..., Serve]
) -> None:
    """Against a server the test owns (PREFECT_API_URL set): `briefing check` emits, the trigger runs `brief`."""
    server = LocalPrefectServer(tmp_path / "prefect-server", ui=False)
    api = server.start()
    try:
        env = _env(PREFECT_API_URL=api)
        serve = serve_factory(env, "--no-watch")  # only `briefing check` announces here
        assert serve.wait_serving() == api
        ready = sorted(b.slug for b in load_content(project / "content").content.ready)

        check = subprocess.run(
            [sys.executable, "-m", "flows", "--json", "check"], env=env, capture_output=True, text=True, timeout=120
        )
        assert check.returncode == 0, check.stderr
        assert sorted(json.loads(check.stdout)["announced"]) == ready

        per_briefing = _subscribers(project)
        elapsed = wait_until(lambda: all(_emails(project, s) == per_briefing for s in ready), 180, serve)
        print(f"\nready events → {len(ready)} briefings delivered in {elapsed:.1f} s")
        wait_until(lambda: all(r["state_type"] == "COMPLETED" for r in _brief_runs(api)), 60, serve)
        runs = _brief_runs(api)
        assert sorted(r["parameters"]["slug"] for r in runs) == ready  # one run per event, slug from the label

        again = subprocess.run(
            [sys.executable, "-m", "flows", "--json", "check"], env=env, capture_output=True, text=True, timeout=120
        )
        assert json.loads(again.stdout)["announced"] == []  # recorded in the store: never announced twice

        assert serve.stop() == 0
        assert httpx.get(f"{api}/health", timeout=5).status_code == 200  # serve leaves a server it did not start
    finally:
        server.stop()


def test_flipping_a_file_to_ready_under_serve_delivers_it(project: Path, serve_factory: Callable[..., Serve]) -> None:
    """No PREFECT_API_URL: serve starts its own loopback server, watches content/ and stops the server on exit."""
    briefings = project / "content" / "briefings"
    source = (briefings / "github-commit-flood.md").read_text(encoding="utf-8")
    draft = source.replace("slug: github-commit-flood", "slug: flip-test", 1)
    # about another article: a page once published for the sample's article never changes hands (a later `run`
    # publishes every ready briefing and would refuse the copy)
    draft = re.sub(r"(?m)^article_id: .*\n", "", draft, count=1).replace("/github-commit-flood\n", "/flip-test\n", 1)
    assert "status: ready" in draft
    flip = briefings / "flip-test.md"
    flip.write_text(draft.replace("status: ready", "status: draft", 1), encoding="utf-8")

    serve = serve_factory(_env())
    api = serve.wait_serving()
    per_briefing = _subscribers(project)
    ready = [b.slug for b in load_content(project / "content").content.ready]
    wait_until(lambda: all(_emails(project, s) == per_briefing for s in ready), 180, serve)
    assert _emails(project, "flip-test") == 0  # a draft is never sent

    flip.write_text(draft, encoding="utf-8")
    elapsed = wait_until(lambda: _emails(project, "flip-test") == per_briefing, 120, serve)
    print(f"\ndraft → ready: {per_briefing} emails in the outbox {elapsed:.1f} s after the file was saved")
    wait_until(lambda: any((project / "outputs" / "archive").rglob("flip-test.md")), 60, serve)  # then published
    # the triggered run was executed by the serving process itself (no runner subprocess), and recorded as such
    wait_until(lambda: any(r["state_type"] == "COMPLETED" for r in _brief_runs(api)), 60, serve)
    flip_run = next(r for r in _brief_runs(api) if r["parameters"]["slug"] == "flip-test")
    assert flip_run["state_type"] == "COMPLETED"
    assert flip_run["infrastructure_pid"] == f"{socket.gethostname()}:{serve.process.pid}"

    # `briefing run` beside it, with nothing configured, finds serve's server: its run shows up in the same API
    record = json.loads((project / "outputs" / ".prefect" / "server.json").read_text(encoding="utf-8"))
    assert record == {"api_url": api, "pid": serve.process.pid}
    run = subprocess.run(
        [sys.executable, "-m", "flows", "--json", "run"], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["emails_sent"] == 0  # everything went out already: nothing twice
    body = {"flows": {"name": {"any_": ["pipeline"]}}, "limit": 5, "offset": 0}
    pipeline_runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30).json()
    assert [r["state_type"] for r in pipeline_runs] == ["COMPLETED"]

    assert serve.stop() == 0
    assert (project / "outputs" / ".prefect" / "server.log").exists()
    assert not (project / "outputs" / ".prefect" / "server.json").exists()  # no stale record left behind
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{api}/health", timeout=3)  # the server serve started is gone

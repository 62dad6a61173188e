"""What a command imports and which Prefect API a one-off command finds, without a Prefect server of the test's own.

- `check`, `status`, `preview` and `init` never import Prefect (each runs in a new process, as a user runs it);
- `import flows.pipeline` imports neither Prefect nor the stages; the first lookup of a flow builds real Prefect
  flows and tasks, and every name the module annotates with is then bound;
- `briefing serve`'s record of its server is used only while its process lives and its API answers.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from flows.prefect_session import SERVER_RECORD, discover_server
from tests.preview_support import free_port, make_project, project_env

REPO = Path(__file__).resolve().parent.parent

# Runs the CLI in this process and, at exit, writes which Prefect modules were imported to the file in argv[1].
PROBE = """
import atexit, json, sys
out = sys.argv[1]
def record():
    open(out, "w").write(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "prefect")))
atexit.register(record)
sys.argv = ["briefing", *sys.argv[2:]]
from flows.app.cli import main
main()
"""


def _probe(root: Path, *args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    out = root / f"modules-{args[0]}.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        cwd=root,
        env=project_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done, json.loads(out.read_text(encoding="utf-8"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_project(tmp_path)


def test_check_status_and_init_never_import_prefect(root: Path) -> None:
    for args in (("check",), ("--json", "status"), ("init", str(root / "new-project"))):
        done, modules = _probe(root, *args)
        assert done.returncode in (0, 3), done.stderr  # check exits 3 on content problems; it must still run
        assert modules == [], f"briefing {' '.join(args)} imported {modules[:5]}"
    assert (root / "new-project" / "content").is_dir()  # init did its work


def test_preview_never_imports_prefect_while_serving_pages(root: Path) -> None:
    port = free_port()
    out = root / "modules-preview.json"
    process = subprocess.Popen(
        [sys.executable, "-c", PROBE, str(out), "preview", "--port", str(port)],
        cwd=root,
        env=project_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(base + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                pytest.fail(f"preview exited with {process.returncode}")
            threading.Event().wait(0.1)
        else:
            pytest.fail("preview did not answer within 60 s")
        pages = ["/", "/b/github-commit-flood", "/archive/github-commit-flood", "/discussion", "/suppressions"]
        for page in pages:
            assert httpx.get(base + page, timeout=30).status_code == 200, page
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C, as a user stops it: the probe writes at exit
        process.wait(60)
    modules = json.loads(out.read_text(encoding="utf-8"))
    assert modules == [], f"briefing preview imported {modules[:5]}"


def test_import_pipeline_defers_prefect_and_the_stages_until_a_flow_is_used() -> None:
    script = """
import json, sys
import flows.pipeline as pipeline
stages = ("flows.deliver", "flows.render", "flows.publish", "flows.edition", "flows.core.store")
before = sorted(m for m in sys.modules if m.split(".")[0] == "prefect" or m.startswith(stages))
flow = pipeline.brief
from prefect import Flow, Task
assert isinstance(flow, Flow) and flow.name == "brief", flow
assert isinstance(pipeline.deliver_task, Task) and isinstance(pipeline.ingest_batch, Task)
assert pipeline.deliver_task.cache_policy is not None
from flows.pipeline import pipeline as whole
assert isinstance(whole, Flow) and whole.name == "pipeline"
print(json.dumps(before))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_every_name_pipeline_annotates_with_is_imported_when_its_flows_are_built() -> None:
    """The TYPE_CHECKING block of flows/pipeline.py and LATE_IMPORTS name the same things (the flow bodies use
    them at run time), so a name added to one and not the other fails here rather than in a flow run."""
    import flows.pipeline as pipeline

    tree = ast.parse((REPO / "flows" / "pipeline.py").read_text(encoding="utf-8"))
    blocks = [n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING"]
    annotated = {
        (node.module, alias.asname or alias.name)
        for node in blocks[0].body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    late = {(module, name) for module, names in pipeline.LATE_IMPORTS.items() for name in names}
    assert annotated == late
    pipeline.publish  # noqa: B018  (builds the flows and tasks)
    assert all(name in vars(pipeline) for _module, name in late)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"true" if self.path == "/api/health" else b"{}"
        self.send_response(200 if self.path == "/api/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering_api() -> Iterator[str]:
    """A loopback HTTP server that answers /api/health as Prefect's API does (only the health check is asked)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api"
    server.shutdown()
    server.server_close()


def _record(output_dir: Path, api_url: str, pid: int) -> Path:
    record = output_dir / ".prefect" / SERVER_RECORD
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"api_url": api_url, "pid": pid}), encoding="utf-8")
    return record


def test_a_recorded_server_counts_only_while_its_process_lives_and_it_answers(tmp_path: Path, answering_api: str):
    assert discover_server(tmp_path) is None  # no record
    _record(tmp_path, answering_api, os.getpid())
    assert discover_server(tmp_path) == answering_api

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    _record(tmp_path, answering_api, int(finished.stdout))  # its process has exited: a stale record
    assert discover_server(tmp_path) is None

    _record(tmp_path, f"http://127.0.0.1:{free_port()}/api", os.getpid())  # alive, but nothing answers there
    assert discover_server(tmp_path) is None

    (tmp_path / ".prefect" / SERVER_RECORD).write_text("{not json", encoding="utf-8")
    assert discover_server(tmp_path) is None


def test_a_one_off_session_prefers_the_configured_api_then_the_recorded_one(tmp_path: Path, answering_api: str):
    """In a new process, as a command runs: serve's record is used when nothing is configured (and set for the
    command's duration), PREFECT_API_URL wins over it and is left as it was."""
    script = """
import json, os, sys
from pathlib import Path
from flows.prefect_session import TEMPORARY_API_ENV, one_off_session
seen = []
with one_off_session(Path(sys.argv[1])) as session:
    seen.append([session.api_url, session.origin, os.environ.get("PREFECT_API_URL"), TEMPORARY_API_ENV in os.environ])
seen.append(os.environ.get("PREFECT_API_URL"))
os.environ["PREFECT_API_URL"] = "http://127.0.0.1:9/api"
with one_off_session(Path(sys.argv[1])) as session:
    seen.append([session.api_url, session.origin])
seen.append(os.environ.get("PREFECT_API_URL"))
seen.append("prefect" in sys.modules)
print(json.dumps(seen))
"""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    _record(tmp_path, answering_api, os.getpid())
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env={**env, "PYTHONPATH": str(REPO)}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        [answering_api, "serve", answering_api, False],
        None,
        ["http://127.0.0.1:9/api", "configured"],
        "http://127.0.0.1:9/api",
        False,  # choosing the API imports no Prefect
    ]

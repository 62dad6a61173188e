"""Quiet, truthful runs: no Prefect tracebacks on a normal run, one exit-code rule for partial failure (feeds that
fail make `ingest` and `run` exit 4), a read-only archive exits 7, `status` reads a read-only store without
creating or migrating anything, and strict mode exits 3 on every command."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from flows.core.store import Store
from tests.ingest_support import LoopbackServer
from tests.preview_support import briefing_exe, make_project, project_env, run_briefing
from tests.tool_support import tool_missing


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    return make_project(tmp_path)


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr[-4000:]
    assert "Cannot put items in a stopped service instance" not in stderr


def read_only_mount_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount --bind -o ro / / 2>/dev/null; true"], capture_output=True, check=False
    )
    return probe.returncode == 0


def run_read_only(root: Path, folder: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`briefing ARGS` with `folder` bind-mounted read-only in a mount namespace of its own (root ignores chmod)."""
    if not read_only_mount_works():
        tool_missing(
            "unshare --mount and mount, run as root (root ignores chmod: only a read-only mount makes a folder "
            "read-only)",
            "run the tests as root on Linux with util-linux installed (CI does)",
        )
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", str(folder), briefing_exe(), *args],
        cwd=root,
        env=project_env(root, **extra),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_a_normal_run_prints_no_traceback(proj: Path) -> None:
    result = run_briefing(proj, "run", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    no_traceback(result.stderr)
    again = run_briefing(proj, "ingest", timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    no_traceback(again.stderr)


def test_ingest_and_run_exit_4_when_a_feed_fails_and_still_deliver(proj: Path, server: LoopbackServer) -> None:
    with (proj / "content" / "feeds.yaml").open("a", encoding="utf-8") as handle:
        handle.write(f"  - id: gone\n    url: {server.url('/gone.xml')}\n")
    env = {"BRIEFING_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]', "BRIEFING_TASK_RETRIES": "0"}
    ingest = run_briefing(proj, "--json", "ingest", timeout=300, **env)
    assert ingest.returncode == 4, ingest.stdout + ingest.stderr
    data = json.loads(ingest.stdout)
    assert data["exit_code"] == 4 and len(data["feeds_failed"]) == 1
    assert data["feeds_failed"][0].startswith("gone: HTTP 404") and data["articles_new"] == 3
    run = run_briefing(proj, "--json", "run", timeout=300, **env)
    assert run.returncode == 4, run.stdout + run.stderr
    summary = json.loads(run.stdout)
    assert summary["emails_sent"] == 16 and summary["pages_written"]  # the rest of the run still happened
    no_traceback(run.stderr)


def test_a_read_only_archive_folder_exits_7_naming_it(proj: Path) -> None:
    archive = proj / "published"
    archive.mkdir()
    result = run_read_only(proj, archive, "publish", BRIEFING_ARCHIVE_DIR=str(archive))
    assert result.returncode == 7, result.stdout + result.stderr
    assert "cannot write the archive" in result.stderr and str(archive) in result.stderr
    assert "unexpected" not in result.stderr


def test_an_archive_path_through_a_file_exits_7(proj: Path) -> None:
    (proj / "not-a-folder").write_text("x", "utf-8")
    result = run_briefing(proj, "publish", BRIEFING_ARCHIVE_DIR=str(proj / "not-a-folder" / "archive"))
    assert result.returncode == 7, result.stdout + result.stderr
    assert "cannot write the archive" in result.stderr and "unexpected" not in result.stderr


def test_status_reads_a_read_only_store(proj: Path) -> None:
    assert run_briefing(proj, "send").returncode == 0
    outputs = proj / "outputs"
    before = sorted(p.name for p in outputs.iterdir())
    result = run_read_only(proj, outputs, "--json", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    flood = next(b for b in report["briefings"] if b["slug"] == "github-commit-flood")
    assert flood["stage"] == "sent" and flood["audiences"]["atou"] == {"sent": 2}
    assert sorted(p.name for p in outputs.iterdir()) == before


def test_status_never_migrates_or_creates(proj: Path) -> None:
    db = proj / "outputs" / "store.db"
    Store(f"sqlite:///{db}").close()
    with sqlite3.connect(db) as conn:  # a store that still needs migrating: no claim index, no revision recorded
        conn.execute("DROP INDEX ix_send_ledger_claim")
        conn.execute("DELETE FROM alembic_version")
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    files = sorted(p.name for p in db.parent.iterdir())
    result = run_briefing(proj, "--json", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in db.parent.iterdir()) == files
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (0,)


def test_a_read_only_store_on_postgresql_reads_and_cannot_write(postgres_url: str) -> None:
    from pg_support import fresh_schema
    from sqlalchemy.exc import DBAPIError

    with fresh_schema(postgres_url) as url:
        Store(url).record_feed("http://feed.invalid/x", feed_id="x", last_status="ok")
        reader = Store(url, read_only=True)
        assert [row["feed_id"] for row in reader.all_feed_states()] == ["x"]
        with pytest.raises(DBAPIError, match="read-only transaction"):
            reader.record_feed("http://feed.invalid/y", feed_id="y", last_status="ok")
        reader.close()


@pytest.mark.parametrize("command", [["run"], ["ingest"], ["send"], ["deliver"], ["publish"], ["brief", "x"]])
def test_strict_mode_exits_3_on_every_command(proj: Path, command: list[str]) -> None:
    path = proj / "content" / "briefings" / "github-commit-flood.md"
    path.write_text(path.read_text("utf-8").replace("### neta\n", "### nobody\n"), "utf-8")
    result = run_briefing(proj, *command, BRIEFING_STRICT="true")
    assert result.returncode == 3, (command, result.stdout + result.stderr)
    assert "content problems (strict mode)" in result.stderr
    no_traceback(result.stderr)

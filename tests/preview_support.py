"""Helpers for the preview and CLI tests: run the real `briefing` console script on a copy of the content."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def briefing_exe() -> str:
    """The console script of the venv running the tests (PYTHONPATH makes it run this worktree's code)."""
    beside = Path(sys.executable).parent / "briefing"
    found = str(beside) if beside.exists() else shutil.which("briefing")
    assert found, "the `briefing` console script is not installed: pip install -e ."
    return found


def make_project(root: Path) -> Path:
    """A copy of the shipped content under root/content, outputs under root/outputs."""
    shutil.copytree(REPO / "content", root / "content")
    (root / "outputs").mkdir()
    return root


def project_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIEFING_", "PREFECT_"))}
    env.update(
        PYTHONPATH=str(REPO),
        BRIEFING_CONTENT_DIR=str(root / "content"),
        BRIEFING_OUTPUT_DIR=str(root / "outputs"),
        # one Prefect home per test session (conftest sets it): a fresh one would migrate its database each time
        PREFECT_HOME=os.environ.get("PREFECT_HOME", str(root / "prefect-home")),
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        NO_COLOR="1",
        COLUMNS="200",
    )
    env.update(extra)
    return env


def run_briefing(root: Path, *args: str, timeout: float = 180, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [briefing_exe(), *args],
        cwd=root,
        env=project_env(root, **extra),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

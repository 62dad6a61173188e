"""`briefing init DIR` through the console script: a working project with default settings, never an
overwrite, no Prefect import. (scripts/check_wheel.sh runs `init` + `run` from an installed wheel.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.core.resources import sample_content_dir, sample_files
from tests.preview_support import REPO, briefing_exe


def _env(**extra: str) -> dict[str, str]:
    """The user's environment: no BRIEFING_* settings, so every default applies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFING_")}
    env.update(PYTHONPATH=str(REPO), NO_COLOR="1", COLUMNS="200", **extra)
    return env


def briefing(cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [briefing_exe(), *args], cwd=cwd, env=_env(**extra), capture_output=True, text=True, timeout=120, check=False
    )


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_init_writes_the_sample_content_and_says_what_to_run_next(tmp_path: Path) -> None:
    result = briefing(tmp_path, "init", "my briefing")
    assert result.returncode == 0, result.stderr
    project = tmp_path / "my briefing"
    written = _tree(project)
    expected = {f"content/{p.as_posix()}" for p in sample_files()} | {".gitignore"}
    assert set(written) == expected
    for relative in sample_files():
        assert written[f"content/{relative.as_posix()}"] == (sample_content_dir() / relative).read_bytes()
    assert {"content/audiences.yaml", "content/feeds.yaml", "content/samples/ai-news.xml"} <= set(written)
    assert any(name.startswith("content/subscribers/") for name in written)
    assert any(name.startswith("content/briefings/") for name in written)
    assert "outputs/" in written[".gitignore"].decode()
    for name in ("audiences.yaml", "feeds.yaml", "ai-news.xml"):
        assert name in result.stdout, f"{name} is not listed as written"
    assert "next: cd 'my briefing' && briefing run" in result.stdout


def test_the_new_project_checks_clean_from_inside_and_from_its_parent(tmp_path: Path) -> None:
    assert briefing(tmp_path, "init", "proj").returncode == 0
    inside = briefing(tmp_path / "proj", "--json", "check")
    assert inside.returncode == 0, inside.stdout + inside.stderr
    report = json.loads(inside.stdout)
    shipped = len(list(sample_content_dir().glob("briefings/*.md")))
    assert report["ok"] and report["ready"] >= 1 and report["briefings"] == shipped
    parent = briefing(tmp_path, "--json", "check", BRIEFING_CONTENT_DIR="proj/content")
    assert parent.returncode == 0 and json.loads(parent.stdout)["ok"], parent.stdout + parent.stderr
    wrong = briefing(tmp_path, "check", BRIEFING_CONTENT_DIR="proj")
    assert wrong.returncode == 3 and "BRIEFING_CONTENT_DIR=proj/content" in wrong.stderr, wrong.stderr


def test_init_refuses_a_folder_that_is_not_empty_and_changes_nothing(tmp_path: Path) -> None:
    assert briefing(tmp_path, "init", "proj").returncode == 0
    (tmp_path / "proj" / "content" / "feeds.yaml").write_text("feeds: []  # my own\n", encoding="utf-8")
    before = _tree(tmp_path / "proj")
    again = briefing(tmp_path, "init", "proj")
    assert again.returncode == 3
    assert "proj: is not empty" in again.stderr and len(again.stderr.strip().splitlines()) == 1, again.stderr
    assert _tree(tmp_path / "proj") == before

    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me", encoding="utf-8")
    refused = briefing(tmp_path, "--json", "init", "notes")
    assert refused.returncode == 3 and json.loads(refused.stdout)["exit_code"] == 3
    assert _tree(other) == {"todo.txt": b"keep me"}

    (tmp_path / "afile").write_text("x", encoding="utf-8")
    assert briefing(tmp_path, "init", "afile").returncode == 3
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "x"


def test_init_accepts_an_empty_folder_and_the_current_one(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = briefing(empty, "--json", "init", ".")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["next"] == "briefing run" and (empty / "content" / "audiences.yaml").exists()
    assert len(data["created"]) == len(sample_files()) + 1


def test_init_imports_neither_prefect_nor_the_store(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from flows.app.cli import app\n"
        f"app(args=['--quiet', 'init', {str(tmp_path / 'p')!r}], standalone_mode=False)\n"
        "print(sorted(m for m in ('prefect', 'sqlalchemy', 'httpx') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    assert (tmp_path / "p" / "content" / "feeds.yaml").exists()


@pytest.mark.parametrize("command", ["status", "run"])
def test_a_postgresql_url_without_psycopg_names_the_extra_and_exits_2(tmp_path: Path, command: str) -> None:
    """psycopg is made unimportable (as on an install without the `postgres` extra)."""
    code = "import sys\nsys.modules['psycopg'] = None\nfrom flows.app.cli import main\nmain()\n"
    result = subprocess.run(
        [sys.executable, "-c", code, command],
        cwd=tmp_path,
        env=_env(BRIEFING_DATABASE_URL="postgresql+psycopg://briefing@127.0.0.1:9/briefing"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "BRIEFING_DATABASE_URL" in line and "pip install 'briefing-pipeline[postgres]'" in line
    assert "ModuleNotFoundError" not in line and "unexpected" not in line


def test_a_store_opened_directly_without_psycopg_gives_the_same_error(tmp_path: Path) -> None:
    code = (
        "import sys\nsys.modules['psycopg'] = None\n"
        "from flows.core.errors import SettingsError\nfrom flows.core.store import Store\n"
        "try:\n    Store('postgresql://briefing@127.0.0.1:9/briefing')\n"
        "except SettingsError as err:\n    print(err.exit_code, err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.startswith("2 BRIEFING_DATABASE_URL: "), result.stdout + result.stderr
    assert "briefing-pipeline[postgres]" in result.stdout

"""`briefing publish`: counts and paths, --json, a mkdocs.yml on request, a clear error with exit code 7."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flows.app.cli import app

runner = CliRunner()


def test_publish_prints_written_then_unchanged_counts_as_json(project) -> None:
    first = runner.invoke(app, ["--json", "publish", "--mkdocs-config", str(project / "mkdocs.yml")])
    assert first.exit_code == 0, first.output
    data = json.loads(first.output)
    assert len(data["written"]) == 9 and data["unchanged"] == 0
    assert "2026/06/anthropic-ai-builds-ai.md" in data["written"]
    assert data["pages"]["github-commit-flood"] == "2026/06/github-commit-flood.md"
    assert (project / "mkdocs.yml").read_text(encoding="utf-8").count("docs_dir:") == 1

    second = runner.invoke(app, ["--json", "publish"])
    assert second.exit_code == 0, second.output
    again = json.loads(second.output)
    assert again["written"] == [] and again["unchanged"] == 9


def test_publish_table_output_and_a_publish_error(project, monkeypatch) -> None:
    result = runner.invoke(app, ["publish"])
    assert result.exit_code == 0, result.output
    assert "files written" in result.output and "9" in result.output
    monkeypatch.setenv("BRIEFING_ARCHIVE_GIT_REMOTE", str(project / "missing.git"))
    failed = runner.invoke(app, ["--json", "publish"])
    assert failed.exit_code == 7
    assert "missing.git" in json.loads(failed.output)["error"]

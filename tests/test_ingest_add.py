"""`briefing add URL` / `briefing new URL`: one article outside any feed, through the real CLI and a loopback page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.app.cli import app
from flows.core.briefing_format import parse_briefing_file
from tests.ingest_support import LoopbackServer, Reply
from tests.test_ingest_feeds import ARTICLE_PAGE


@pytest.fixture
def allow_loopback(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BRIEFING_FETCH_ALLOWED_NETWORKS", '["127.0.0.1/32"]')
    monkeypatch.setenv("BRIEFING_FETCH_RETRIES", "0")
    return project


def run(*args: str) -> dict:
    result = CliRunner().invoke(app, ["--json", *args])
    return {"exit_code": result.exit_code, **json.loads(result.stdout)}


def test_add_writes_a_draft_stub_and_never_overwrites_it(server: LoopbackServer, allow_loopback: Path) -> None:
    url = server.static("/story.html", ARTICLE_PAGE, "text/html; charset=utf-8") + "?utm_source=newsletter"
    first = run("add", url)
    assert first["exit_code"] == 0, first
    assert first["created"] is True and first["status"] == "new" and first["title"] == "Chips and rivers"
    stub = Path(first["stub"])
    assert stub.parent == allow_loopback / "content" / "briefings"
    briefing, _partial, _problems = parse_briefing_file(stub)
    assert briefing is not None and briefing.status == "draft"
    assert briefing.article_id == first["article_id"]
    text = stub.read_text(encoding="utf-8")
    assert "The first paragraph of the full article" in text
    assert "![The plant seen from the river](https://img.example.org/plant.jpg)" in text

    stub.write_text(text.replace("## Verdict\n", "## Verdict\n\nAn editor's verdict.\n"), encoding="utf-8")
    edited = stub.read_text(encoding="utf-8")
    again = run("new", server.url("/story.html?utm_source=other"))
    assert again["exit_code"] == 0 and again["created"] is False and again["status"] == "seen"
    assert Path(again["stub"]) == stub and stub.read_text(encoding="utf-8") == edited
    assert len(list(stub.parent.glob("chips-and-rivers*"))) == 1


def test_add_reports_a_refused_or_failing_url(server: LoopbackServer, allow_loopback: Path) -> None:
    refused = run("add", "http://169.254.169.254/latest/meta-data/")
    assert refused["exit_code"] == 4 and "non-public address 169.254.169.254" in refused["error"]
    server.route("/gone.html", lambda r: Reply(410))
    gone = run("add", server.url("/gone.html"))
    assert gone["exit_code"] == 4 and "HTTP 410" in gone["error"]
    empty = run("add", server.static("/empty.html", "<html><body></body></html>", "text/html"))
    assert empty["exit_code"] == 4 and "no article text" in empty["error"]
    assert not list((allow_loopback / "content" / "briefings").glob("gone*"))

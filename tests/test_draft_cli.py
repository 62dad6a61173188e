"""`briefing draft`, `briefing approve`, the review gate on every send path and the opt-in draft of new stubs,
through the real console script (or the Typer app) against a loopback chat-completions server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.app.cli import app
from flows.core.briefing_format import parse_briefing_file
from tests.ingest_support import LoopbackServer
from tests.llm_support import PREFIX, ChatServer, write_article_stub
from tests.preview_support import make_project, run_briefing
from tests.test_ingest_feeds import ARTICLE_PAGE

SLUG = "horizon-study"
MARKER = "<!-- machine-draft model=some-model date=2026-06-04: review it, then delete this line -->"


@pytest.fixture
def chat() -> Iterator[ChatServer]:
    with ChatServer() as running:
        yield running


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    root = make_project(tmp_path)
    write_article_stub(root / "content", SLUG)
    return root


def llm_env(chat: ChatServer, **extra: str) -> dict[str, str]:
    llm = {"BRIEFING_LLM_URL": chat.url, "BRIEFING_LLM_MODEL": "loopback-model", "BRIEFING_LLM_BACKOFF": "0.01"}
    return {**llm, **extra}


def test_draft_json_report_then_check_refuses_ready_until_approved(chat: ChatServer, proj: Path) -> None:
    result = run_briefing(proj, "--json", "draft", SLUG, **llm_env(chat, BRIEFING_LLM_API_KEY="sk-cli-secret"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["written"] is True and report["blocks_filled"] == 7
    stats = report["stats"]
    assert stats["requests"] == len(chat.seen) > 0
    assert stats["tokens"] == stats["prompt_tokens"] + stats["completion_tokens"] > 0
    assert stats["cache_hits"] == 0 and report["wall_seconds"] > 0
    assert "sk-cli-secret" not in result.stdout + result.stderr
    path = proj / "content" / "briefings" / f"{SLUG}.md"
    path.write_text(path.read_text("utf-8").replace("status: draft", "status: ready"), "utf-8")

    check = run_briefing(proj, "check")
    assert check.returncode == 3
    gate = [line for line in check.stderr.splitlines() if "machine draft not reviewed" in line]
    assert len(gate) == 4 + 4 + 1 and all(line.startswith(str(path)) for line in gate), check.stderr
    assert any("[translation]" in line and "translation of 7 blocks" in line for line in gate)

    rerun = json.loads(run_briefing(proj, "--json", "draft", SLUG, **llm_env(chat)).stdout)
    assert rerun["error"].startswith(str(path)) and "is ready" in rerun["error"]

    approve = run_briefing(proj, "--json", "approve", SLUG, "--section", "translation", "--section", "notes")
    assert approve.returncode == 0, approve.stderr
    data = json.loads(approve.stdout)
    assert len(data["approved"]) == 7 + 4 and data["remaining"] == ["core_points", "judgement", "prompts", "verdict"]
    assert run_briefing(proj, "approve", SLUG, "--all").returncode == 0
    final = run_briefing(proj, "--json", "check")
    assert final.returncode == 0, final.stdout
    briefing, _, _ = parse_briefing_file(path)
    assert briefing is not None and briefing.machine_drafts == ()
    assert all(b.translation == PREFIX + b.source for b in briefing.aligned)


def test_draft_exits_11_and_reports_what_failed(chat: ChatServer, proj: Path) -> None:
    chat.always["translation"] = "server_error"
    result = run_briefing(proj, "draft", SLUG, **llm_env(chat, BRIEFING_LLM_RETRIES="1"))
    assert result.returncode == 11, result.stdout + result.stderr
    assert "failed (left empty)" in result.stdout
    assert re.search(r"failed:\s+translation\.h01-\w+: HTTP 500", result.stdout), result.stdout
    as_json = run_briefing(proj, "--json", "draft", SLUG, **llm_env(chat, BRIEFING_LLM_RETRIES="0"))
    assert as_json.returncode == 11
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and len(report["failures"]) == 7  # the curated parts were filled by the first run
    assert all(f["part"].startswith("translation.") for f in report["failures"])


def test_without_an_endpoint_draft_says_what_to_set(proj: Path) -> None:
    result = run_briefing(proj, "draft", SLUG)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "BRIEFING_LLM_URL and BRIEFING_LLM_MODEL" in result.stderr
    bad = run_briefing(proj, "check", BRIEFING_DRAFT_NEW_STUBS="true")
    assert bad.returncode == 2 and "BRIEFING_DRAFT_NEW_STUBS needs BRIEFING_LLM_URL" in bad.stderr


def _mark_verdict(path: Path) -> None:
    text = path.read_text("utf-8")
    path.write_text(text.replace("## Verdict\n\n", f"## Verdict\n\n{MARKER}\n", 1), "utf-8")


def test_run_and_send_never_send_a_briefing_with_an_unreviewed_machine_section(tmp_path: Path) -> None:
    """With default settings (no model configured): the pipeline runs as before, and a ready briefing that still
    carries a machine-draft marker is held back by `briefing run` and by `briefing send`."""
    root = make_project(tmp_path)
    held = root / "content" / "briefings" / "github-commit-flood.md"
    _mark_verdict(held)
    run = run_briefing(root, "--json", "run")
    assert run.returncode == 3, run.stderr[-2000:]  # a ready briefing held back: content problems (README)
    summary = json.loads(run.stdout)
    assert summary["drafts"] == [] and summary["stubs"] == []
    assert summary["briefings_rendered"] == ["anthropic-ai-builds-ai"]
    assert "github-commit-flood" in summary["briefings_held"]
    assert any("machine draft not reviewed: verdict" in p for p in summary["problems"])
    outbox = root / "outputs" / "outbox"
    assert (outbox / "anthropic-ai-builds-ai").is_dir() and not (outbox / "github-commit-flood").exists()

    send = run_briefing(root, "--json", "send", "--slug", "github-commit-flood")
    assert send.returncode == 3
    data = json.loads(send.stdout)
    assert data["briefings"] == [] and any("machine draft not reviewed" in h for h in data["held"])
    assert not (outbox / "github-commit-flood").exists()

    held.write_text(held.read_text("utf-8").replace(MARKER + "\n", ""), "utf-8")  # the editor approves by hand
    send = run_briefing(root, "--json", "send", "--slug", "github-commit-flood")
    assert send.returncode == 0, send.stdout + send.stderr
    assert (outbox / "github-commit-flood").is_dir()


NEW_ITEM = """    <item>
      <title>Labs publish agent evaluation results every month</title>
      <link>https://frontier-notes.example.org/2026/06/monthly-evals</link>
      <guid isPermaLink="false">frontier-notes-2026-0606-evals</guid>
      <pubDate>Sat, 06 Jun 2026 08:15:00 +0000</pubDate>
      <content:encoded><![CDATA[
<p>Three labs now publish agent evaluation results every month, with the task suites and the failures listed.[1]</p>
<p>The reports cover coding, research and operations tasks, and each one states how long a skilled person needs.</p>
<p>Reviewers say the monthly rhythm makes regressions visible that a yearly report would hide completely.</p>
<p>[1] The suites are published with their scoring scripts so that anyone can rerun the measurements.</p>
]]></content:encoded>
    </item>
  </channel>"""


def test_new_stubs_are_drafted_after_ingest_when_switched_on(chat: ChatServer, tmp_path: Path) -> None:
    root = make_project(tmp_path)
    feed = root / "content" / "samples" / "ai-news.xml"
    feed.write_text(feed.read_text("utf-8").replace("  </channel>", NEW_ITEM, 1), "utf-8")
    run = run_briefing(root, "--json", "run", **llm_env(chat, BRIEFING_DRAFT_NEW_STUBS="true"))
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert len(summary["stubs"]) == 1 and len(summary["drafts"]) == 1
    drafted = summary["drafts"][0]
    assert drafted["path"] == summary["stubs"][0] and drafted["failures"] == [] and drafted["requests"] > 0
    assert {"verdict", "translation", "notes.atou"} <= set(drafted["filled"])
    briefing, _, _ = parse_briefing_file(Path(drafted["path"]))
    assert briefing is not None and briefing.status == "draft" and briefing.machine_drafts
    assert all(b.translation == PREFIX + b.source for b in briefing.aligned)
    assert not (root / "outputs" / "outbox" / briefing.slug).exists()


def test_add_drafts_the_new_stub_when_switched_on(
    chat: ChatServer, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in llm_env(chat, BRIEFING_DRAFT_NEW_STUBS="true").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BRIEFING_FETCH_ALLOWED_NETWORKS", '["127.0.0.1/32"]')
    with LoopbackServer() as pages:
        url = pages.static("/story.html", ARTICLE_PAGE, "text/html; charset=utf-8")
        result = CliRunner().invoke(app, ["--json", "add", url])
    assert result.exit_code == 0, result.stdout
    data = json.loads(result.stdout)
    assert data["created"] is True and "translation" in data["drafted"] and "verdict" in data["drafted"]
    briefing, _, _ = parse_briefing_file(Path(data["stub"]))
    assert briefing is not None and {d.section for d in briefing.machine_drafts} >= {"verdict", "translation"}

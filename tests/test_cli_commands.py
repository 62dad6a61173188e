"""The `briefing` console script in a subprocess: help texts, exit codes, one-line errors, --json and --quiet."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from flows.app import docs_gen
from tests.preview_support import make_project, run_briefing

COMMANDS = [" ".join(path) for path, _ in docs_gen.walk_commands(docs_gen.root_command())]


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    return make_project(tmp_path)


def test_top_level_help_lists_every_command(proj: Path) -> None:
    result = run_briefing(proj, "--help")
    assert result.returncode == 0, result.stderr
    for name in COMMANDS:
        assert name.split()[0] in result.stdout
    assert "--json" in result.stdout and "--quiet" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_an_example(proj: Path, command: str) -> None:
    result = run_briefing(proj, *command.split(), "--help")
    assert result.returncode == 0, result.stderr
    assert "Example:" in result.stdout, f"`briefing {command} --help` shows no example"
    example = result.stdout.split("Example:", 1)[1]
    assert re.search(rf"briefing (--?[\w-]+ )*{re.escape(command)}\b", example), example


def test_check_passes_on_the_sample_and_json_parses(proj: Path) -> None:
    result = run_briefing(proj, "--json", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["briefings"] == 3 and data["ready"] == 2


def test_quiet_check_prints_nothing(proj: Path) -> None:
    result = run_briefing(proj, "--quiet", "check")
    assert result.returncode == 0
    assert result.stdout == ""


def test_global_flags_may_follow_the_command(proj: Path) -> None:
    result = run_briefing(proj, "check", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
    assert run_briefing(proj, "status", "-q").stdout == ""


def test_check_on_broken_content_exits_3_with_one_line_per_problem(proj: Path) -> None:
    path = proj / "content" / "briefings" / "github-commit-flood.md"
    path.write_text(path.read_text("utf-8").replace("### neta\n", "### nobody\n"), "utf-8")
    (proj / "content" / "briefings" / "broken.md").write_text("---\nslug: [unclosed\n---\n", "utf-8")
    result = run_briefing(proj, "check")
    assert result.returncode == 3
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert any("github-commit-flood.md" in e and "nobody" in e and "use one of:" in e for e in errors), errors
    assert any("broken.md" in e for e in errors), errors
    assert all(line.startswith(str(proj / "content")) for line in errors), "each error line starts with its file"
    data = json.loads(run_briefing(proj, "--json", "check").stdout)
    assert data["ok"] is False
    assert {Path(p["path"]).name for p in data["problems"] if p["severity"] == "error"} >= {
        "github-commit-flood.md",
        "broken.md",
    }


@pytest.mark.parametrize("command", ["check", "status"])
def test_bad_setting_exits_2_naming_the_variable(proj: Path, command: str) -> None:
    result = run_briefing(proj, command, BRIEFING_SMTP_URL="http://mail.example.org")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "BRIEFING_SMTP_URL" in lines[0] and "smtp://" in lines[0], result.stderr
    as_json = run_briefing(proj, "--json", command, BRIEFING_FETCH_RETRIES="many")
    assert as_json.returncode == 2
    error = json.loads(as_json.stdout)
    assert error["exit_code"] == 2 and "BRIEFING_FETCH_RETRIES" in error["error"]


def test_status_before_any_run_shows_drafts_and_creates_no_store(proj: Path) -> None:
    result = run_briefing(proj, "--json", "status")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    stages = {b["slug"]: b["stage"] for b in data["briefings"]}
    assert stages == {"anthropic-ai-builds-ai": "ready", "github-commit-flood": "ready", "metr-task-horizons": "draft"}
    assert data["feeds"] == []
    assert not (proj / "outputs" / "store.db").exists()


def test_run_json_then_status_counts_what_was_sent(proj: Path) -> None:
    run = run_briefing(proj, "--json", "run")
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)  # stdout must be pure JSON: Prefect logs go elsewhere or are silenced
    assert sorted(summary["briefings_rendered"]) == ["anthropic-ai-builds-ai", "github-commit-flood"]
    status = json.loads(run_briefing(proj, "--json", "status").stdout)
    by_slug = {b["slug"]: b for b in status["briefings"]}
    for slug in summary["briefings_rendered"]:
        assert by_slug[slug]["stage"] == "sent"
        sent = {audience: states.get("sent", 0) for audience, states in by_slug[slug]["audiences"].items()}
        assert sent == {a: s["sent"] for a, s in summary["delivery"][slug].items()}
        assert all(n > 0 for n in sent.values())
    assert by_slug["metr-task-horizons"]["stage"] == "draft"
    assert [f["feed"] for f in status["feeds"]] == ["frontier-notes"]
    assert status["feeds"][0]["last_status"] and status["feeds"][0]["last_fetched_at"]
    table = run_briefing(proj, "status")
    assert "github-commit-flood" in table.stdout and "sent" in table.stdout and "frontier-notes" in table.stdout


def test_unusable_store_is_one_line_with_exit_9(proj: Path) -> None:
    (proj / "outputs" / "store.db").mkdir()  # a folder where the SQLite file should be
    result = run_briefing(proj, "status")
    assert result.returncode == 9
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "store" in lines[0] and "BRIEFING_DATABASE_URL" in lines[0], result.stderr


def test_unexpected_error_is_one_line_with_exit_1(proj: Path) -> None:
    audiences = proj / "content" / "audiences.yaml"
    audiences.unlink()
    audiences.mkdir()  # a folder where a file should be: nothing anticipates that
    result = run_briefing(proj, "check")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unexpected" in lines[0] and "--verbose" in lines[0], result.stderr
    verbose = run_briefing(proj, "--verbose", "check")
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_preview_on_a_busy_port_exits_2_with_one_line(proj: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_briefing(proj, "preview", "--port", str(port), timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use — " + (
        "pick another --port, e.g. --port 8001"
    )


def test_status_lists_failed_and_uncertain_emails_with_the_reply(proj: Path) -> None:
    from flows.core.store import Store, ledger

    store = Store(f"sqlite:///{proj / 'outputs' / 'store.db'}")
    try:
        recipients = {"ok@example.org": "<1@x>", "gone@example.org": "<2@x>", "maybe@example.org": "<3@x>"}
        ledger.enqueue(store, "github-commit-flood", "uota", "h1", recipients)
        rows = {r.recipient: r for r in ledger.claim_batch(store, "github-commit-flood", "uota", "w", 10)}
        ledger.finish(store, rows["ok@example.org"].id, ledger.SENT, "250 ok")
        ledger.finish(store, rows["gone@example.org"].id, ledger.FAILED, "550 no such user")
        ledger.finish(store, rows["maybe@example.org"].id, ledger.UNCERTAIN, "connection lost during DATA")
    finally:
        store.close()
    data = json.loads(run_briefing(proj, "--json", "status").stdout)
    flood = next(b for b in data["briefings"] if b["slug"] == "github-commit-flood")
    assert flood["stage"] == "attention"
    assert flood["audiences"] == {"uota": {"sent": 1, "failed": 1, "uncertain": 1}}
    assert {(f["recipient"], f["state"], f["reply"]) for f in data["failures"]} == {
        ("gone@example.org", "failed", "550 no such user"),
        ("maybe@example.org", "uncertain", "connection lost during DATA"),
    }
    table = run_briefing(proj, "status").stdout
    assert "gone@example.org: failed — 550 no such user" in table
    assert "attention" in table


def test_problem_fields_in_brackets_are_printed_literally(proj: Path) -> None:
    """Field names like [email] must not be swallowed as terminal markup."""
    csv = proj / "content" / "subscribers" / "atou.csv"
    csv.write_text(csv.read_text(encoding="utf-8") + "no-at-sign,Bad [row]\n", encoding="utf-8")
    result = run_briefing(proj, "check")
    assert result.returncode == 3
    assert "atou.csv:4 [email]: error: invalid email address 'no-at-sign'" in result.stderr


def test_brief_writes_markdown_briefings_and_a_failed_write_stops_no_email(proj: Path) -> None:
    """Issue 20 item 2: `briefing brief` (like `run`) writes outputs/briefings/<slug>/<audience>.md; when that
    folder cannot be written the emails still go out and the summary names the problem."""
    blocker = proj / "outputs" / "briefings"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder", encoding="utf-8")
    run = run_briefing(proj, "--json", "brief", "github-commit-flood")
    summary = json.loads(run.stdout)
    assert summary["emails_sent"] > 0 and summary["markdown_written"] == []
    assert any("cannot write the Markdown briefing" in p for p in summary["problems"]), summary["problems"]
    blocker.unlink()
    again = json.loads(run_briefing(proj, "--json", "brief", "github-commit-flood").stdout)
    written = sorted(Path(p).name for p in again["markdown_written"])
    assert written == ["atou.md", "investors.md", "neta.md", "uota.md"] and again["emails_sent"] == 0
    atou = (blocker / "github-commit-flood" / "atou.md").read_text(encoding="utf-8")
    assert atou.startswith("**阿头学 · 讨论题** · 2026-06-03") and "**给你的 · ATou**" in atou

"""`briefing send`: counts per audience and state, failures with reasons, exit status, test sends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.app.cli import app
from tests.delivery_support import FaultyMailbox, SmtpServer, write_subscribers


@pytest.fixture
def smtp_env(project: Path, monkeypatch: pytest.MonkeyPatch):
    handler = FaultyMailbox(permanent={"bounce@example.net"})
    write_subscribers(project, "neta.csv", ["ok1@example.net", "bounce@example.net", "ok2@example.net"])
    with SmtpServer(handler) as server:
        monkeypatch.setenv("BRIEFING_SMTP_URL", server.url)
        monkeypatch.setenv("BRIEFING_SECRET", "cli-test-secret-0123456789-abcdefghijkl")
        yield handler


def test_send_reports_states_and_failures_and_exits_6(smtp_env: FaultyMailbox) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["--json", "send", "--slug", "anthropic-ai-builds-ai", "--audience", "neta"])
    assert result.exit_code == 6, result.output
    data = json.loads(result.output)
    (briefing,) = data["briefings"]
    neta = briefing["audiences"]["neta"]
    assert neta["totals"] == {"sent": 2, "failed": 1} and neta["this_run"] == {"sent": 2, "failed": 1}
    (failure,) = neta["failures"]
    assert failure["recipient"] == "bounce@example.net" and failure["reason"].startswith("550")
    assert set(smtp_env.by_recipient()) == {"ok1@example.net", "ok2@example.net"}

    table = runner.invoke(app, ["send", "--slug", "anthropic-ai-builds-ai", "--audience", "neta"])
    assert table.exit_code == 0, table.output  # nothing new failed; the old failure is still listed
    assert "bounce@example.net: failed: 550" in table.output
    assert "sent=2" in table.output and "failed=1" in table.output


def test_send_test_needs_one_audience_and_touches_no_ledger(smtp_env: FaultyMailbox, project: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["send", "--test", "me@example.org"])
    assert missing.exit_code == 6 and "--audience" in missing.output
    sent = runner.invoke(app, ["--json", "send", "--test", "me@example.org", "--audience", "neta"])
    assert sent.exit_code == 0, sent.output
    assert json.loads(sent.output)["state"] == "sent"
    (received,) = smtp_env.received
    assert received.message["Subject"].startswith("[TEST] ")
    status = runner.invoke(app, ["--json", "send", "--slug", "anthropic-ai-builds-ai", "--audience", "neta"])
    assert json.loads(status.output)["briefings"][0]["audiences"]["neta"]["this_run"]["sent"] == 2


def test_unknown_slug_or_audience_is_a_clear_error(project: Path) -> None:
    runner = CliRunner()
    bad_slug = runner.invoke(app, ["send", "--slug", "no-such-briefing"])
    assert bad_slug.exit_code == 6 and "no ready briefing" in bad_slug.output
    bad_audience = runner.invoke(app, ["send", "--audience", "nobody"])
    assert bad_audience.exit_code == 6 and "unknown audience nobody" in bad_audience.output


def test_a_briefing_that_cannot_render_is_held_and_the_others_are_sent(project: Path) -> None:
    path = project / "content" / "briefings" / "github-commit-flood.md"
    text = path.read_text(encoding="utf-8")
    start, end = text.index("### neta"), text.index("### uota")
    path.write_text(text[:start] + text[end:], encoding="utf-8")  # no note for neta: `check` rejects it
    result = CliRunner().invoke(app, ["--json", "send"])
    assert result.exit_code == 3, result.output  # held back for content problems (docs/cli.md, exit codes)
    data = json.loads(result.output)
    assert [b["slug"] for b in data["briefings"]] == ["anthropic-ai-builds-ai"]
    assert data["briefings"][0]["sent_now"] > 0
    (held,) = data["held"]
    assert held.startswith("github-commit-flood:") and "neta" in held


def test_send_warns_once_per_run_about_an_http_unsubscribe_link(smtp_env: FaultyMailbox, caplog) -> None:
    import logging

    with caplog.at_level(logging.WARNING, logger="flows.deliver"):
        result = CliRunner().invoke(app, ["--json", "send"])
    sent = json.loads(result.output)
    assert sum(b["sent_now"] for b in sent["briefings"]) == len(smtp_env.received) > 0
    assert len(sent["briefings"]) > 1, "two briefings: the warning was once per briefing before"
    assert sum("RFC 8058" in m for m in caplog.messages) == 1

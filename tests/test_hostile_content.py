"""A hurried editor's mistakes stop no one: a `ready` briefing that `briefing check` rejects is held back from
rendering, sending and publishing on every path, its problems are reported, and every valid briefing still goes out.
Control characters and header-breaking subscriber rows are reported by `check` with file, line and field."""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from flows.app.cli import app
from flows.core.content import load_content
from flows.core.errors import ContentProblemsError
from flows.core.settings import Settings
from flows.core.store import Store
from flows.edition import gate, render_for_delivery
from flows.edition import send_test as preview_send_test
from tests.preview_support import make_project, run_briefing

VALID = "anthropic-ai-builds-ai"
FLOOD = "content/briefings/github-commit-flood.md"


def edit(project: Path, relative: str, old: str, new: str) -> Path:
    path = project / relative
    text = path.read_text("utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), "utf-8")
    return path


def copy_flood(project: Path, slug: str, change: tuple[str, str]) -> Path:
    """Another ready briefing (its own slug and source, so it does not clash with the original)."""
    text = (project / FLOOD).read_text("utf-8")
    text = text.replace("slug: github-commit-flood", f"slug: {slug}")
    text = text.replace("/2026/06/github-commit-flood", f"/2026/06/{slug}")
    text = text.replace("article_id: e6895349eb8db814\n", "")
    assert change[0] in text
    path = project / "content" / "briefings" / f"{slug}.md"
    path.write_text(text.replace(change[0], change[1], 1), "utf-8")
    return path


VERDICT = "agent 写代码的洪峰已经压到基础设施上"


def break_three(project: Path) -> dict[str, Path]:
    """The issue's probes: an empty verdict, a note for an unknown audience, a NUL byte in a verdict."""
    unknown = copy_flood(project, "unknown-audience", ("### neta\n", "### nobody\n"))
    nul = copy_flood(project, "nul-verdict", (VERDICT, "agent\x00 写代码的洪峰"))
    flood = project / FLOOD
    text = flood.read_text("utf-8")
    start, end = text.index("## Verdict"), text.index("## Judgement")
    flood.write_text(text[:start] + "## Verdict\n\n" + text[end:], "utf-8")
    return {"github-commit-flood": flood, "unknown-audience": unknown, "nul-verdict": nul}


def test_check_reports_a_nul_byte_with_file_line_and_field(project: Path) -> None:
    path = copy_flood(project, "nul-verdict", (VERDICT, "agent\x00 写代码的洪峰"))
    lines = path.read_text("utf-8").split("\n")
    line = next(number for number, text in enumerate(lines, start=1) if "\x00" in text)
    result = CliRunner().invoke(app, ["--json", "check"])
    assert result.exit_code == 3
    problems = [p for p in json.loads(result.stdout)["problems"] if "U+0000" in p["message"]]
    assert problems == [
        {
            "path": str(path),
            "message": "U+0000 (NUL) at column 6: emails, headers and the archive cannot carry control characters",
            "field": "verdict",
            "line": line,
            "hint": "delete it (most editors do not show it); a ready briefing that has one is held back",
            "severity": "error",
        }
    ]


@pytest.mark.parametrize(
    ("char", "name"), [("\x1b", "ESCAPE"), ("\x7f", "DELETE"), ("\x85", "NEXT LINE"), ("\u2028", "LINE SEPARATOR")]
)
def test_check_reports_other_control_characters(project: Path, char: str, name: str) -> None:
    path = edit(project, FLOOD, "Means: ", f"Means: {char}")
    problems = load_content(project / "content").problems
    (found,) = [p for p in problems if name in p.message]
    assert found.path == str(path) and found.field == "notes.atou" and found.line == 34


def test_publish_leaves_out_held_briefings_and_publishes_the_rest(project: Path, settings: Settings) -> None:
    break_three(project)
    result = CliRunner().invoke(app, ["--json", "publish"])
    assert result.exit_code == 3, result.output
    data = json.loads(result.stdout)
    assert list(data["pages"]) == [VALID]
    assert sorted(line.split(":", 1)[0] for line in data["held"]) == sorted(
        ["github-commit-flood", "unknown-audience", "nul-verdict"]
    )
    feed = ElementTree.parse(settings.archive_path / "feed.xml").getroot()  # well-formed XML, one entry
    assert len(feed.findall("{http://www.w3.org/2005/Atom}entry")) == 1


def test_send_holds_invalid_briefings_and_sends_the_valid_one(project: Path, settings: Settings) -> None:
    break_three(project)
    result = CliRunner().invoke(app, ["--json", "send"])
    data = json.loads(result.stdout)
    assert result.exit_code == 3, result.output
    assert [b["slug"] for b in data["briefings"]] == [VALID]
    assert data["briefings"][0]["sent_now"] == 8
    held = " ".join(data["held"])
    assert "verdict is empty" in held and "unknown audience id 'nobody'" in held and "U+0000 (NUL)" in held
    assert sorted(p.name for p in settings.outbox_path.iterdir()) == [VALID]


def test_send_test_and_preview_test_send_refuse_a_held_briefing(project: Path, settings: Settings) -> None:
    break_three(project)
    runner = CliRunner()
    refused = runner.invoke(app, ["send", "--test", "me@example.org", "--audience", "atou", "--slug", "nul-verdict"])
    assert refused.exit_code == 3 and "U+0000 (NUL)" in refused.output
    store = Store(settings.store_url)
    with pytest.raises(ContentProblemsError, match="verdict is empty"):
        preview_send_test(settings, load_content(settings.content_dir), store, "github-commit-flood", "atou", "a@b.org")
    assert not settings.outbox_path.exists()
    ok = runner.invoke(app, ["send", "--test", "me@example.org", "--audience", "atou", "--slug", VALID])
    assert ok.exit_code == 0, ok.output


def test_scaleout_refuses_a_held_briefing(project: Path, settings: Settings) -> None:
    break_three(project)
    store = Store(settings.store_url)
    with pytest.raises(ContentProblemsError, match=r"held back: unknown-audience: .*unknown audience id 'nobody'"):
        render_for_delivery("unknown-audience", settings, store)
    rendered, _content = render_for_delivery(VALID, settings, store)
    assert set(rendered.emails) == {"atou", "neta", "uota", "investors"}


def test_the_gate_is_what_check_says(project: Path, settings: Settings) -> None:
    break_three(project)
    loaded = load_content(settings.content_dir)
    checked = gate(loaded, Store(settings.store_url))
    assert [j.briefing.slug for j in checked.passed] == [VALID]
    erroneous = {Path(p.path).stem for p in loaded.errors}
    assert {j.briefing.slug for j in checked.held} == erroneous


def test_strict_send_exits_3(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edit(project, FLOOD, "### neta\n", "### nobody\n")
    monkeypatch.setenv("BRIEFING_STRICT", "true")
    for command in (["send"], ["publish"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 3, (command, result.output)
        assert "content problems (strict mode)" in result.output


def test_subscriber_rows_that_break_headers_are_reported_with_lines(project: Path) -> None:
    content = project / "content"
    csv = content / "subscribers" / "atou.csv"
    rows = 'evil@example.org,"Eve\r\nBcc: all@example.org",zh-CN\nok@example.org,Ok,\n'
    csv.write_text(csv.read_text("utf-8") + rows, "utf-8")
    yaml_file = content / "subscribers" / "uota.yaml"
    yaml_file.write_text(yaml_file.read_text("utf-8") + '  - email: sep@example.org\n    name: "A\\u2028B"\n', "utf-8")
    loaded = load_content(content)
    rows = {(Path(p.path).name, p.line): p for p in loaded.errors}
    assert "contains U+000D" in rows[("atou.csv", 4)].message and rows[("atou.csv", 4)].field == "name"
    assert "U+2028 (LINE SEPARATOR)" in rows[("uota.yaml", 6)].message
    atou = loaded.content.audience("atou")
    assert "evil@example.org" not in {s.email for s in atou.subscribers}
    assert "ok@example.org" in {s.email for s in atou.subscribers}
    assert "sep@example.org" not in {s.email for s in loaded.content.audience("uota").subscribers}


def test_bad_yaml_subscriber_addresses_carry_their_line(project: Path) -> None:
    yaml_file = project / "content" / "subscribers" / "uota.yaml"
    yaml_file.write_text(yaml_file.read_text("utf-8") + "  - email: not-an-address\n    name: Nope\n", "utf-8")
    (problem,) = [p for p in load_content(project / "content").errors if "not-an-address" in p.message]
    assert problem.line == 6 and problem.field == "email"


def test_run_holds_invalid_briefings_sends_and_publishes_the_valid_one(tmp_path: Path) -> None:
    """The issue's probe end to end: `briefing run` in a subprocess on the embedded Prefect API."""
    project = make_project(tmp_path)
    break_three(project)
    result = run_briefing(project, "--json", "run", timeout=300)
    assert result.returncode == 3, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["emails_sent"] == 8 and list(data["delivery"]) == [VALID]
    assert sorted(data["briefings_held"]) == ["github-commit-flood", "nul-verdict", "unknown-audience"]
    assert data["briefings_rendered"] == [VALID]
    problems = "\n".join(data["problems"])
    assert re.search(r"github-commit-flood\.md \[verdict\]: error: verdict is empty", problems)
    assert re.search(r"nul-verdict\.md:\d+ \[verdict\]: error: U\+0000 \(NUL\)", problems)
    assert "unknown audience id 'nobody'" in problems
    outbox = project / "outputs" / "outbox"
    assert sorted(p.name for p in outbox.iterdir()) == [VALID]
    assert any(p.endswith(f"{VALID}.md") for p in data["pages_written"])
    assert not any("nul-verdict" in p or "unknown-audience" in p for p in data["pages_written"])
    emls = sorted(outbox.rglob("*.eml"))
    messages = [email.message_from_bytes(eml.read_bytes(), policy=email.policy.default) for eml in emls]
    subjects = [str(message["Subject"]) for message in messages]
    assert len(subjects) == 8 and all(len(subject) > len("【阿头学 · Neta】") for subject in subjects), subjects
    assert "unexpected" not in result.stderr

"""The checker reports each kind of problem with its file, field and a message (one test per kind)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flows.core.content import load_content

READY = "anthropic-ai-builds-ai.md"


def _edit(project: Path, name: str, old: str, new: str, count: int = 1) -> Path:
    path = project / "content" / "briefings" / name
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {name}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")
    return path


def _problems(project: Path):
    return load_content(project / "content").problems


def _one(problems, field_prefix: str):
    found = [p for p in problems if p.field.startswith(field_prefix)]
    assert found, f"no problem for {field_prefix}: {problems}"
    return found[0]


def test_shipped_content_is_valid(project: Path) -> None:
    loaded = load_content(project / "content")
    assert loaded.problems == []
    assert len(loaded.content.ready) >= 1
    assert any(b.status == "draft" for b in loaded.content.briefings)
    assert {a.id for a in loaded.content.audiences} == {"atou", "neta", "uota", "investors"}


def test_missing_audience_note(project: Path) -> None:
    path = _edit(project, READY, "### uota\n", "### nobody-here\n")
    problems = _problems(project)
    missing = _one(problems, "notes.uota")
    assert missing.path == str(path) and "missing audience note" in missing.message
    unknown = _one(problems, "notes.nobody-here")
    assert "unknown audience id" in unknown.message and unknown.line is not None


def test_empty_verdict(project: Path) -> None:
    path = project / "content" / "briefings" / READY
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"## Verdict\n\n.*?\n\n## Judgement", "## Verdict\n\n## Judgement", text, flags=re.S)
    path.write_text(text, encoding="utf-8")
    problem = _one(_problems(project), "verdict")
    assert problem.message == "verdict is empty" and problem.path == str(path)


def test_bad_date(project: Path) -> None:
    _edit(project, READY, "date: 2026-06-05", "date: 2026-13-45")
    problem = _one(_problems(project), "date")
    assert "date" in problem.message.lower() and problem.line == 4
    assert "YYYY-MM-DD" in problem.hint


def test_duplicate_slug(project: Path) -> None:
    _edit(project, "github-commit-flood.md", "slug: github-commit-flood", "slug: anthropic-ai-builds-ai")
    problem = _one(_problems(project), "slug")
    assert "already used by" in problem.message


def test_unknown_feed(project: Path) -> None:
    _edit(project, READY, "feed: frontier-notes", "feed: no-such-feed")
    problem = _one(_problems(project), "feed")
    assert "unknown feed 'no-such-feed'" in problem.message


def test_invalid_email_address(project: Path) -> None:
    csv = project / "content" / "subscribers" / "atou.csv"
    csv.write_text(csv.read_text(encoding="utf-8") + "not-an-address,Bad Row,zh-CN\n", encoding="utf-8")
    problems = _problems(project)
    problem = _one(problems, "email")
    assert problem.path == str(csv) and problem.line == 4 and "not-an-address" in problem.message
    loaded = load_content(project / "content")
    assert len(loaded.content.audience("atou").subscribers) == 2  # the good rows are kept


def test_untranslated_paragraph_in_ready_briefing(project: Path) -> None:
    _edit(project, READY, "训练任务比导弹发射井更容易隐藏，所以难点在于核查，而不在于承诺。", "")
    problem = _one(_problems(project), "translation")
    assert "fn13-a96c04a3 has no translation" in problem.message


def test_translation_ids_must_match_source(project: Path, store) -> None:
    from flows.edition import join_briefing

    loaded = load_content(project / "content")
    from flows.core.settings import load_settings
    from flows.ingest import ingest_feeds

    ingest_feeds(list(loaded.content.feeds), store, load_settings())
    _edit(project, READY, "### p05-d9c05009", "### p05-00000000")
    briefing = next(b for b in load_content(project / "content").content.ready if b.slug == "anthropic-ai-builds-ai")
    problems = join_briefing(briefing, store).problems
    assert problems and problems[0].field == "translation"
    assert "p05-d9c05009" in problems[0].message and "p05-00000000" in problems[0].message


def test_draft_may_be_incomplete(project: Path) -> None:
    loaded = load_content(project / "content")
    draft = next(b for b in loaded.content.briefings if b.status == "draft")
    assert not draft.judgement and not [p for p in loaded.problems if p.path == draft.path]


@pytest.mark.parametrize("status", ["ready"])
def test_draft_becomes_ready_needs_everything(project: Path, status: str) -> None:
    path = _edit(project, "metr-task-horizons.md", "status: draft", f"status: {status}")
    fields = {p.field for p in _problems(project) if p.path == str(path)}
    assert {"judgement", "prompts", "notes.neta", "translation"} <= fields


def test_every_problem_is_reported_at_once_even_with_invalid_front_matter(project: Path) -> None:
    """A bad date makes the file unusable, but its other problems are still listed in the same check."""
    path = _edit(project, READY, "date: 2026-06-05", "date: 2026-13-45")
    _edit(project, READY, "### uota\n", "### nobody-here\n")
    _edit(project, READY, "feed: frontier-notes", "feed: no-such-feed")
    loaded = load_content(project / "content")
    fields = {p.field for p in loaded.problems if p.path == str(path)}
    assert {"date", "notes.nobody-here", "notes.uota", "feed"} <= fields
    assert all(b.path != str(path) for b in loaded.content.briefings)  # the broken file is never used

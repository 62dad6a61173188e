"""The briefing format holds a real briefing page (issue 20, item 1): notes as a bold lead plus free paragraphs,
which blocks need a translation, labelled footnotes — each rule with the message an editor gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.core.briefing_format import join_lines, parse_briefing_file
from flows.core.content import load_content
from flows.core.pages import page_digest
from flows.render.email import preheader_of
from tests.render_support import render

READY = "anthropic-ai-builds-ai.md"
ATOU_NOTE = """### atou
Means: 对 ATou 来说，要更新的问题不是“AI 能不能写代码”，而是团队里哪些工作已经可以只交代目标、不交代做法。
Next: 把手上的项目按“执行 / 方案 / 方向”三层拆开，先把高频、可验证、边界清楚的执行层交给 agent，并给审查留出固定时间。
"""
LEAD_NOTE = """### atou · 先把执行层交出去
**对 ATou 意味着什么、下一步怎么用：** 要更新的问题不是“AI 能不能写代码”，
而是哪些工作已经可以只交代目标。Means: 这一句是正文。

下一步：把项目按“执行 / 方案 / 方向”三层拆开。
"""


def _edit(project: Path, old: str, new: str, name: str = READY) -> Path:
    path = project / "content" / "briefings" / name
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _loaded(project: Path):
    return load_content(project / "content")


def _briefing(project: Path, slug: str = "anthropic-ai-builds-ai"):
    return next(b for b in _loaded(project).content.briefings if b.slug == slug)


def test_a_note_with_a_bold_lead_keeps_every_character_and_splits_nothing(project: Path) -> None:
    _edit(project, ATOU_NOTE, LEAD_NOTE)
    loaded = _loaded(project)
    assert [p for p in loaded.problems if p.severity == "error"] == []
    note = _briefing(project).note_for("atou")
    assert note is not None and note.hook == "先把执行层交出去"
    assert note.lead == "对 ATou 意味着什么、下一步怎么用："
    # the hard-wrapped CJK line joins without a space; "Means:" and "下一步：" inside the note are text
    assert note.paragraphs == (
        "要更新的问题不是“AI 能不能写代码”，而是哪些工作已经可以只交代目标。Means: 这一句是正文。",
        "下一步：把项目按“执行 / 方案 / 方向”三层拆开。",
    )
    assert not note.meaning and not note.next_step
    email = render(_briefing(project), audiences=["atou"]).emails["atou"]
    assert "下一步：把项目按“执行 / 方案 / 方向”三层拆开。" in email.html
    # the lead ends in punctuation: a plain space follows it, not the locale's "　" gap
    assert "对 ATou 意味着什么、下一步怎么用：</strong> 要更新的问题" in email.html
    assert email.preheader.startswith("要更新的问题不是")
    assert "下一步怎么用：下一步" not in email.text.replace("\n", "")


def test_a_note_that_starts_with_neither_form_is_an_error_naming_the_note(project: Path) -> None:
    path = _edit(project, ATOU_NOTE, "### atou\n对 ATou 来说，这是一段没有开头的话。\n")
    problem = next(p for p in _loaded(project).problems if p.field == "notes.atou")
    assert problem.path == str(path) and problem.line is not None
    assert "bold lead" in problem.message and "Means:" in problem.message


def test_a_lead_without_a_paragraph_is_not_ready(project: Path) -> None:
    _edit(project, ATOU_NOTE, "### atou\n**对 ATou 意味着什么**\n")
    problem = next(p for p in _loaded(project).problems if p.field == "notes.atou")
    assert problem.severity == "error" and "has no paragraph after its lead" in problem.message


def test_next_written_with_its_own_label_warns_about_the_doubled_word(project: Path) -> None:
    _edit(project, "Next: 把手上的项目", "Next: 下一步应把手上的项目")
    problem = next(p for p in _loaded(project).problems if p.field == "notes.atou")
    assert problem.severity == "warning" and "starts with the label" in problem.message


def test_which_blocks_need_a_translation(project: Path) -> None:
    # an image with no file and no caption, and a footnote marked untranslated, may stay in English
    _edit(
        project,
        "### fn13-a96c04a3\n> [^2]: Training runs are easier to hide than missile silos, which is why verification, "
        "not promises, is the hard part.\n\n[^2]: 训练任务比导弹发射井更容易隐藏，所以难点在于核查，而不在于承诺。\n",
        "### fn13-a96c04a3\n<!-- untranslated: kept as published -->\n> [^2]: Training runs are easier to hide than "
        "missile silos, which is why verification, not promises, is the hard part.\n",
    )
    loaded = _loaded(project)
    assert [p for p in loaded.problems if p.severity == "error"] == []
    footnote = _briefing(project).footnotes[1]
    assert footnote.untranslated and footnote.translation == "" and footnote.footnote_label == "2"
    # prose cannot be marked untranslated
    path = _edit(project, "### p02-bf952c1d\n", "### p02-bf952c1d\n<!-- untranslated -->\n")
    problem = next(p for p in _loaded(project).problems if "cannot be marked untranslated" in p.message)
    assert problem.path == str(path) and problem.field == "translation" and problem.line is not None


def test_footnote_markers_must_resolve_and_match(project: Path) -> None:
    _edit(project, "超过 80% 可归于 Claude[^1]", "超过 80% 可归于 Claude[^3]")
    messages = [p.message for p in _loaded(project).problems]
    assert any("points to footnote [^3], which no footnote block defines" in m for m in messages)
    assert any("the translation of p04-7963e0db has footnote markers ['3'], its source ['1']" in m for m in messages)


def test_lines_of_a_paragraph_join_without_a_space_between_cjk_characters() -> None:
    assert join_lines("报告说，\n到十月") == "报告说，到十月"
    assert join_lines("agent\nwrites") == "agent writes"
    assert join_lines("用 agent\n写代码") == "用 agent 写代码"


def test_preheader_is_clipped_at_a_clause_boundary() -> None:
    text = "对投资团队来说，这份报告把价值链的移动讲得很具体：" + "写代码的边际成本趋近于零，" * 10
    preheader = preheader_of(text)
    assert len(preheader) <= 110 and preheader.endswith("…") and preheader[-2] != "，"


@pytest.mark.parametrize(
    ("name", "content_hash", "digest"),
    [
        # computed by main's code (before issue 20): new fields left at their defaults change neither hash
        ("github-commit-flood.md", "8487e5eafcb39fc2", "7678bc9d767d5374"),
        ("metr-task-horizons.md", "c8a72741d06108e4", "9878ba3db2d7e305"),
    ],
)
def test_briefings_in_the_earlier_format_hash_as_before(name: str, content_hash: str, digest: str) -> None:
    briefing, _, problems = parse_briefing_file(Path(__file__).parent.parent / "content" / "briefings" / name)
    assert briefing is not None and not problems
    assert briefing.content_hash() == content_hash and page_digest(briefing) == digest


def test_subject_template_is_checked_when_audiences_load(project: Path) -> None:
    path = project / "content" / "audiences.yaml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('subject: "{prefix}{hook}｜{verdict}"', 'subject: "{prefix}{hok}"', 1), "utf-8")
    problem = next(p for p in _loaded(project).problems if p.field.endswith(".subject"))
    assert "unknown placeholder {hok}" in problem.message and "{verdict}" in problem.hint
    atou = next(a for a in _loaded(project).content.audiences if a.id == "atou")  # kept, with the default subject
    assert atou.subject == "{prefix}{verdict}"


def test_drafting_sees_lead_form_notes_and_skips_what_needs_no_translation(tmp_path: Path) -> None:
    """The drafting assistant finds '### atou · hook' notes written (no second '### atou' is added) and leaves
    code, caption-less charts and blocks kept in English alone."""
    from flows.draft.fileupdate import BriefingText, find_empty

    sample = Path(__file__).parent / "data" / "fidelity" / "briefing.md"
    text = sample.read_text(encoding="utf-8").replace("status: ready", "status: draft")
    text = text.replace("\n一年，四个数字\n", "\n")  # one heading left untranslated: that one needs drafting
    path = tmp_path / "larkspur-review-queue.md"
    path.write_text(text, encoding="utf-8")
    parts = find_empty(BriefingText.read(path), {"notes", "translation"}, ["atou", "neta", "uota", "investors"])
    assert parts.notes == [] and {"notes.atou", "notes.investors"} <= set(parts.written)
    assert [b.id for b in parts.blocks] == ["h08-992f6f77"]

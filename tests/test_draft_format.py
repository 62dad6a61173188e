"""Machine-draft markers in the briefing format: where they may stand, what the parser keeps, what the gate says,
and that deleting them changes nothing a reader sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.core.briefing_format import machine_draft_marker, parse_briefing_file
from flows.core.content import load_content, unreviewed_drafts
from flows.core.errors import DeliveryError
from flows.core.store import Store
from flows.deliver import deliver_briefing
from flows.draft import approve_sections

READY = "github-commit-flood.md"


def _insert(path: Path, after: str, line: str) -> None:
    text = path.read_text("utf-8")
    assert after in text
    path.write_text(text.replace(after, after + line + "\n", 1), "utf-8")


def _own_problems(project: Path, path: Path):
    return [p for p in load_content(project / "content").problems if p.path == str(path)]


def test_markers_are_tied_to_their_section_note_or_block(project: Path) -> None:
    path = project / "content" / "briefings" / READY
    marker = machine_draft_marker("qwen2.5:7b-instruct", __import__("datetime").date(2026, 6, 4))
    _insert(path, "## Verdict\n\n", marker)
    _insert(path, "### neta\n", marker)
    _insert(path, "### p03-27bcd1e4\n", marker)
    _insert(path, "## Translation\n\n", "<!-- machine-draft -->")  # a bare marker: the whole section, origin unknown
    briefing, _, problems = parse_briefing_file(path)
    assert briefing is not None and problems == []
    found = {(d.section, d.item, d.model, d.drafted) for d in briefing.machine_drafts}
    assert found == {
        ("verdict", "", "qwen2.5:7b-instruct", "2026-06-04"),
        ("notes", "neta", "qwen2.5:7b-instruct", "2026-06-04"),
        ("translation", "p03-27bcd1e4", "qwen2.5:7b-instruct", "2026-06-04"),
        ("translation", "", "", ""),
    }
    text = path.read_text("utf-8").splitlines()
    assert all(text[d.line - 1].lstrip().startswith("<!-- machine-draft") for d in briefing.machine_drafts)
    # markers are comments: the text a reader sees is unchanged
    assert briefing.verdict.startswith("agent 写代码的洪峰") and briefing.note_for("neta").meaning
    gate = {p.field: p.message for p in unreviewed_drafts(briefing)}
    assert set(gate) == {"verdict", "notes.neta", "translation"}
    assert "(qwen2.5:7b-instruct, 2026-06-04)" in gate["verdict"]
    assert "translation of 2 blocks ((whole section), p03-27bcd1e4)" in gate["translation"]


def test_markers_do_not_change_the_content_hash_or_the_page(project: Path) -> None:
    path = project / "content" / "briefings" / READY
    clean, _, _ = parse_briefing_file(path)
    _insert(path, "## Judgement\n\n", machine_draft_marker("m", __import__("datetime").date(2026, 6, 4)))
    marked, _, _ = parse_briefing_file(path)
    assert clean is not None and marked is not None and marked.machine_drafts
    assert marked.content_hash() == clean.content_hash()
    assert marked.model_dump() == clean.model_dump()


def test_a_marker_outside_the_drafted_sections_is_an_error(project: Path) -> None:
    path = project / "content" / "briefings" / READY
    _insert(path, "## Discussion archive\n", "<!-- machine-draft model=m date=2026-06-04 -->")
    problems = _own_problems(project, path)
    assert len(problems) == 1 and "outside the sections a model can draft" in problems[0].message
    assert problems[0].line is not None and problems[0].severity == "error"


def test_only_ready_briefings_are_refused(project: Path) -> None:
    ready = project / "content" / "briefings" / READY
    draft = project / "content" / "briefings" / "metr-task-horizons.md"
    for path in (ready, draft):
        _insert(path, "## Verdict\n\n", "<!-- machine-draft model=m date=2026-06-04 -->")
    assert [p.field for p in _own_problems(project, ready)] == ["verdict"]
    assert _own_problems(project, draft) == []


def test_approve_removes_only_marker_lines_and_keeps_crlf(project: Path) -> None:
    path = project / "content" / "briefings" / READY
    _insert(path, "### uota\n", "<!-- machine-draft model=m date=2026-06-04 -->")
    _insert(path, "## Verdict\n\n", "<!-- machine-draft model=m date=2026-06-04 -->")
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    expected = path.read_bytes().replace(b"<!-- machine-draft model=m date=2026-06-04 -->\r\n", b"")
    approval = approve_sections(path, ["notes"])
    assert approval.approved == ["notes.uota"] and approval.remaining == ["verdict"]
    approval = approve_sections(path, ["Verdict"])  # section names as the headings spell them work too
    assert approval.approved == ["verdict"] and approval.remaining == []
    assert path.read_bytes() == expected
    assert approve_sections(path, ["verdict"]).approved == []  # nothing left: no change, no error
    with pytest.raises(Exception, match="cannot approve discussion"):
        approve_sections(path, ["discussion"])


def test_delivery_refuses_a_rendered_briefing_with_machine_drafts(project: Path, settings) -> None:
    """The last line of the gate: even a caller that skips the join cannot send an unreviewed draft."""
    from flows.edition import render_for_archive

    path = project / "content" / "briefings" / READY
    _insert(path, "## Verdict\n\n", "<!-- machine-draft model=m date=2026-06-04 -->")
    content = load_content(project / "content").content
    briefing = next(b for b in content.briefings if b.slug == "github-commit-flood")
    rendered = render_for_archive(settings, content, briefing, "2026/06/github-commit-flood.md")
    store = Store(settings.store_url)
    with pytest.raises(DeliveryError, match="machine-drafted parts are not reviewed"):
        deliver_briefing(rendered, content, store, settings)
    assert not (settings.outbox_path / "github-commit-flood").exists()


@pytest.mark.usefixtures("prefect_harness")
def test_ready_is_announced_only_once_the_machine_drafts_are_reviewed(project: Path, store: Store) -> None:
    """`briefing serve` delivers on readiness events; approving changes no content hash, so a version announced
    while unreviewed would never be announced again after approval."""
    from flows.events import announce_ready

    path = project / "content" / "briefings" / READY
    _insert(path, "## Verdict\n\n", "<!-- machine-draft model=m date=2026-06-04 -->")
    marked = next(b for b in load_content(project / "content").content.ready if b.slug == "github-commit-flood")
    assert marked.machine_drafts and announce_ready([marked], store) == []
    assert not store.ready_announced(marked.slug, marked.content_hash())
    approve_sections(path, ["verdict"])
    approved = next(b for b in load_content(project / "content").content.ready if b.slug == "github-commit-flood")
    assert approved.content_hash() == marked.content_hash()
    assert announce_ready([approved], store) == ["github-commit-flood"]

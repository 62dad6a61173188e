"""`briefing run`'s flow end to end on the shipped sample content, in a temporary folder."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest

from flows.core.content import load_content


def _outbox(project: Path) -> list[Path]:
    return sorted((project / "outputs" / "outbox").rglob("*.eml"))


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.usefixtures("prefect_harness")
def test_pipeline_end_to_end_then_idempotent(project: Path) -> None:
    from flows.pipeline import pipeline

    content = load_content(project / "content").content
    expected = {(b.slug, a.id, s.email) for b in content.ready for a in content.audiences for s in a.subscribers}
    assert len(expected) >= 8

    first = pipeline()
    assert first["articles_new"] == 3
    files = _outbox(project)
    assert len(files) == len(expected) == first["emails_sent"]

    seen = set()
    for path in files:
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        slug, audience = path.parent.parent.name, path.parent.name
        briefing = next(b for b in content.ready if b.slug == slug)
        seen.add((slug, audience, msg["To"].addresses[0].addr_spec))
        assert msg.get_content_type() == "multipart/alternative"
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        note = briefing.note_for(audience)
        assert note is not None and note.meaning[:20] in html and note.meaning[:10] in text
        for point in briefing.core_points:
            assert point.lead in html
    assert seen == expected

    archive = project / "outputs" / "archive"
    index = (archive / "index.md").read_text(encoding="utf-8")
    for briefing in content.ready:
        page = next(archive.rglob(f"{briefing.slug}.md"))
        assert str(page.relative_to(archive)) in index

    before_outbox = _snapshot(project / "outputs" / "outbox")
    before_archive = _snapshot(archive)
    second = pipeline()
    assert second["articles_new"] == 0
    assert second["emails_sent"] == 0
    assert second["pages_written"] == []
    assert _snapshot(project / "outputs" / "outbox") == before_outbox
    assert _snapshot(archive) == before_archive

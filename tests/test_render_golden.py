"""Golden files per (briefing, audience, format) for the shipped sample content.

Regenerate after an intended change with `BRIEFING_REGENERATE_GOLDEN=1 python -m pytest tests/test_render_golden.py`
and review the diff in git before committing.
"""

from __future__ import annotations

import pytest

from tests.render_support import GOLDEN, compare_golden, render, sample_content

CASES = [(b.slug, a.id) for b in sample_content().ready for a in sample_content().audiences]


@pytest.mark.parametrize(("slug", "audience"), CASES)
def test_rendered_email_matches_golden_files(slug: str, audience: str) -> None:
    briefing = next(b for b in sample_content().ready if b.slug == slug)
    email = render(briefing, audiences=[audience]).emails[audience]
    problems = []
    for suffix, actual in (("html", email.html), ("txt", email.text), ("md", email.markdown)):
        diff = compare_golden(GOLDEN / slug / f"{audience}.{suffix}", actual)
        if diff:
            problems.append(diff)
    assert not problems, "\n\n".join(problems)


def test_every_golden_file_belongs_to_a_rendered_case() -> None:
    expected = {GOLDEN / slug / f"{audience}.{suffix}" for slug, audience in CASES for suffix in ("html", "txt", "md")}
    present = set(GOLDEN.rglob("*.*"))
    assert present == expected, f"stale or missing golden files: {sorted(map(str, present ^ expected))}"

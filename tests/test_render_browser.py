"""Each audience's email in real headless Chromium: no horizontal scrolling on a 375 px phone, the audience's
own note in the first screen, nothing fetched from the network. Screenshots at 600 px and 375 px.

`BRIEFING_UPDATE_SCREENSHOTS=1` also writes the 375 px first screen of each audience to docs/screenshots/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.render_support import REPO, hostile_briefing, huge_briefing, render, sample_content
from tests.tool_support import CHROMIUM, require_playwright

pytestmark = pytest.mark.slow
PHONE = {"width": 375, "height": 667}
DESKTOP = {"width": 600, "height": 900}
READY = sample_content().ready


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = require_playwright()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-background-networking"]
        )
        yield browser
        browser.close()


def _open(browser, html: str, viewport: dict[str, int]):
    page = browser.new_page(viewport=viewport)
    requests: list[str] = []
    page.route("**/*", lambda route: (requests.append(route.request.url), route.abort()))
    page.set_content(html, wait_until="load")
    return page, requests


def _layout(page) -> dict[str, float]:
    return page.evaluate(
        """() => {
            const note = document.querySelector('.for-you');
            const box = note.getBoundingClientRect();
            return {scrollWidth: document.scrollingElement.scrollWidth, innerWidth: window.innerWidth,
                    innerHeight: window.innerHeight, noteTop: box.top, noteBottom: box.bottom,
                    noteText: note.innerText};
        }"""
    )


CASES = [(READY[0], a.id) for a in sample_content().audiences] + [(READY[1], "investors")]


@pytest.mark.parametrize(("briefing", "audience"), CASES, ids=lambda v: getattr(v, "slug", v))
def test_email_fits_a_phone_and_shows_the_own_note_first(browser, tmp_path: Path, briefing, audience: str) -> None:
    email = render(briefing, audiences=[audience]).emails[audience]
    note = briefing.note_for(audience)
    for viewport in (PHONE, DESKTOP):
        page, requests = _open(browser, email.html, viewport)
        layout = _layout(page)
        assert layout["scrollWidth"] <= layout["innerWidth"], layout
        assert 0 < layout["noteTop"] < layout["innerHeight"], layout
        assert note.meaning[:12] in layout["noteText"]
        assert requests == []  # no web fonts, no remote images, nothing fetched
        shot = tmp_path / f"{audience}-{viewport['width']}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        if os.environ.get("BRIEFING_UPDATE_SCREENSHOTS") == "1" and viewport is PHONE and briefing is READY[0]:
            target = REPO / "docs" / "screenshots" / f"email-{audience}-375.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(target), full_page=False)
        page.close()


@pytest.mark.parametrize("make", [hostile_briefing, huge_briefing], ids=["hostile", "huge"])
def test_hostile_and_shortened_emails_do_not_scroll_sideways(browser, make) -> None:
    briefing = make(READY[0])
    email = render(briefing, audiences=["neta"]).emails["neta"]
    page, requests = _open(browser, email.html, PHONE)
    layout = _layout(page)
    assert layout["scrollWidth"] <= layout["innerWidth"], layout
    if make is huge_briefing:  # the hostile verdict/judgement is a 1,500-character token: the note comes later
        assert 0 < layout["noteTop"] < layout["innerHeight"]
    assert page.evaluate("() => typeof window.__injected") == "undefined"
    assert page.locator("script").count() == 0 and requests == []
    page.close()


def test_dark_mode_styles_apply(browser) -> None:
    email = render(READY[0], audiences=["atou"]).emails["atou"]
    colours = {}
    for scheme in ("light", "dark"):
        page = browser.new_page(viewport=PHONE, color_scheme=scheme)
        page.set_content(email.html)
        colours[scheme] = page.evaluate(
            """() => [getComputedStyle(document.querySelector('.card')).backgroundColor,
                      getComputedStyle(document.querySelector('.card .verdict div')).color]"""
        )
        page.close()
    assert colours["light"][0] == "rgb(255, 255, 255)"
    assert colours["dark"][0] != colours["light"][0] and colours["dark"][1] != colours["light"][1]

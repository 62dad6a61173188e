"""The preview shows machine drafts highlighted: a real `briefing preview` on loopback, headless Chromium.

`BRIEFING_UPDATE_SCREENSHOTS=1` also writes docs/screenshots/preview-machine-drafts-email.png.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from flows.core.briefing_format import parse_briefing_file
from flows.core.settings import load_settings
from flows.core.store import Store
from flows.draft import draft_briefing
from tests.llm_support import ChatServer, write_article_stub
from tests.preview_support import briefing_exe, free_port, make_project, project_env
from tests.test_preview_browser import CHROMIUM, _wait_until_up

pytestmark = pytest.mark.slow
SLUG = "horizon-study"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def drafted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with one stub drafted by the loopback model (every part marked, none reviewed)."""
    root = make_project(tmp_path_factory.mktemp("draft-preview"))
    write_article_stub(root / "content", SLUG)
    with ChatServer() as chat:
        settings = load_settings(
            content_dir=root / "content", output_dir=root / "outputs", llm_url=chat.url, llm_model="loopback-model"
        )
        store = Store(settings.store_url)
        assert draft_briefing(settings, store, SLUG).ok
        store.close()
    return root


@pytest.fixture(scope="module")
def preview(drafted: Path) -> Iterator[str]:
    port = free_port()
    log = (drafted / "preview.log").open("w")
    proc = subprocess.Popen(
        [briefing_exe(), "preview", "--port", str(port)],
        cwd=drafted,
        env=project_env(drafted),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, proc, drafted / "preview.log")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-background-networking"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def test_the_list_flags_briefings_with_machine_drafts(preview: str, drafted: Path, page: Page) -> None:
    briefing, _, _ = parse_briefing_file(drafted / "content" / "briefings" / f"{SLUG}.md")
    assert briefing is not None
    page.goto(preview + "/")
    badge = page.locator(f'tr[data-slug="{SLUG}"] a.badge.machine')
    expect(badge).to_have_text(f"{len(briefing.machine_drafts)} machine drafts to review")
    expect(page.locator('tr[data-slug="github-commit-flood"] a.badge.machine')).to_have_count(0)


def test_the_briefing_page_highlights_every_machine_draft(preview: str, drafted: Path, page: Page) -> None:
    briefing, _, _ = parse_briefing_file(drafted / "content" / "briefings" / f"{SLUG}.md")
    assert briefing is not None
    page.goto(f"{preview}/b/{SLUG}")
    parts = page.locator("#machine-drafts .machine-draft")
    expect(parts).to_have_count(len(briefing.machine_drafts))
    verdict = page.locator('#machine-drafts .machine-draft[data-part="verdict"]')
    expect(verdict).to_contain_text("machine draft · verdict · loopback-model")
    expect(verdict.locator(".draft-text")).to_have_text(briefing.verdict)
    block = briefing.aligned[1]
    translated = page.locator(f'#machine-drafts .machine-draft[data-part="translation.{block.id}"]')
    expect(translated.locator(".draft-source")).to_have_text(block.source)
    expect(translated.locator(".draft-text")).to_have_text(block.translation)
    background = verdict.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(255, 243, 176)", background
    # inside each email: the drafted verdict and this audience's own drafted note are marked
    note = briefing.note_for("neta")
    assert note is not None
    frame = page.frame_locator("#frame-neta")
    expect(frame.locator("h1.machine-draft-hl")).to_have_text(briefing.verdict)
    expect(frame.locator(".machine-draft-hl", has_text=note.meaning).first).to_be_visible()
    outline = frame.locator("h1.machine-draft-hl").evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline == "dashed"
    section = page.locator("section#neta")
    section.scroll_into_view_if_needed()
    image = section.screenshot()
    assert len(image) > 10_000
    if os.environ.get("BRIEFING_UPDATE_SCREENSHOTS") == "1":
        (REPO / "docs" / "screenshots" / "preview-machine-drafts-email.png").write_bytes(image)


def test_a_reviewed_briefing_has_no_highlight(preview: str, page: Page) -> None:
    page.goto(f"{preview}/b/github-commit-flood")
    expect(page.locator("#machine-drafts")).to_have_count(0)
    frame = page.frame_locator("#frame-atou")
    expect(frame.locator("h1")).to_be_visible()
    expect(frame.locator(".machine-draft-hl")).to_have_count(0)

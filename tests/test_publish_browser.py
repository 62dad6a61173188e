"""The HTML archive in headless Chromium with JavaScript off: every view is reachable by its tab."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.publish_support import publish, sample_content
from tests.tool_support import CHROMIUM, require_playwright

pytestmark = pytest.mark.slow
VIEWS = {
    "briefing": "阅读简报",
    "bilingual": "双语对照",
    "translation": "完整翻译",
    "original": "原文",
    "discussion": "讨论归档",
}


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def archive_server(settings, store) -> Iterator[str]:
    publish(settings, store)
    handler = functools.partial(_QuietHandler, directory=str(settings.archive_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def browser_page():
    sync_api = require_playwright()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-background-networking"]
        )
        context = browser.new_context(java_script_enabled=False, viewport={"width": 1000, "height": 900})
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def _visible_views(page) -> set[str]:
    return {anchor for anchor in VIEWS if page.locator(f"section#{anchor}").is_visible()}


def test_each_view_is_reachable_by_its_tab_without_javascript(settings, archive_server, browser_page) -> None:
    briefing = next(b for b in sample_content(settings).ready if b.footnotes and b.discussion)
    page = browser_page
    page.goto(f"{archive_server}/{briefing.date:%Y/%m}/{briefing.slug}.html")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("h1").inner_text() == briefing.verdict
    assert page.get_by_text("阿头学 · 讨论题").is_visible()
    assert page.locator("a.original").get_attribute("href") == briefing.source.url
    assert _visible_views(page) == {"briefing"}
    assert page.get_by_text(briefing.core_points[0].lead).is_visible()

    expected = {
        "bilingual": briefing.body[0].source,
        "translation": briefing.body[0].translation,
        "original": briefing.body[0].source,
        "discussion": briefing.discussion[0].text,
        "briefing": briefing.notes[0].meaning,
    }
    for anchor, text in expected.items():
        page.locator(".tabs").get_by_role("link", name=VIEWS[anchor], exact=True).click()
        assert page.url.endswith(f"#{anchor}")
        assert _visible_views(page) == {anchor}, anchor
        assert page.locator(f"section#{anchor}").get_by_text(text, exact=False).first.is_visible(), anchor


def test_footnote_markers_lead_to_numbered_footnotes_in_the_same_view(settings, archive_server, browser_page) -> None:
    briefing = next(b for b in sample_content(settings).ready if b.footnotes)
    page = browser_page
    page.goto(f"{archive_server}/{briefing.date:%Y/%m}/{briefing.slug}.html#original")
    assert _visible_views(page) == {"original"}
    page.locator("section#original sup.fnref a").first.click()
    assert page.url.endswith("#original-fn-1")
    assert _visible_views(page) == {"original"}
    first = briefing.footnotes[0]
    # the label once (no "1. 1."), then the note, then a link back to the marker
    assert page.locator("#original-fn-1").inner_text().startswith(f"{first.footnote_label} {first.source[:30]}")
    assert page.locator("#original-fn-1 li, #original-fn-1 ol").count() == 0
    page.locator("#original-fn-1 a.fnback").first.click()
    assert page.url.endswith("#original-fnref-1-1")
    assert _visible_views(page) == {"original"}


def test_back_to_list_and_a_narrow_screen(settings, archive_server, browser_page) -> None:
    content = sample_content(settings)
    page = browser_page
    page.set_viewport_size({"width": 375, "height": 800})
    newest = content.ready[0]
    page.goto(f"{archive_server}/{newest.date:%Y/%m}/{newest.slug}.html")
    tabs = page.locator(".tabs").bounding_box()
    assert tabs is not None and tabs["width"] <= 375
    assert page.locator("h1").bounding_box()["width"] <= 375
    page.get_by_role("link", name="← 返回列表").click()
    assert page.url.endswith("/index.html")
    titles = page.locator(".entries h2 a").all_inner_texts()
    assert titles == [b.verdict for b in content.ready]

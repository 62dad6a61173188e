"""`briefing preview` as a real subprocess on loopback, driven by headless Chromium (Playwright).

One server, one SMTP sink (aiosmtpd) and one browser for the module; each test opens its own page.
"""

from __future__ import annotations

import email
import email.policy
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from flows.core.content import load_content
from flows.core.models import Content
from flows.core.tokens import make_token
from tests.preview_support import briefing_exe, free_port, make_project, project_env
from tests.tool_support import CHROMIUM, require_playwright

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow
sync_api = require_playwright(module_level=True)
expect = sync_api.expect

SECRET = "preview-test-secret-0123456789-abcdefghijkl"


class Sink:
    """aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        self.messages.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smtp: tuple[Sink, int]) -> Iterator[tuple[str, Path]]:
    root = make_project(tmp_path_factory.mktemp("preview"))
    port = free_port()
    env = project_env(
        root, BRIEFING_SMTP_URL=f"smtp://127.0.0.1:{smtp[1]}", BRIEFING_SECRET=SECRET, BRIEFING_SMTP_TLS="none"
    )
    log = (root / "preview.log").open("w")
    proc = subprocess.Popen(
        [briefing_exe(), "preview", "--port", str(port)], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, proc, root / "preview.log")
        yield base, root
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_until_up(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"briefing preview exited with {proc.returncode}: {log.read_text()}")
        try:
            if httpx.get(base + "/", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail(f"briefing preview did not answer within 60 s: {log.read_text()}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_api.sync_playwright() as playwright:
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


def content_of(root: Path) -> Content:
    return load_content(root / "content").content


def test_list_shows_every_sample_briefing(server: tuple[str, Path], page: Page) -> None:
    base, root = server
    content = content_of(root)
    page.goto(base + "/")
    rows = page.locator("tr.briefing")
    expect(rows).to_have_count(len(content.briefings))
    assert [rows.nth(i).get_attribute("data-slug") for i in range(rows.count())] == [b.slug for b in content.briefings]
    for briefing in content.briefings:
        row = page.locator(f'tr[data-slug="{briefing.slug}"]')
        expect(row.locator(".badge").first).to_have_text(briefing.status)
        expect(row.locator(".verdict")).to_have_text(briefing.verdict)


def test_each_audience_frame_shows_its_own_note(server: tuple[str, Path], page: Page) -> None:
    base, root = server
    content = content_of(root)
    for briefing in content.briefings:
        page.goto(f"{base}/b/{briefing.slug}")
        for audience in content.audiences:
            note = briefing.note_for(audience.id)
            assert note is not None
            section = page.locator(f"section#{audience.id}")
            expect(section.locator(".subject")).to_have_text(f"{audience.subject_prefix}{briefing.verdict}")
            expect(section.locator(".size")).to_contain_text("bytes of 100,000")
            body = page.frame_locator(f"#frame-{audience.id}").locator("body")
            expect(body).to_contain_text(note.meaning)
            expect(body).to_contain_text(note.next_step)
            expect(section.locator(".text-part")).to_contain_text(note.meaning[:20])
    # an audience never sees another audience's note unless it asks for them (show_other_notes)
    briefing = content.briefings[0]
    atou, neta = briefing.note_for("atou"), briefing.note_for("neta")
    assert atou and neta
    page.goto(f"{base}/b/{briefing.slug}")
    expect(page.frame_locator("#frame-atou").locator("body")).not_to_contain_text(neta.meaning)


def test_phone_width_toggle_changes_the_frame(server: tuple[str, Path], page: Page) -> None:
    base, _ = server
    page.goto(f"{base}/b/github-commit-flood")
    frame = page.locator("#frame-neta")
    assert frame.evaluate("f => f.clientWidth") == 600
    page.locator('[data-frame="frame-neta"][data-width="375"]').click()
    expect(frame).to_have_css("width", "375px")
    assert frame.evaluate("f => f.clientWidth") == 375
    assert page.locator("#frame-atou").evaluate("f => f.clientWidth") == 600, "only the clicked frame changes"
    assert "?w=" not in page.url, "the toggle works in place with JavaScript"
    page.locator('[data-frame="frame-neta"][data-width="600"]').click()
    expect(frame).to_have_css("width", "600px")
    page.goto(f"{base}/b/github-commit-flood?w=375")  # the no-JavaScript fallback link
    assert page.locator("#frame-atou").evaluate("f => f.clientWidth") == 375


def test_archive_page_is_shown(server: tuple[str, Path], page: Page) -> None:
    base, root = server
    briefing = next(b for b in content_of(root).briefings if b.slug == "github-commit-flood")
    page.goto(f"{base}/archive/{briefing.slug}")
    expect(page.locator("article.archive")).to_contain_text(briefing.verdict)
    expect(page.locator("article.archive")).to_contain_text(briefing.core_points[0].lead)


def test_send_test_button_delivers_one_marked_message(
    server: tuple[str, Path], smtp: tuple[Sink, int], page: Page
) -> None:
    base, root = server
    sink, _ = smtp
    before = len(sink.messages)
    briefing = next(b for b in content_of(root).briefings if b.slug == "github-commit-flood")
    page.goto(f"{base}/b/{briefing.slug}")
    section = page.locator("section#neta")
    section.locator('input[name="address"]').fill("editor@example.org")
    section.get_by_role("button", name="Send test").click()
    expect(page.locator("#send-result")).to_contain_text("editor@example.org")
    assert len(sink.messages) == before + 1
    recipients, raw = sink.messages[-1]
    assert recipients == ["editor@example.org"]
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert message["Subject"].startswith("[TEST] 【阿头学 · Neta】")
    assert message["X-Briefing-Test"] == "yes"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = message.get_body(("plain",)).get_content()
    note = briefing.note_for("neta")
    assert note and note.meaning[:20] in text
    status = subprocess.run(
        [briefing_exe(), "--json", "status"], cwd=root, env=project_env(root), capture_output=True, text=True
    )
    assert '"audiences": {}' in status.stdout, "a test send must not touch the ledger of real recipients"


def test_send_test_refuses_a_bad_address(server: tuple[str, Path], smtp: tuple[Sink, int], page: Page) -> None:
    base, _ = server
    before = len(smtp[0].messages)
    response = httpx.post(
        f"{base}/send-test", data={"slug": "github-commit-flood", "audience": "atou", "address": "not an address"}
    )
    assert response.status_code == 303
    page.goto(base + response.headers["location"])
    expect(page.locator("#send-result")).to_contain_text("invalid test address")
    assert len(smtp[0].messages) == before


def test_unsubscribe_endpoints(server: tuple[str, Path]) -> None:
    base, root = server
    token = make_token(SECRET, "uota", "Reader@Example.org")
    confirm = httpx.get(f"{base}/unsubscribe", params={"t": token})
    assert confirm.status_code == 200 and "<form" in confirm.text and "reader@example.org" in confirm.text
    forged = httpx.post(f"{base}/unsubscribe", params={"t": token[:-2] + "xx"}, content=b"List-Unsubscribe=One-Click")
    assert forged.status_code == 400
    one_click = httpx.post(
        f"{base}/unsubscribe",
        params={"t": token},
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200
    from flows.core.store import Store

    store = Store(f"sqlite:///{root / 'outputs' / 'store.db'}")
    try:
        assert store.unsubscribed("uota") == {"reader@example.org"}
        assert store.unsubscribed("atou") == set()
    finally:
        store.close()


def test_editing_content_reloads_the_page(server: tuple[str, Path], page: Page) -> None:
    base, root = server
    page.goto(base + "/")
    expect(page.locator("#live")).to_have_text("live reload: on")
    page.evaluate("window.__before_edit = true")
    path = root / "content" / "briefings" / "github-commit-flood.md"
    original = path.read_text("utf-8")
    old = content_of(root).briefings[1].verdict
    assert old in original
    new = "改过的一句话判断：预览会自动刷新。"
    path.write_text(original.replace(old, new), "utf-8")
    row = page.locator('tr[data-slug="github-commit-flood"] .verdict')
    expect(row).to_have_text(new, timeout=20_000)
    assert page.evaluate("window.__before_edit") is None, "the browser reloaded the page"


def test_hostile_content_runs_no_script_in_the_browser(server: tuple[str, Path], page: Page) -> None:
    """Issue 18's probe in a real browser: a verdict and a note with markup reach the preview page, the sandboxed
    email frames and the email opened alone as text, and nothing in them runs (no dialog, no marker set, no
    request for the image), while the page's own scripts still do."""
    base, root = server
    path = root / "content" / "briefings" / "metr-task-horizons.md"
    original = path.read_text("utf-8")
    briefing = next(b for b in content_of(root).briefings if b.slug == "metr-task-horizons")
    payload = "<img src=/x-probe onerror=document.body.dataset.xss=1;alert(1)><script>alert(2)</script>"
    meaning = briefing.note_for("atou").meaning  # type: ignore[union-attr]
    hostile = original.replace(briefing.verdict, payload).replace(meaning, f"\" onmouseover='alert(3)' {payload}")
    dialogs: list[str] = []
    requests: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on("request", lambda request: requests.append(request.url))
    path.write_text(hostile, "utf-8")
    try:
        page.goto(f"{base}/b/{briefing.slug}")
        expect(page.locator("h1")).to_have_text(payload, timeout=20_000)
        expect(page.locator("#live")).to_have_text("live reload: on")  # the page's own script runs
        for audience in ("atou", "investors"):
            frame = page.frame_locator(f"#frame-{audience}")
            expect(frame.locator("h1")).to_have_text(payload)
            expect(frame.locator("body[data-xss]")).to_have_count(0)
        page.goto(f"{base}/email/{briefing.slug}/atou.html")  # opened alone
        expect(page.locator("h1")).to_have_text(payload)
        page.locator("h1").hover()
        assert page.locator("body[data-xss]").count() == 0
        assert page.evaluate("typeof window.alert") == "function"  # the checks above ran in a live page
    finally:
        path.write_text(original, "utf-8")
    assert dialogs == [] and not [url for url in requests if "x-probe" in url], (dialogs, requests)

"""Moderation and the suppression list in the preview, as an editor uses them: a reply sent to a briefing email
is collected from Dovecot, shows up as pending, is approved with the button in headless Chromium and appears in
the archive's discussion view after `briefing publish`; a bounced address is lifted with its button."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from collect_support import dsn, reply_to, send_briefing
from mailbox_support import Dovecot, SmtpToMailbox
from playwright.sync_api import expect, sync_playwright
from typer.testing import CliRunner

from flows.app.cli import app
from flows.app.preview import create_app
from flows.collect import collect_mailbox
from flows.core.settings import Settings
from flows.core.store import Store
from flows.core.store.discussion import APPROVED, list_entries
from flows.core.store.suppressions import list_suppressions
from tests.asgi_support import serve_asgi

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def mailbox(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Dovecot, SmtpToMailbox]]:
    server = Dovecot().start()
    monkeypatch.setenv("BRIEFING_IMAP_URL", server.url())
    settings.imap_url = server.url()
    try:
        with SmtpToMailbox(server) as smtp:
            yield server, smtp
    finally:
        server.remove()


def test_editor_approves_a_reply_and_lifts_a_suppression_in_the_preview(
    settings: Settings, store: Store, mailbox: tuple[Dovecot, SmtpToMailbox]
) -> None:
    _server, smtp = mailbox
    sent = send_briefing(settings, store)
    original = next(s for s in sent if s.audience == "neta")
    text = "选题上我更关心维护者的评审负担，这一点值得单独写一期。"
    smtp.send(reply_to(original, sender="reader@example.net", name="Mei Chen", text=text), "r@example.net", "b@x")
    bounced = next(s for s in sent if s.audience == "atou")
    smtp.send(dsn(bounced, status="5.1.1"), "", "briefing@example.org")
    collect_mailbox(settings, store)
    [entry] = list_entries(store)

    with serve_asgi(create_app(settings, store)) as http:
        page_html = http.get("/discussion").text
        assert f'id="entry-{entry.id}" data-status="pending"' in page_html and text in page_html
        refused = http.post(f"/discussion/{entry.id}/approve", headers={"Origin": "https://evil.example"})
        assert refused.status_code == 403 and list_entries(store)[0].status == "pending"

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-background-networking"]
            )
            try:
                page = browser.new_page()
                page.goto(f"{http.base_url}/discussion")
                card = page.locator(f"#entry-{entry.id}")
                expect(card).to_contain_text(text)
                expect(card).to_contain_text("shown as “M. C.”")
                card.get_by_role("button", name="Approve").click()
                expect(page.locator(f"#entry-{entry.id}")).to_have_attribute("data-status", "approved")
                expect(page.locator(".notice.ok")).to_contain_text("approved")

                page.goto(f"{http.base_url}/suppressions")
                row = page.locator(f'tr[data-email="{bounced.recipient}"]')
                expect(row).to_contain_text("hard bounce 5.1.1")
                row.get_by_role("button", name="Lift").click()
                expect(page.locator(f'tr[data-email="{bounced.recipient}"]')).to_have_class("lifted")
            finally:
                browser.close()

    assert list_entries(store, status=None)[0].status == APPROVED
    assert list_suppressions(store) == []
    result = CliRunner().invoke(app, ["publish"])
    assert result.exit_code == 0, result.output
    page = next(settings.archive_path.rglob(f"{original.slug}.html")).read_text()
    assert text in page[page.index('id="discussion"') :]
    assert "M. C." in page

"""Unsubscribe: RFC 8058 one-click POST, GET confirm page, the CLI, and the effect on the next send."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpx import Client
from starlette.applications import Starlette
from typer.testing import CliRunner

from flows.app.cli import app
from flows.core.settings import load_settings
from flows.core.store import Store, ledger
from flows.core.store.schema import unsubscribes
from flows.core.tokens import make_token
from flows.deliver import deliver_briefing
from tests.asgi_support import serve_asgi
from tests.delivery_support import load_sample, render_sample

SECRET = "unsubscribe-test-secret-0123456789abcdef"


@pytest.fixture
def client(project: Path, store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    from flows.deliver.unsubscribe import unsubscribe_routes

    monkeypatch.setenv("BRIEFING_SECRET", SECRET)
    settings = load_settings()
    with serve_asgi(Starlette(routes=unsubscribe_routes(settings, store, {"atou": "ATou"}))) as http:
        yield http


def _recorded(store: Store) -> list[tuple[str, str, str]]:
    with store.engine.connect() as conn:
        return [(r.audience, r.email, r.method) for r in conn.execute(unsubscribes.select())]


def test_get_shows_a_confirm_button_and_records_nothing(client: Client, store: Store) -> None:
    token = make_token(SECRET, "atou", "atou@example.org")
    page = client.get("/unsubscribe", params={"t": token})
    assert page.status_code == 200
    assert '<form method="post"' in page.text and "<button" in page.text
    assert "atou@example.org" in page.text and "ATou" in page.text
    assert _recorded(store) == []


def test_one_click_post_records_the_unsubscribe(client: Client, store: Store) -> None:
    token = make_token(SECRET, "atou", "Atou@Example.org")
    reply = client.post(
        f"/unsubscribe?t={token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert reply.status_code == 200
    assert _recorded(store) == [("atou", "atou@example.org", "one-click")]
    again = client.post(f"/unsubscribe?t={token}", files={"List-Unsubscribe": (None, "One-Click")})
    assert again.status_code == 200 and len(_recorded(store)) == 1


def test_multipart_one_click_and_confirm_form(client: Client, store: Store) -> None:
    one = make_token(SECRET, "atou", "one@example.org")
    two = make_token(SECRET, "neta", "two@example.org")
    assert client.post(f"/unsubscribe?t={one}", files={"List-Unsubscribe": (None, "One-Click")}).status_code == 200
    confirmed = client.post(f"/unsubscribe?t={two}", data={"confirm": "1"})
    assert confirmed.status_code == 200 and "two@example.org" in confirmed.text
    assert sorted(_recorded(store)) == [("atou", "one@example.org", "one-click"), ("neta", "two@example.org", "web")]


def test_forged_token_is_refused_and_changes_nothing(client: Client, store: Store) -> None:
    token_a = make_token(SECRET, "atou", "a@example.org")
    token_b = make_token(SECRET, "atou", "b@example.org")
    forged = token_b.split(".")[0] + "." + token_a.split(".")[1]  # B's address under A's signature
    for bad in (forged, make_token("wrong-secret", "atou", "a@example.org"), "garbage", ""):
        assert client.get("/unsubscribe", params={"t": bad}).status_code == 400
        assert client.post("/unsubscribe", params={"t": bad}, content=b"List-Unsubscribe=One-Click").status_code == 400
    assert _recorded(store) == []


def test_cli_unsubscribe_then_next_send_skips_and_records(project: Path, store: Store, monkeypatch) -> None:
    monkeypatch.setenv("BRIEFING_SECRET", SECRET)
    settings = load_settings()
    content = load_sample(project)
    rendered = render_sample(settings, store, content)
    gone = content.audience("atou").subscribers[0].email
    link = f"{settings.base_url}/unsubscribe?t={make_token(SECRET, 'atou', gone)}"
    runner = CliRunner()
    result = runner.invoke(app, ["--json", "unsubscribe", link])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["newly"] is True
    assert _recorded(store) == [("atou", gone.lower(), "cli")]
    bad = runner.invoke(app, ["unsubscribe", "not-a-token"])
    assert bad.exit_code == 8

    report = deliver_briefing(rendered, content, store, settings)
    assert report.complete
    outbox = settings.outbox_path / rendered.briefing.slug
    assert len(list((outbox / "atou").glob("*.eml"))) == len(content.audience("atou").subscribers) - 1
    skipped = ledger.rows_in_state(store, ledger.SKIPPED, rendered.briefing.slug)
    assert [(r.audience, r.recipient, r.last_reply) for r in skipped] == [("atou", gone, "unsubscribed")]
    assert len(list((outbox / "neta").glob("*.eml"))) == len(content.audience("neta").subscribers)


def test_unsubscribe_while_rows_are_queued_skips_them(project: Path, store: Store, monkeypatch) -> None:
    from flows.deliver.unsubscribe import unsubscribe_with_token

    monkeypatch.setenv("BRIEFING_SECRET", SECRET)
    settings = load_settings()
    rendered = render_sample(settings, store, load_sample(project))
    ledger.enqueue(
        store,
        rendered.briefing.slug,
        "atou",
        rendered.emails["atou"].content_hash,
        [ledger.Entry("q@example.org", "<m@x>")],
    )
    done = unsubscribe_with_token(settings, store, make_token(SECRET, "atou", "q@example.org"), "web")
    assert done.skipped_rows == 1
    (row,) = ledger.rows_in_state(store, ledger.SKIPPED)
    assert row.recipient == "q@example.org" and row.last_reply == "unsubscribed (web)"

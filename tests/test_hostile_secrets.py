"""Unsubscribe links cannot be forged: no empty or short key for real sending, an empty key never verifies, and
key rotation keeps old links working for a grace period while the new key signs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from starlette.applications import Starlette
from typer.testing import CliRunner

from flows.app.cli import app
from flows.core.errors import SettingsError, TokenError
from flows.core.settings import load_settings
from flows.core.store import Store
from flows.core.store.schema import unsubscribes
from flows.core.tokens import make_token, verify_token
from flows.deliver.messages import unsubscribe_url
from flows.deliver.unsubscribe import unsubscribe_routes, unsubscribe_with_token
from tests.asgi_support import serve_asgi

HOWTO = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
OLD_KEY = "old-key-0123456789-0123456789-0123456789"
NEW_KEY = "new-key-abcdefghij-abcdefghij-abcdefghij"


def forged_with_empty_key(audience: str, email: str) -> str:
    payload = base64.urlsafe_b64encode(json.dumps({"a": audience, "e": email}, separators=(",", ":")).encode())
    payload_text = payload.rstrip(b"=").decode()
    digest = hmac.new(b"", b"unsubscribe:" + payload_text.encode(), hashlib.sha256).digest()
    return f"{payload_text}.{base64.urlsafe_b64encode(digest).rstrip(b'=').decode()}"


def recorded(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return [(r.audience, r.email) for r in conn.execute(unsubscribes.select())]


@pytest.mark.parametrize("secret", ["", "x" * 31, "dev-only-secret-change-me"])
def test_real_sending_refuses_an_empty_short_or_default_secret(project: Path, secret: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(smtp_url="smtp://127.0.0.1:2525", secret=secret)
    assert "BRIEFING_SECRET" in str(caught.value) and HOWTO in str(caught.value)
    assert load_settings(smtp_url="smtp://127.0.0.1:2525", secret="y" * 32).secret == "y" * 32


def test_send_with_an_empty_secret_exits_2_naming_the_fix(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIEFING_SMTP_URL", "smtp://127.0.0.1:9")
    monkeypatch.setenv("BRIEFING_SECRET", "")
    result = CliRunner().invoke(app, ["send"])
    assert result.exit_code == 2, result.output
    assert "BRIEFING_SECRET" in result.output and "token_urlsafe(32)" in result.output


def test_a_token_forged_with_the_empty_key_never_verifies(project: Path, store: Store) -> None:
    forged = forged_with_empty_key("atou", "atou@example.org")
    for keys in ("", [""], ["", ""], [NEW_KEY, ""]):
        with pytest.raises(TokenError):
            verify_token(keys, forged)
    with pytest.raises(ValueError, match="empty key"):
        make_token("", "atou", "atou@example.org")
    settings = load_settings(secret=NEW_KEY)
    with serve_asgi(Starlette(routes=unsubscribe_routes(settings, store))) as http:
        refused = http.post(f"/unsubscribe?t={forged}", content=b"List-Unsubscribe=One-Click")
    assert refused.status_code == 400
    assert recorded(store) == []


def test_rotation_old_links_verify_during_the_grace_period_and_new_ones_use_the_new_key(
    project: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_link = unsubscribe_url(load_settings(secret=OLD_KEY), "atou", "atou@example.org")
    monkeypatch.setenv("BRIEFING_SECRET", NEW_KEY)
    monkeypatch.setenv("BRIEFING_SECRET_PREVIOUS", f"{OLD_KEY}, another-retired-key-0123456789-0123")
    rotated = load_settings()
    assert rotated.secret_previous == [OLD_KEY, "another-retired-key-0123456789-0123"]
    new_link = unsubscribe_url(rotated, "neta", "neta@example.org")
    new_token = new_link.split("t=", 1)[1]
    assert verify_token(NEW_KEY, new_token) == ("neta", "neta@example.org")  # signed with the new key alone
    with pytest.raises(TokenError):
        verify_token(OLD_KEY, new_token)
    done = CliRunner().invoke(app, ["--json", "unsubscribe", old_link])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["email"] == "atou@example.org"

    monkeypatch.delenv("BRIEFING_SECRET_PREVIOUS")  # the grace period is over
    expired = CliRunner().invoke(app, ["unsubscribe", old_link])
    assert expired.exit_code == 8 and "signature does not match" in expired.output
    assert unsubscribe_with_token(load_settings(), store, new_link, "web").email == "neta@example.org"

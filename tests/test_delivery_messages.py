"""Messages: structure, every header, exact decoding, prebuilt encoding, tokens, header injection, DKIM."""

from __future__ import annotations

import base64
import email
import random
import re
from email import policy
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from flows.core.errors import DeliveryError, TokenError
from flows.core.models import Subscriber
from flows.core.settings import load_settings
from flows.core.tokens import make_token, verify_token
from flows.deliver.messages import Base64Body, build_message, message_id, prepare_message
from flows.render.email import UNSUBSCRIBE_PLACEHOLDER
from tests.delivery_support import load_sample, render_sample

LIST_UNSUBSCRIBE = re.compile(r"^<(https?://[^>]+/unsubscribe\?t=([^>]+))>, <(mailto:[^>]+)>$")


@pytest.fixture
def rendered(settings, store, project: Path):
    content = load_sample(project)
    return render_sample(settings, store, content), content


def _parse(data: bytes):
    return email.message_from_bytes(data, policy=policy.default)


def test_message_structure_and_every_header(rendered, project: Path) -> None:
    rendered_briefing, content = rendered
    settings = load_settings(reply_to="editor@example.org", from_name="阿头学 Briefing")
    mail = rendered_briefing.emails["investors"]
    audience = content.audience("investors")
    envelope = build_message(
        mail, Subscriber(email="lin.wei@example.org", name="林薇"), settings, audience_name=audience.name
    )
    msg = _parse(envelope.data)

    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p["Content-Transfer-Encoding"] == "base64" for p in parts)
    assert msg["Subject"] == mail.subject and any(ord(c) > 127 for c in mail.subject)
    assert b"Subject: =?utf-8?" in envelope.data  # RFC 2047 on the wire, not raw UTF-8
    assert envelope.data.isascii()
    assert msg["From"].addresses[0].display_name == "阿头学 Briefing"
    assert msg["From"].addresses[0].addr_spec == settings.from_address
    assert msg["To"].addresses[0].display_name == "林薇"
    assert msg["To"].addresses[0].addr_spec == "lin.wei@example.org"
    assert msg["Reply-To"].addresses[0].addr_spec == "editor@example.org"
    assert msg["Date"].datetime is not None
    assert msg["Message-ID"] == envelope.message_id
    assert msg["Message-ID"].endswith("@example.org>")
    assert msg["List-Id"] == f"{audience.name} <investors.briefing.example.org>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    match = LIST_UNSUBSCRIBE.match(str(msg["List-Unsubscribe"]).replace("\r\n", "").replace("\n", ""))
    assert match, msg["List-Unsubscribe"]
    url, token, mailto = match.groups()
    assert url.startswith(settings.base_url)
    assert verify_token(settings.secret, token) == ("investors", "lin.wei@example.org")
    assert mailto.startswith("mailto:unsubscribe@example.org")

    # The bodies decode to exactly the rendered text with this recipient's link, visible in both parts.
    assert msg.get_body(("plain",)).get_content() == mail.text.replace(UNSUBSCRIBE_PLACEHOLDER, url)
    assert msg.get_body(("html",)).get_content() == mail.html.replace(UNSUBSCRIBE_PLACEHOLDER, url)
    for line in envelope.data.split(b"\r\n"):
        assert len(line) <= 998
    assert b"\n" not in envelope.data.replace(b"\r\n", b"")


def test_prebuilt_message_matches_per_recipient_and_ids_are_stable(rendered) -> None:
    rendered_briefing, _ = rendered
    settings = load_settings()
    mail = rendered_briefing.emails["atou"]
    prepared = prepare_message(mail, settings, audience_name="ATou")
    first = prepared.for_recipient(Subscriber(email="a@example.org", name="Ann O'Neil, Jr."))
    second = prepared.for_recipient(Subscriber(email="b@example.org", name=""))
    again = prepared.for_recipient(Subscriber(email="a@example.org", name="Ann O'Neil, Jr."))
    assert first.message_id == again.message_id != second.message_id
    assert first.message_id == message_id(mail.slug, "atou", "a@example.org", "example.org", mail.content_hash)
    assert message_id(mail.slug, "atou", "a@example.org", "example.org", "other-hash") != first.message_id
    assert message_id(mail.slug, "neta", "a@example.org", "example.org", mail.content_hash) != first.message_id
    a, b = _parse(first.data), _parse(second.data)
    assert a["To"].addresses[0].display_name == "Ann O'Neil, Jr."
    assert str(b["To"]) == "b@example.org"
    token_a = LIST_UNSUBSCRIBE.match(str(a["List-Unsubscribe"]).replace("\n", "").replace("\r", "")).group(2)
    assert verify_token(settings.secret, token_a)[1] == "a@example.org"
    assert "a@example.org" not in b.get_body(("html",)).get_content()
    assert token_a not in b.get_body(("plain",)).get_content()


@pytest.mark.parametrize("seed", range(6))
def test_base64_body_equals_whole_body_encoding(seed: int) -> None:
    rng = random.Random(seed)
    marker = "@@LINK@@"
    chunks = ["".join(rng.choice("ab 中文\n<>&") for _ in range(rng.randint(0, 400))) for _ in range(3)]
    body = chunks[0] + marker + chunks[1] + (marker if seed % 2 else "") + chunks[2]
    link = "https://example.org/u?t=" + "x" * rng.randint(1, 90)
    encoded = Base64Body(body, marker).encode(link.encode())
    expected = base64.encodebytes(body.replace(marker, link).encode()).replace(b"\n", b"\r\n")
    assert encoded == expected


def test_test_message_is_marked_and_has_its_own_message_id(rendered) -> None:
    rendered_briefing, _ = rendered
    settings = load_settings()
    mail = rendered_briefing.emails["neta"]
    real = build_message(mail, Subscriber(email="me@example.org"), settings, audience_name="Neta")
    test = build_message(mail, Subscriber(email="me@example.org"), settings, audience_name="Neta", is_test=True)
    parsed = _parse(test.data)
    assert parsed["Subject"] == "[TEST] " + mail.subject
    assert parsed["X-Briefing-Test"] == "yes"
    assert test.message_id != real.message_id and test.message_id.startswith("<test.")


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("subject", "Hello\r\nBcc: victim@example.org"),
        ("name", "Eve\nBcc: victim@example.org"),
        ("email", "eve@example.org\r\nBcc: victim@example.org"),
        ("from_name", "Team\rX-Evil: 1"),
        ("reply_to", "a@example.org\nBcc: b@example.org"),
        ("name", "Eve\u2028Bcc: victim@example.org"),
    ],
)
def test_line_breaks_in_any_header_field_are_refused(rendered, where: str, value: str) -> None:
    rendered_briefing, _ = rendered
    mail = rendered_briefing.emails["atou"]
    settings = load_settings()
    subscriber = Subscriber(email="ok@example.org", name="OK")
    if where == "subject":
        mail = mail.__class__(**{**mail.__dict__, "subject": value})
    elif where == "name":
        subscriber = Subscriber(email="ok@example.org", name=value)
    elif where == "email":
        subscriber = Subscriber(email=value)
    else:
        settings = load_settings(**{where: value})
    with pytest.raises(DeliveryError, match="line break"):
        build_message(mail, subscriber, settings, audience_name="ATou")


def test_tokens_verify_and_forgeries_fail() -> None:
    token = make_token("s3cret", "atou", "A@Example.org")
    assert verify_token("s3cret", token) == ("atou", "a@example.org")
    payload, signature = token.split(".")
    other = make_token("s3cret", "atou", "b@example.org")
    # A's signature on B's payload: a token for A cannot unsubscribe B.
    with pytest.raises(TokenError):
        verify_token("s3cret", f"{other.split('.')[0]}.{signature}")
    with pytest.raises(TokenError):
        verify_token("s3cret", make_token("s3cret", "neta", "a@example.org").split(".")[0] + "." + signature)
    with pytest.raises(TokenError):
        verify_token("another-secret", token)
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    for bad in (f"{payload}.{flipped}", payload, "", "x.y", f"{payload}.{signature}é", "a" * 5000):
        with pytest.raises(TokenError):
            verify_token("s3cret", bad)


def _dkim_key(tmp_path: Path) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def test_dkim_signature_verifies_and_covers_the_unsubscribe_headers(rendered, tmp_path: Path) -> None:
    rendered_briefing, _ = rendered
    key_path, record = _dkim_key(tmp_path)
    settings = load_settings(dkim_key_path=key_path, dkim_selector="sel1")
    envelope = build_message(
        rendered_briefing.emails["uota"],
        Subscriber(email="uota@example.org", name="Uota"),
        settings,
        audience_name="Uota",
    )
    looked_up: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        looked_up.append(name)
        return record

    assert dkim.verify(envelope.data, dnsfunc=dns)
    assert looked_up == [b"sel1._domainkey.example.org."]
    signature = _parse(envelope.data)["DKIM-Signature"]
    signed = {h.strip().lower() for h in re.search(r"h=([^;]+)", str(signature).replace(" ", "")).group(1).split(":")}
    assert {"from", "to", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"} <= signed
    tampered = envelope.data.replace(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x")
    assert tampered != envelope.data and not dkim.verify(tampered, dnsfunc=dns)


def test_unreadable_dkim_key_is_a_clear_error(rendered, tmp_path: Path) -> None:
    rendered_briefing, _ = rendered
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    settings = load_settings(dkim_key_path=bad)
    with pytest.raises(DeliveryError, match="PEM") as info:
        build_message(rendered_briefing.emails["atou"], Subscriber(email="a@example.org"), settings, audience_name="A")
    assert str(bad) in str(info.value)

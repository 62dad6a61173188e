"""DKIM: signatures made by flows/deliver/dkim.py verify with dkimpy AND OpenDKIM, on the messages the product builds
and on what a real SMTP server received; tampering fails both; keys are checked with clear errors."""

from __future__ import annotations

import dataclasses
import logging
import random
import re
from pathlib import Path

import pytest
from dkim.canonicalization import Relaxed

from flows.core.errors import DeliveryError
from flows.core.models import Subscriber
from flows.core.settings import load_settings
from flows.core.store import Store
from flows.deliver import deliver_briefing
from flows.deliver.dkim import DKIM_HEADERS, DkimSigner, SigningKey, load_key, relaxed_body
from flows.deliver.messages import build_message, prepare_message
from tests.delivery_support import SmtpServer, load_sample, render_sample, write_subscribers
from tests.dkim_support import (
    OpenDkim,
    dkimpy_verify,
    each_signature_alone,
    signature_fields,
    tags,
    write_ed25519_key,
    write_rsa_key,
)

DOMAIN = "example.org"  # the From domain of the default settings


@pytest.fixture(scope="module")
def opendkim(internet, tmp_path_factory: pytest.TempPathFactory):
    verifier = OpenDkim(internet, tmp_path_factory.mktemp("opendkim"))
    yield verifier
    verifier.stop()


@pytest.fixture
def keys(tmp_path: Path, opendkim: OpenDkim) -> dict[str, Path]:
    """A 2048-bit RSA key (PKCS#1) under `rsa2048`, a PKCS#8 RSA key under `pkcs8`, an Ed25519 key under `ed`;
    their records published to both verifiers' DNS."""
    paths = {"rsa2048": tmp_path / "rsa.pem", "pkcs8": tmp_path / "rsa-pkcs8.pem", "ed": tmp_path / "ed.pem"}
    records = {
        f"rsa2048._domainkey.{DOMAIN}": write_rsa_key(paths["rsa2048"]),
        f"pkcs8._domainkey.{DOMAIN}": write_rsa_key(paths["pkcs8"], pkcs8=True),
        f"ed._domainkey.{DOMAIN}": write_ed25519_key(paths["ed"]),
    }
    opendkim.publish(records)
    return paths


@pytest.fixture
def rendered(project: Path):
    settings = load_settings()
    store = Store(settings.store_url)
    content = load_sample(project)
    yield render_sample(settings, store, content), content, store
    store.close()


def both_verify(data: bytes, opendkim: OpenDkim) -> tuple[list[bool], list[bool]]:
    return dkimpy_verify(data, opendkim.records), opendkim.verify(data)


def _signed_settings(keys: dict[str, Path], **overrides):
    return load_settings(dkim_key_path=keys["rsa2048"], dkim_selector="rsa2048", **overrides)


def test_product_messages_verify_with_dkimpy_and_opendkim(rendered, keys, opendkim: OpenDkim) -> None:
    """Chinese subject (RFC 2047 encoded-words over several folded lines), a folded Chinese To, a folded
    List-Unsubscribe per recipient, base64 bodies: both verifiers accept every message of one prepared email."""
    rendered_briefing, content, _ = rendered
    mail = dataclasses.replace(
        rendered_briefing.emails["investors"],
        subject="【投资】" + "模型公司把研发交给模型之后，估值、成本与护城河怎么看？" * 3,
    )
    settings = _signed_settings(keys, reply_to="编辑部 <editor@example.org>", from_name="阿头学 · 科技简报 Briefing")
    prepared = prepare_message(mail, settings, audience_name=content.audience("investors").name)
    readers = [Subscriber(email="lin.wei@example.net", name="林薇（投资部）" * 4), Subscriber(email="a@example.com")]
    messages = [prepared.for_recipient(reader).data for reader in readers]

    first = messages[0]
    subject = re.search(rb"^Subject: .*?\r\n(?=\S)", first, re.MULTILINE | re.DOTALL).group(0)
    assert subject.count(b"=?utf-8?") >= 3 and subject.count(b"\r\n ") >= 2, "a folded, encoded Subject"
    to = re.search(rb"^To: .*?\r\n(?=\S)", first, re.MULTILINE | re.DOTALL).group(0)
    assert to.startswith(b"To: =?utf-8?") and to.count(b"\r\n ") >= 1, "a folded, encoded To"
    unsubscribe = [re.search(rb"^List-Unsubscribe: (.*?)\r\n(?=\S)", m, re.M | re.S).group(1) for m in messages]
    assert unsubscribe[0] != unsubscribe[1] and b"\r\n <mailto:" in unsubscribe[0]
    for data in messages:
        assert both_verify(data, opendkim) == ([True], [True])
        signature = tags(signature_fields(data)[0])
        assert signature["a"] == "rsa-sha256" and signature["c"] == "relaxed/relaxed" and signature["s"] == "rsa2048"
        assert signature["d"] == DOMAIN and abs(int(signature["t"]) - _now()) < 300
        assert all(len(line) <= 78 for line in signature_fields(data)[0].split(b"\r\n")), "folded (RFC 5322)"
    assert f"rsa2048._domainkey.{DOMAIN}" in opendkim.queried(), "OpenDKIM looked the key up in DNS"

    # the per-recipient List-Unsubscribe is covered: one reader's header in the other's message fails
    swapped = messages[1].replace(unsubscribe[1], unsubscribe[0])
    assert swapped != messages[1]
    assert both_verify(swapped, opendkim) == ([False], [False])


def test_signed_headers_are_over_signed(rendered, keys, opendkim: OpenDkim) -> None:
    """h= lists each header of DKIM_HEADERS once more than it occurs, so a second From, Subject, Reply-To or
    List-Unsubscribe(-Post) put on top (where a verifier that picks instances bottom-up would not look without
    over-signing, and where a mail client may read it) fails both verifiers; a header a relay adds does not."""
    rendered_briefing, _, _ = rendered
    settings = _signed_settings(keys)  # no Reply-To: it is signed as absent
    data = build_message(
        rendered_briefing.emails["uota"], Subscriber(email="u@example.net"), settings, audience_name="Uota"
    ).data
    names = tags(signature_fields(data)[0])["h"].split(":")
    header_end = data.index(b"\r\n\r\n") + 2
    for name in DKIM_HEADERS:
        pattern = rb"^" + re.escape(name) + rb":"
        present = len(re.findall(pattern, data[:header_end], re.MULTILINE | re.IGNORECASE))
        assert names.count(name.decode()) == present + 1, name
    assert names.count("from") == 2 and names.count("list-unsubscribe-post") == 2
    assert names.count("reply-to") == 1 and b"\r\nReply-To:" not in data

    for added in (
        b"From: Attacker <ceo@example.org>\r\n",
        b"Subject: =?utf-8?b?5pu05pS5?=\r\n",
        b"List-Unsubscribe: <https://evil.example.net/u>\r\n",
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        b"Reply-To: harvest@evil.example.net\r\n",
    ):
        assert both_verify(added + data, opendkim) == ([False], [False]), added
        assert both_verify(data[:header_end] + added + data[header_end:], opendkim) == ([False], [False]), added
    relayed = b"Received: from mail.example.org by mx.example.net; Sat, 5 Dec 2026 08:00:00 +0000\r\n" + data
    assert both_verify(relayed, opendkim) == ([True], [True])


def test_tampered_body_or_header_fails_both_verifiers(rendered, keys, opendkim: OpenDkim) -> None:
    rendered_briefing, _, _ = rendered
    data = build_message(
        rendered_briefing.emails["atou"], Subscriber(email="a@example.net"), _signed_settings(keys), audience_name="A"
    ).data
    assert both_verify(data, opendkim) == ([True], [True])
    body_start = data.index(b"\r\n\r\n") + 4
    line = data.index(b"\r\n", data.index(b"base64\r\n\r\n", body_start) + 10) - 5
    flipped = data[:line] + (b"A" if data[line : line + 1] != b"A" else b"B") + data[line + 1 :]
    subject = re.sub(rb"(?m)^Subject: =\?utf-8\?b\?", b"Subject: =?utf-8?b?5pu0", data, count=1)
    appended = data + b"--an added part\r\n"
    wrong_key = write_rsa_key(Path(keys["rsa2048"]).with_name("other.pem"))
    for tampered in (flipped, subject, appended):
        assert tampered != data
        assert both_verify(tampered, opendkim) == ([False], [False])
    records = opendkim.records
    opendkim.publish({**records, f"rsa2048._domainkey.{DOMAIN}": wrong_key})
    try:
        assert opendkim.verify(data) == [False]
        assert dkimpy_verify(data, {**records, f"rsa2048._domainkey.{DOMAIN}": wrong_key}) == [False]
    finally:
        opendkim.publish(records)


def test_body_canonicalisation_edge_cases_verify(keys, opendkim: OpenDkim) -> None:
    """Trailing blank lines, trailing and repeated spaces and tabs, an empty body, a folded header with tabs:
    the relaxed canonicalisation agrees with both verifiers (signed with the PKCS#8 key)."""
    signer = DkimSigner([SigningKey("pkcs8", load_key(keys["pkcs8"], "BRIEFING_DKIM_KEY_PATH"))], DOMAIN)
    head = (
        b"From: =?utf-8?b?6Zi/5aS05a2m?= <briefing@example.org>\r\nTo: reader@example.net\r\n"
        b"Subject:\t Quarterly   notes \r\n\t on two\t\tlines  \r\nDate: Sat, 05 Dec 2026 08:00:00 +0000\r\n"
        b"Message-ID: <edge@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    bodies = [
        b"first line\r\nsecond line\r\n\r\n\r\n\r\n",
        b"spaces  and\ttabs \t \r\ntrailing   \r\n\t\r\n \r\n",
        b"",
        b"\r\n\r\n",
        b"no final line break",
        "中文正文，两行。\r\n第二行\r\n\r\n".encode(),
    ]
    for body in bodies:
        data = signer.sign(head + body)
        assert both_verify(data, opendkim) == ([True], [True]), body
        changed = data + b"more text\r\n" if body.strip() else data + b"x\r\n"
        assert both_verify(changed, opendkim) == ([False], [False]), body
    fewer_blank_lines = signer.sign(head + bodies[0])[:-4]  # empty lines at the end do not count
    assert both_verify(fewer_blank_lines, opendkim) == ([True], [True])


def test_relaxed_body_matches_dkimpy_on_random_bodies() -> None:
    rng = random.Random(20261205)
    pieces = [b"a", b"Z9+/", b" ", b"\t", b"  ", b"\r\n", b"\r", b"\n", "中".encode()]
    for _ in range(5000):
        body = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        wire = body + b"\r\n" if body and not body.endswith(b"\r\n") else body  # as the transport sends it
        assert relaxed_body(body) == Relaxed.canonicalize_body(wire), body


def test_ed25519_alone_and_next_to_rsa(rendered, keys, opendkim: OpenDkim) -> None:
    rendered_briefing, _, _ = rendered
    mail = rendered_briefing.emails["neta"]
    reader = Subscriber(email="n@example.net", name="Neta")
    alone = load_settings(dkim_key_path=keys["ed"], dkim_selector="ed")
    data = build_message(mail, reader, alone, audience_name="Neta").data
    assert [tags(f)["a"] for f in signature_fields(data)] == ["ed25519-sha256"]
    assert both_verify(data, opendkim) == ([True], [True])

    dual = load_settings(
        dkim_key_path=keys["pkcs8"], dkim_selector="pkcs8", dkim_ed25519_key_path=keys["ed"], dkim_ed25519_selector="ed"
    )
    data = build_message(mail, reader, dual, audience_name="Neta").data
    fields = [tags(f) for f in signature_fields(data)]
    assert [(f["a"], f["s"]) for f in fields] == [("rsa-sha256", "pkcs8"), ("ed25519-sha256", "ed")]
    assert fields[0]["bh"] == fields[1]["bh"] and fields[0]["h"] == fields[1]["h"]
    assert both_verify(data, opendkim) == ([True, True], [True, True])
    # each signature stands alone: a receiver that checks only one of them accepts it
    assert all(both_verify(alone, opendkim) == ([True], [True]) for alone in each_signature_alone(data))


def test_what_a_real_smtp_server_received_verifies(project: Path, keys, opendkim: OpenDkim) -> None:
    """deliver_briefing over SMTP to aiosmtpd, RSA + Ed25519: the bytes the server stored verify, twice each."""
    recipients = [f"reader{i}@example.net" for i in range(5)]
    write_subscribers(project, "investors.csv", recipients)
    content = load_sample(project)
    with SmtpServer() as server:
        settings = load_settings(
            smtp_url=server.url,
            smtp_tls="none",
            secret="test-secret-0123456789-abcdefghijkl",
            dkim_key_path=keys["rsa2048"],
            dkim_selector="rsa2048",
            dkim_ed25519_key_path=keys["ed"],
            dkim_ed25519_selector="ed",
        )
        store = Store(settings.store_url)
        try:
            rendered_briefing = render_sample(settings, store, content)
            report = deliver_briefing(rendered_briefing, content, store, settings, audiences=["investors"])
        finally:
            store.close()
    assert report.sent_now == len(recipients)
    received = server.handler.received
    assert sorted(r.recipient for r in received) == recipients
    for message in received:
        assert message.data.startswith(b"DKIM-Signature: v=1; a=rsa-sha256;")
        assert both_verify(message.data, opendkim) == ([True, True], [True, True]), message.recipient
        assert message.message["To"].addresses[0].addr_spec == message.recipient


# --- keys ---------------------------------------------------------------------------------------------------


def test_rsa_key_formats_and_sizes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pkcs1, pkcs8, short, tiny = (tmp_path / f"{name}.pem" for name in ("pkcs1", "pkcs8", "short", "tiny"))
    write_rsa_key(pkcs1)
    write_rsa_key(pkcs8, pkcs8=True)
    record = write_rsa_key(short, 1024)
    write_rsa_key(tiny, 768)
    assert pkcs1.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY") and b"BEGIN PRIVATE KEY" in pkcs8.read_bytes()
    for path in (pkcs1, pkcs8):
        assert load_key(path, "BRIEFING_DKIM_KEY_PATH").key_size == 2048
    with caplog.at_level(logging.WARNING, logger="flows.deliver.dkim"):
        key = load_key(short, "BRIEFING_DKIM_KEY_PATH")
    assert key.key_size == 1024 and "1024 bits" in caplog.text and str(short) in caplog.text
    signer = DkimSigner([SigningKey("short", key)], DOMAIN)
    data = signer.sign(b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n")
    assert dkimpy_verify(data, {f"short._domainkey.{DOMAIN}": record}) == [True]
    with pytest.raises(DeliveryError, match="768 bits") as info:
        load_key(tiny, "BRIEFING_DKIM_KEY_PATH")
    assert str(tiny) in str(info.value) and "BRIEFING_DKIM_KEY_PATH" in str(info.value)


@pytest.mark.parametrize(
    ("writer", "expected"),
    [
        (lambda p: p.write_text("not a key"), "not a PEM file"),
        (lambda p: p.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "not a readable"),
        (lambda p: write_rsa_key(p, password=b"secret"), "encrypted with a passphrase"),
        (lambda p: _write_public_key(p), "holds a public key, not a private key"),
        (lambda p: _write_ec_key(p), "elliptic-curve"),
        (lambda p: None, "cannot read the DKIM key"),
        (lambda p: p.mkdir(), "cannot read the DKIM key"),
    ],
    ids=["text", "broken-pem", "encrypted", "public-key", "ec-key", "missing", "directory"],
)
def test_bad_keys_are_clear_errors_naming_the_setting(rendered, tmp_path: Path, writer, expected: str) -> None:
    rendered_briefing, _, _ = rendered
    path = tmp_path / "dkim.pem"
    writer(path)
    settings = load_settings(dkim_key_path=path)
    with pytest.raises(DeliveryError, match=expected) as info:
        build_message(rendered_briefing.emails["atou"], Subscriber(email="a@example.org"), settings, audience_name="A")
    assert str(path) in str(info.value) and "BRIEFING_DKIM_KEY_PATH" in str(info.value)


def test_signer_settings_are_checked(rendered, tmp_path: Path) -> None:
    rendered_briefing, _, _ = rendered
    rsa_path, ed_path = tmp_path / "rsa.pem", tmp_path / "ed.pem"
    write_rsa_key(rsa_path)
    write_ed25519_key(ed_path)
    cases = [
        ({"dkim_ed25519_key_path": ed_path}, "BRIEFING_DKIM_KEY_PATH is empty"),
        ({"dkim_key_path": rsa_path, "dkim_ed25519_key_path": rsa_path}, "must hold an Ed25519 key"),
        ({"dkim_key_path": ed_path, "dkim_ed25519_key_path": ed_path}, "both DKIM keys are Ed25519"),
        (
            {"dkim_key_path": rsa_path, "dkim_ed25519_key_path": ed_path, "dkim_ed25519_selector": "briefing"},
            "same as BRIEFING_DKIM_SELECTOR",
        ),
        ({"dkim_key_path": rsa_path, "dkim_selector": "2026; x=1"}, "BRIEFING_DKIM_SELECTOR '2026; x=1' is not a DNS"),
        ({"dkim_key_path": rsa_path, "dkim_domain": "news example.org"}, "BRIEFING_DKIM_DOMAIN 'news example"),
    ]
    mail = rendered_briefing.emails["atou"]
    for overrides, expected in cases:
        with pytest.raises(DeliveryError, match=expected):
            build_message(mail, Subscriber(email="a@example.org"), load_settings(**overrides), audience_name="A")


def test_an_empty_key_path_setting_means_no_signature(rendered, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered_briefing, _, _ = rendered
    monkeypatch.setenv("BRIEFING_DKIM_KEY_PATH", "")
    monkeypatch.setenv("BRIEFING_DKIM_ED25519_KEY_PATH", " ")
    settings = load_settings()
    assert settings.dkim_key_path is None and settings.dkim_ed25519_key_path is None
    envelope = build_message(
        rendered_briefing.emails["atou"], Subscriber(email="a@example.org"), settings, audience_name="A"
    )
    assert b"DKIM-Signature" not in envelope.data


def _write_public_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _write_ec_key(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _now() -> int:
    import time

    return int(time.time())

"""BRIEFING_SMTP_TLS and BRIEFING_SMTP_EHLO_NAME against real aiosmtpd servers: a password never travels in
clear unless plain text is chosen, STARTTLS and implicit TLS carry AUTH, and the server sees our EHLO name.

The client trusts the test certificate through SSL_CERT_FILE, so every transport here is built from the
settings exactly as `briefing run` builds it (`make_transport`)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from flows.core.errors import DeliveryError, SettingsError
from flows.core.settings import Settings, load_settings
from flows.core.store import Store, ledger
from flows.deliver.send import deliver_audience, make_transport
from flows.deliver.transports import default_ehlo_name
from tests.delivery_support import free_port, load_sample, render_sample, write_subscribers
from tests.tls_support import tls_certificate

USER, PASSWORD = "sender", "p@ss word"
SECRET = "smtp-security-secret-0123456789-abcdefghijkl"
RECIPIENTS = ["one@example.net", "two@example.net"]


@dataclass
class Recorder:
    """An aiosmtpd handler and authenticator that remembers what the client did."""

    ehlo_names: list[str] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)
    tls_at_data: list[bool] = field(default_factory=list)

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]):  # noqa: N802
        session.host_name = hostname
        self.ehlo_names.append(hostname)
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.recipients.extend(envelope.rcpt_tos)
        self.tls_at_data.append(server.transport.get_extra_info("sslcontext") is not None)
        return "250 2.0.0 queued"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=(auth_data.login, auth_data.password) == (USER.encode(), PASSWORD.encode()))


@pytest.fixture
def certificate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """The server's TLS context; the client trusts its certificate (and only it) via SSL_CERT_FILE."""
    cert, key = tls_certificate(tmp_path, ["127.0.0.1"])
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@contextmanager
def smtp_server(recorder: Recorder, **options: Any) -> Iterator[int]:
    """aiosmtpd on 127.0.0.1 with AUTH; `options` choose STARTTLS (tls_context), implicit TLS (ssl_context)
    and whether AUTH is offered before TLS (auth_require_tls)."""
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, authenticator=recorder.authenticate, **options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def send(project: Path) -> Iterator[Callable[..., tuple[Settings, Any]]]:
    """Deliver the sample's ATou email to two recipients with settings built from `overrides`."""
    write_subscribers(project, "atou.csv", RECIPIENTS)
    content = load_sample(project)
    stores: list[Store] = []

    def run(**overrides: Any) -> tuple[Settings, Any]:
        settings = load_settings(secret=SECRET, **overrides)
        stores.append(Store(settings.store_url))
        rendered = render_sample(settings, stores[-1], content)
        report = deliver_audience(
            rendered.emails["atou"], content.audience("atou"), stores[-1], settings, lambda: make_transport(settings)
        )
        return settings, report

    yield run
    for store in stores:
        store.close()


def _credentials_url(port: int, scheme: str = "smtp") -> str:
    return f"{scheme}://{USER}:p%40ss%20word@127.0.0.1:{port}"


def test_auth_without_starttls_is_refused_by_default_and_nothing_is_sent(send) -> None:
    recorder = Recorder()
    with smtp_server(recorder, auth_require_tls=False) as port:  # a server that would take the password in clear
        settings, report = send(smtp_url=_credentials_url(port))
    assert settings.smtp_tls == "auto"
    assert recorder.logins == [] and recorder.recipients == []
    assert "refusing to send the SMTP password unencrypted" in report.error
    assert f"smtp://{USER}@127.0.0.1:{port}" in report.error, "the error names the URL"
    assert "BRIEFING_SMTP_TLS" in report.error, "the error names the setting to change"
    assert "p@ss" not in report.error and "p%40ss" not in report.error
    assert report.totals[ledger.QUEUED] == len(RECIPIENTS) and not report.complete, "rows wait for the next send"


def test_auth_in_plain_text_when_chosen_explicitly(send) -> None:
    recorder = Recorder()
    with smtp_server(recorder, auth_require_tls=False) as port:
        _settings, report = send(smtp_url=_credentials_url(port), smtp_tls="none")
    assert report.states[ledger.SENT] == len(RECIPIENTS) and report.complete, report
    assert recorder.logins == [(USER.encode(), PASSWORD.encode())]
    assert recorder.tls_at_data == [False, False]


def test_no_credentials_and_no_starttls_sends_in_plain_text_under_auto(send) -> None:
    recorder = Recorder()
    with smtp_server(recorder, auth_require_tls=False) as port:
        _settings, report = send(smtp_url=f"smtp://127.0.0.1:{port}")
    assert report.states[ledger.SENT] == len(RECIPIENTS), report
    assert recorder.logins == []


def test_starttls_required_refuses_a_server_without_it(send) -> None:
    recorder = Recorder()
    with smtp_server(recorder, auth_require_tls=False) as port:
        _settings, report = send(smtp_url=f"smtp://127.0.0.1:{port}", smtp_tls="starttls")
    assert "does not offer STARTTLS" in report.error and recorder.recipients == []


@pytest.mark.parametrize("mode", ["auto", "starttls"])
def test_starttls_then_auth_delivers(send, certificate: ssl.SSLContext, mode: str) -> None:
    recorder = Recorder()
    server = {"tls_context": certificate, "require_starttls": True, "auth_require_tls": True}
    with smtp_server(recorder, **server) as port:
        _settings, report = send(smtp_url=_credentials_url(port), smtp_tls=mode)
    assert report.states[ledger.SENT] == len(RECIPIENTS) and report.complete, report
    assert recorder.logins == [(USER.encode(), PASSWORD.encode())]
    assert recorder.tls_at_data == [True, True]


@pytest.mark.parametrize(("scheme", "mode"), [("smtps", "auto"), ("smtp", "tls")], ids=["smtps-url", "tls-setting"])
def test_implicit_tls_then_auth_delivers(send, certificate: ssl.SSLContext, scheme: str, mode: str) -> None:
    recorder = Recorder()
    with smtp_server(recorder, ssl_context=certificate, auth_require_tls=False) as port:
        _settings, report = send(smtp_url=_credentials_url(port, scheme), smtp_tls=mode)
    assert report.states[ledger.SENT] == len(RECIPIENTS) and report.complete, report
    assert recorder.logins == [(USER.encode(), PASSWORD.encode())]


def test_the_server_sees_the_configured_ehlo_name(send, certificate: ssl.SSLContext) -> None:
    recorder = Recorder()
    with smtp_server(recorder, tls_context=certificate, auth_require_tls=True) as port:
        _settings, report = send(smtp_url=_credentials_url(port), smtp_ehlo_name="mailer.briefing.example")
    assert report.states[ledger.SENT] == len(RECIPIENTS), report
    assert recorder.ehlo_names == ["mailer.briefing.example"] * 2, "before and after STARTTLS"


def test_the_default_ehlo_name_is_never_a_loopback_literal(send) -> None:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        send(smtp_url=f"smtp://127.0.0.1:{port}", from_address="news@briefing.example.org")
    (name,) = set(recorder.ehlo_names)
    assert not name.startswith("[") and "localhost" not in name.lower()
    assert name == default_ehlo_name("news@briefing.example.org")


@pytest.mark.parametrize(
    ("fqdn", "expected"),
    [
        ("localhost", "example.org"),
        ("localhost.localdomain", "example.org"),
        ("ip6-localhost", "example.org"),
        ("buildbox", "example.org"),
        ("10.1.2.3", "example.org"),
        ("mail01.corp.example.net", "mail01.corp.example.net"),
    ],
)
def test_default_ehlo_name_prefers_a_real_fqdn(monkeypatch: pytest.MonkeyPatch, fqdn: str, expected: str) -> None:
    # The machine's host name cannot be changed from a test: only this lookup is replaced.
    monkeypatch.setattr("flows.deliver.transports.socket.getfqdn", lambda: fqdn)
    default_ehlo_name.cache_clear()
    try:
        assert default_ehlo_name("briefing@example.org") == expected
        assert default_ehlo_name("briefing@例子.中国") in {expected, "xn--fsqu00a.xn--fiqs8s"}
    finally:
        default_ehlo_name.cache_clear()


def test_the_deprecated_starttls_switch_maps_onto_smtp_tls(project: Path, monkeypatch, caplog) -> None:
    from flows.core import settings as settings_module

    monkeypatch.setattr(settings_module, "_DEPRECATIONS_REPORTED", set())
    monkeypatch.setenv("BRIEFING_SMTP_STARTTLS", "false")
    with caplog.at_level(logging.WARNING, logger="flows.core.settings"):
        assert load_settings().smtp_tls == "none"
        load_settings()
    assert [r.getMessage() for r in caplog.records].count(
        "BRIEFING_SMTP_STARTTLS is deprecated: set BRIEFING_SMTP_TLS=none instead"
    ) == 1
    monkeypatch.setenv("BRIEFING_SMTP_STARTTLS", "true")
    assert load_settings().smtp_tls == "auto"
    monkeypatch.setenv("BRIEFING_SMTP_TLS", "starttls")
    with pytest.raises(SettingsError, match="BRIEFING_SMTP_STARTTLS is deprecated and conflicts"):
        load_settings()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"smtp_url": "smtps://mail.example.org", "smtp_tls": "none"}, "contradicts an smtps:// URL"),
        ({"smtp_url": "smtps://mail.example.org", "smtp_tls": "starttls"}, "contradicts an smtps:// URL"),
        ({"smtp_tls": "ssl"}, "BRIEFING_SMTP_TLS"),
        ({"smtp_ehlo_name": "bad name\r\nRCPT TO:<x@y>"}, "BRIEFING_SMTP_EHLO_NAME"),
    ],
)
def test_contradictory_or_malformed_smtp_settings_are_refused(project: Path, overrides, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(secret=SECRET, **overrides)


def test_open_reports_the_refusal_as_a_delivery_error(project: Path) -> None:
    recorder = Recorder()
    with smtp_server(recorder, auth_require_tls=False) as port:
        transport = make_transport(load_settings(secret=SECRET, smtp_url=_credentials_url(port)))
        with pytest.raises(DeliveryError, match=r"smtp://sender@127\.0\.0\.1:\d+: the server does not offer STARTTLS"):
            transport.open()
    assert recorder.logins == []


def test_the_url_shown_has_the_port_used_and_never_the_password() -> None:
    from flows.deliver.transports import SmtpTransport, describe_smtp_url

    assert describe_smtp_url("smtp://me:pw@mail.example.org") == "smtp://me@mail.example.org:25"
    assert describe_smtp_url("smtp://me:pw@mail.example.org", "tls") == "smtp://me@mail.example.org:465"
    assert describe_smtp_url("smtps://mail.example.org") == "smtps://mail.example.org:465"
    transport = SmtpTransport("smtp://me:pw@mail.example.org", tls="tls")
    assert (transport.port, transport.implicit_tls, transport.url) == (465, True, "smtp://me@mail.example.org:465")

"""SMTP transport security: STARTTLS with AUTH, implicit TLS (smtps://), refused logins — real aiosmtpd."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from flows.core.errors import DeliveryError
from flows.core.settings import load_settings
from flows.core.store import Store, ledger
from flows.deliver.send import deliver_audience
from flows.deliver.transports import SmtpTransport
from tests.delivery_support import FaultyMailbox, free_port, load_sample, render_sample, write_subscribers
from tests.tls_support import tls_certificate


def _authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"sender", b"p@ss word")
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def tls(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = tls_certificate(tmp_path, ["127.0.0.1"])
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    return server_context, client_context


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "smtps"])
def test_tls_and_auth_deliver_over_one_reused_connection(project: Path, store: Store, tls, implicit: bool) -> None:
    server_context, client_context = tls
    recipients = [f"tls{i}@example.net" for i in range(12)]
    write_subscribers(project, "atou.csv", recipients)
    content = load_sample(project)
    handler = FaultyMailbox()
    port = free_port()
    # aiosmtpd only counts STARTTLS as TLS for auth_require_tls; with implicit TLS the whole session is TLS.
    extra = (
        {"ssl_context": server_context, "auth_require_tls": False}
        if implicit
        else {"tls_context": server_context, "require_starttls": True, "auth_require_tls": True}
    )
    controller = Controller(handler, hostname="127.0.0.1", port=port, authenticator=_authenticator, **extra)
    controller.start()
    try:
        scheme = "smtps" if implicit else "smtp"
        url = f"{scheme}://sender:p%40ss%20word@127.0.0.1:{port}"
        settings = load_settings(smtp_url=url, secret="tls-test-secret-0123456789-abcdefghijkl")
        rendered = render_sample(settings, store, content)
        transports: list[SmtpTransport] = []

        def factory() -> SmtpTransport:
            transports.append(SmtpTransport(url, tls_context=client_context))
            return transports[-1]

        report = deliver_audience(rendered.emails["atou"], content.audience("atou"), store, settings, factory)
        with pytest.raises(DeliveryError, match="login refused"):
            SmtpTransport(url.replace("p%40ss", "wrong"), tls_context=client_context).open()
    finally:
        controller.stop()
    assert report.states[ledger.SENT] == 12 and report.complete, report
    assert set(handler.by_recipient()) == set(recipients)
    assert [t.connections_opened for t in transports] == [1], "one connection carried every message"

"""Transports hand built messages to the world: the outbox folder (default) or an SMTP server.

Every outcome maps to a ledger state. SMTP: 2xx after DATA → sent; 4xx → deferred (retried later); 5xx →
failed with the server's reply; the connection lost after the whole message was transmitted and before the
server's reply → uncertain (the server may have it). A failure before any byte of the message left → queued
again ("not sent"): nothing reached the server, so it is safe to send on a fresh connection.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import ipaddress
import logging
import re
import smtplib
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from flows.core.errors import DeliveryError
from flows.core.files import atomic_write_bytes
from flows.core.settings import SmtpTls
from flows.core.store.ledger import DEFERRED, FAILED, QUEUED, SENT, UNCERTAIN
from flows.deliver.messages import Envelope

logger = logging.getLogger(__name__)

NOT_SENT = QUEUED  # the transport did not hand the message over: the row goes back to the queue
LEADING_DOT = re.compile(rb"(?m)^\.")


@dataclass(frozen=True)
class SendResult:
    state: str  # sent | deferred | failed | uncertain | queued (not sent: connection problem)
    reply: str = ""


class Transport(Protocol):
    name: str

    def open(self) -> None: ...

    def send(self, envelope: Envelope, folder: str) -> SendResult: ...

    def close(self) -> None: ...



class RateLimiter:
    """Spaces sends evenly to at most `rate` per second across all threads sharing it (0 = unlimited)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._lock = threading.Lock()
        self._next = 0.0

    def reserve(self) -> float:
        """Take the next slot; returns how many seconds to wait before using it."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        return slot - now


class OutboxTransport:
    """Writes each message as an .eml file: outbox/<slug>/<audience>/<recipient hash>.eml."""

    name = "outbox"

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    def open(self) -> None:
        try:
            self.outbox.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeliveryError(f"cannot create the outbox folder: {exc.strerror}", where=str(self.outbox)) from None

    def path_for(self, envelope: Envelope, folder: str) -> Path:
        digest = hashlib.sha256(envelope.recipient.lower().encode()).hexdigest()[:16]
        return self.outbox / folder / f"{digest}.eml"

    def send(self, envelope: Envelope, folder: str) -> SendResult:
        path = self.path_for(envelope, folder)
        try:
            atomic_write_bytes(path, envelope.data)
        except OSError as exc:
            return SendResult(NOT_SENT, f"cannot write {path}: {exc.strerror}")
        return SendResult(SENT, f"written to {path}")

    def close(self) -> None:
        return None


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", errors="replace") if isinstance(reply, bytes) else str(reply)


def smtp_port(url: str, tls: SmtpTls = "auto") -> int:
    """The URL's port, else 465 for TLS from the start (smtps:// or BRIEFING_SMTP_TLS=tls), else 25."""
    parsed = urlparse(url)
    return parsed.port or (465 if parsed.scheme == "smtps" or tls == "tls" else 25)


def describe_smtp_url(url: str, tls: SmtpTls = "auto") -> str:
    """The URL without its password, with the port actually used, for messages and logs."""
    parsed = urlparse(url)
    user = f"{unquote(parsed.username)}@" if parsed.username else ""
    return f"{parsed.scheme}://{user}{parsed.hostname}:{smtp_port(url, tls)}"


LOCALHOST_NAMES = {"localhost", "localhost6", "ip6-localhost", "ip6-loopback"}


@functools.cache
def default_ehlo_name(from_address: str) -> str:
    """This machine's fully qualified name when it has a dot and is not localhost, else the From domain.

    Python's own fallback, `[127.0.0.1]`, is what it sends when the host name resolves to localhost, and
    receiving servers count a loopback greeting against the sender."""
    fqdn = socket.getfqdn().rstrip(".")
    if "." in fqdn and fqdn.split(".", 1)[0].lower() not in LOCALHOST_NAMES and not _is_address(fqdn):
        return fqdn
    domain = from_address.rpartition("@")[2]
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class _RefusedError(Exception):
    def __init__(self, code: int, reply: bytes | str) -> None:
        super().__init__(f"{code} {_text(reply)}")
        self.code = code


class InsecureSmtpError(smtplib.SMTPException):
    """The server cannot give the encryption the settings ask for; nothing, the password least, was sent."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


class SmtpTransport:
    """One reused SMTP connection: TLS per `tls` (see BRIEFING_SMTP_TLS), then AUTH when the URL has a user.

    `tls`: "auto" (implicit TLS for smtps://; STARTTLS when offered, and never a password without it),
    "starttls" (required), "tls" (implicit TLS) or "none" (plain text). Not thread-safe: each sending thread
    owns one transport. Reconnects after a drop; a server that closes with 421 gets the message again on a
    fresh connection.
    """

    name = "smtp"

    def __init__(
        self,
        url: str,
        *,
        tls: SmtpTls = "auto",
        ehlo_name: str | None = None,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        parsed = urlparse(url)
        self.implicit_tls = parsed.scheme == "smtps" or tls == "tls"
        self.tls = tls
        self.host = parsed.hostname or "localhost"
        self.port = smtp_port(url, tls)
        self.url = describe_smtp_url(url, tls)
        self.username = unquote(parsed.username) if parsed.username else ""
        self.password = unquote(parsed.password) if parsed.password else ""
        self.ehlo_name = ehlo_name
        self.timeout = timeout
        self.tls_context = tls_context or ssl.create_default_context()
        self._conn: smtplib.SMTP | None = None
        self.connections_opened = 0

    def _connect(self) -> smtplib.SMTP:
        conn: smtplib.SMTP
        if self.implicit_tls:
            conn = smtplib.SMTP_SSL(
                self.host, self.port, local_hostname=self.ehlo_name, timeout=self.timeout, context=self.tls_context
            )
        else:
            conn = smtplib.SMTP(self.host, self.port, local_hostname=self.ehlo_name, timeout=self.timeout)
        try:
            conn.ehlo()
            if not self.implicit_tls:
                self._secure_plain_connection(conn)
            if self.username:
                conn.login(self.username, self.password)
        except BaseException:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                conn.close()
            raise
        self.connections_opened += 1
        return conn

    def _secure_plain_connection(self, conn: smtplib.SMTP) -> None:
        """STARTTLS as `tls` asks; refuse before AUTH when the server cannot give it."""
        if self.tls == "none":
            return
        if conn.has_extn("starttls"):
            conn.starttls(context=self.tls_context)
            conn.ehlo()
            return
        if self.tls == "starttls":
            raise InsecureSmtpError(
                "the server does not offer STARTTLS, which BRIEFING_SMTP_TLS=starttls requires",
                hint="use a server or port that offers STARTTLS, or an smtps:// URL",
            )
        if self.username:
            raise InsecureSmtpError(
                "the server does not offer STARTTLS: refusing to send the SMTP password unencrypted",
                hint="use an smtps:// URL or a port with STARTTLS (often 587); only on a network you trust, "
                "set BRIEFING_SMTP_TLS=none to send it in plain text",
            )
        logger.info("%s offers no STARTTLS and needs no login: sending unencrypted", self.url)

    def open(self) -> None:
        """Connect now, so a wrong URL or password stops the send before any row is leased."""
        if self._conn is not None:
            return
        try:
            self._conn = self._connect()
        except InsecureSmtpError as exc:
            raise DeliveryError(str(exc), where=self.url, hint=exc.hint) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(
                f"SMTP login refused: {exc.smtp_code} {_text(exc.smtp_error)}",
                where=self.url,
                hint="check the user and password in BRIEFING_SMTP_URL",
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                f"cannot connect to the SMTP server: {exc}", where=self.url, hint="check BRIEFING_SMTP_URL"
            ) from None

    def send(self, envelope: Envelope, folder: str) -> SendResult:
        for attempt in (1, 2):
            try:
                return self._transaction(envelope)
            except _RefusedError as refused:
                if refused.code == 421 and attempt == 1:
                    self._drop()  # the server is closing this connection: try once on a new one
                    continue
                return SendResult(DEFERRED if refused.code < 500 else FAILED, str(refused))
            except _NotSentError as exc:
                self._drop()
                if attempt == 1:
                    logger.info("SMTP connection lost before the message (%s); reconnecting", exc)
                    continue
                return SendResult(NOT_SENT, f"not sent: {exc}")
            except _NoReplyError as exc:
                self._drop()
                return SendResult(UNCERTAIN, f"connection lost after the message was sent, before the reply: {exc}")
        raise AssertionError("unreachable")

    def _transaction(self, envelope: Envelope) -> SendResult:
        try:
            conn = self._conn or self._connect()
            self._conn = conn
            # Addresses are validated ASCII without CR/LF: smtplib's quoteaddr (a full RFC 2822 parse per
            # command) would only re-derive the same <address>
            conn.putcmd("mail", f"FROM:<{envelope.sender}>")
            self._expect(conn, conn.getreply(), 250)
            conn.putcmd("rcpt", f"TO:<{envelope.recipient}>")
            self._expect(conn, conn.getreply(), 250, 251)
            conn.putcmd("data")
            self._expect(conn, conn.getreply(), 354)
            data = envelope.data
            if data.startswith(b".") or b"\n." in data:  # base64 bodies rarely need it: skip the regex pass
                data = LEADING_DOT.sub(b"..", data)
            if not data.endswith(b"\r\n"):
                data += b"\r\n"
            conn.send(data + b".\r\n")
        except (smtplib.SMTPException, OSError) as exc:
            # Without the final "." the server discards the message (RFC 5321 4.1.1.4): nothing was delivered.
            raise _NotSentError(str(exc) or type(exc).__name__) from exc
        try:
            code, reply = conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            raise _NoReplyError(str(exc) or type(exc).__name__) from exc
        if 200 <= code < 300:
            return SendResult(SENT, f"{code} {_text(reply)}")
        raise _RefusedError(code, reply)

    def _expect(self, conn: smtplib.SMTP, answer: tuple[int, bytes], *codes: int) -> None:
        code, reply = answer
        if code in codes:
            return
        if code == 421:
            raise _RefusedError(code, reply)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            conn.rset()
        raise _RefusedError(code, reply)

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.quit()
            self._drop()


class _NotSentError(Exception):
    """The connection failed before the message's final dot left: the server cannot have it."""


class _NoReplyError(Exception):
    """The whole message left, and the connection failed before the server answered."""

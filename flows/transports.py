"""Transports hand built messages to the world: the outbox folder (default) or an SMTP server."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import smtplib
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from flows.ledger import DEFERRED, FAILED, SENT, UNCERTAIN
from flows.messages import Envelope

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SendResult:
    state: str  # sent | deferred | failed | uncertain
    reply: str = ""


class Transport(Protocol):
    name: str

    def send(self, envelope: Envelope, folder: str) -> SendResult: ...

    def close(self) -> None: ...


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class OutboxTransport:
    """Writes each message as an .eml file: outbox/<slug>/<audience>/<recipient hash>.eml."""

    name = "outbox"

    def __init__(self, outbox: Path) -> None:
        self.outbox = outbox

    def path_for(self, envelope: Envelope, folder: str) -> Path:
        digest = hashlib.sha256(envelope.recipient.lower().encode()).hexdigest()[:16]
        return self.outbox / folder / f"{digest}.eml"

    def send(self, envelope: Envelope, folder: str) -> SendResult:
        path = self.path_for(envelope, folder)
        try:
            atomic_write_bytes(path, envelope.data)
        except OSError as exc:
            return SendResult(DEFERRED, f"cannot write {path}: {exc.strerror}")
        return SendResult(SENT, f"written to {path}")

    def close(self) -> None:
        return None


class SmtpTransport:
    """One reused SMTP connection; reconnects on drop. Classifies replies for the ledger."""

    name = "smtp"

    def __init__(self, url: str, *, starttls: bool = True, timeout: float = 30.0, rate: float = 0.0) -> None:
        parsed = urlparse(url)
        self.host = parsed.hostname or "localhost"
        self.secure = parsed.scheme == "smtps"
        self.port = parsed.port or (465 if self.secure else 25)
        self.username = unquote(parsed.username) if parsed.username else ""
        self.password = unquote(parsed.password) if parsed.password else ""
        self.starttls = starttls
        self.timeout = timeout
        self.min_interval = 1.0 / rate if rate > 0 else 0.0
        self._last_send = 0.0
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        if self.secure:
            conn: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        else:
            conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            conn.ehlo()
            if self.starttls and conn.has_extn("starttls"):
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
        if self.username:
            conn.login(self.username, self.password)
        return conn

    def _connection(self) -> smtplib.SMTP:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _throttle(self) -> None:
        if self.min_interval:
            wait = self._last_send + self.min_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_send = time.monotonic()

    def send(self, envelope: Envelope, folder: str) -> SendResult:
        self._throttle()
        try:
            conn = self._connection()
            code, reply = conn.mail(envelope.sender)
            if code >= 400:
                return self._refused(code, reply)
            code, reply = conn.rcpt(envelope.recipient)
            if code >= 400:
                conn.rset()
                return self._refused(code, reply)
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return SendResult(DEFERRED, f"before DATA: {exc}")
        try:
            code, reply = conn.data(envelope.data)
        except smtplib.SMTPDataError as exc:
            return self._refused(exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return SendResult(UNCERTAIN, f"connection lost during DATA: {exc}")
        return SendResult(SENT, f"{code} {reply.decode(errors='replace') if isinstance(reply, bytes) else reply}")

    def _refused(self, code: int, reply: bytes | str) -> SendResult:
        text = f"{code} {reply.decode(errors='replace') if isinstance(reply, bytes) else reply}"
        return SendResult(DEFERRED if 400 <= code < 500 else FAILED, text)

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.quit()
            self._conn = None

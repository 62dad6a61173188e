"""A real Dovecot IMAP server on loopback for the collect tests, and real SMTP delivery into its Maildir.

`Dovecot(folder)` writes its own configuration (passwd-file auth with one test user, a Maildir under the
folder, plaintext login allowed on loopback, optional implicit TLS with a test certificate), starts
`dovecot -F` on free high ports and stops it. `SmtpToMailbox` is an aiosmtpd server whose handler delivers
every accepted message with Dovecot's own local delivery agent (dovecot-lda), as an MTA would.

Dovecot comes from Debian's `dovecot-imapd` (scripts/test.sh installs it). Without it the tests skip with the
reason, except under CI=true, where a missing server is a failure.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from tests.tool_support import tool_missing

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
LDA = "/usr/lib/dovecot/dovecot-lda"
USER = "editor"
PASSWORD = "mailbox-test-password"


def require_dovecot() -> None:
    """Fail under CI (the mailbox tests are part of the contract there); skip on a developer machine."""
    if Path(DOVECOT).is_file() and Path(LDA).is_file():
        return
    tool_missing("Dovecot is not installed", "Debian: apt-get install dovecot-imapd (scripts/test.sh installs it)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _open_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="briefing-dovecot-"))
    folder.chmod(0o755)
    return folder


def _mail_owner() -> tuple[int, int, str]:
    """The uid/gid the mail files belong to: `nobody` when we are root (Dovecot refuses uid 0), else us."""
    if os.getuid() == 0:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid, "nobody"
    return os.getuid(), os.getgid(), getpass.getuser()


@dataclass
class Dovecot:
    """`folder` must be reachable by Dovecot's unprivileged users: by default a fresh world-traversable folder
    under the system temp dir (pytest's tmp_path is mode 0700), removed by `stop`."""

    folder: Path = field(default_factory=lambda: _open_folder())
    tls_cert: Path | None = None
    tls_key: Path | None = None
    port: int = 0
    tls_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    uid: int = 0
    gid: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.folder / "dovecot.conf"

    @property
    def home(self) -> Path:
        return self.folder / "home" / USER

    @property
    def maildir(self) -> Path:
        return self.home / "Maildir"

    @property
    def log(self) -> Path:
        return self.folder / "dovecot.log"

    def url(self, folder: str = "INBOX", *, tls: bool = False, password: str = PASSWORD) -> str:
        if tls:
            return f"imaps://{USER}:{password}@localhost:{self.tls_port}/{folder}"
        return f"imap://{USER}:{password}@127.0.0.1:{self.port}/{folder}"

    def write_config(self) -> None:
        self.uid, self.gid, owner = _mail_owner()
        for sub in ("run", "state", "home"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        self.maildir.mkdir(parents=True, exist_ok=True)
        for path in (self.folder / "home", self.home, self.maildir):
            os.chown(path, self.uid, self.gid)
        (self.folder / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        self.port = self.port or free_port()
        tls = self.tls_cert is not None
        self.tls_port = (self.tls_port or free_port()) if tls else 0
        internal = "" if os.getuid() == 0 else f"default_internal_user = {owner}\ndefault_login_user = {owner}\n"
        ssl = f"ssl = yes\nssl_cert = <{self.tls_cert}\nssl_key = <{self.tls_key}\n" if tls else "ssl = no\n"
        extra = "".join(f"{k} = {v}\n" for k, v in self.extra.items())
        self.config.write_text(
            f"""# written by tests/mailbox_support.py
protocols = imap
listen = 127.0.0.1
base_dir = {self.folder / "run"}
state_dir = {self.folder / "state"}
instance_name = briefing-test-{self.port}
log_path = {self.log}
info_log_path = {self.log}
{internal}{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = {min(self.uid, 500) if self.uid else 1}
namespace inbox {{
  inbox = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {self.folder / "passwd"}
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.folder / "home"}/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
}}
{extra}"""
        )

    def start(self, timeout: float = 30.0) -> Dovecot:
        require_dovecot()
        self.write_config()
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "dovecot.stderr", "wb"),  # noqa: SIM115 - closed with the process
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited with {self.process.returncode}: {self._logs()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                if s.recv(200).startswith(b"* OK"):
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"dovecot did not answer on port {self.port}: {self._logs()}")

    def _logs(self) -> str:
        texts = []
        for path in (self.folder / "dovecot.stderr", self.log):
            with contextlib.suppress(OSError):
                texts.append(path.read_text(errors="replace")[-2000:])
        return " | ".join(texts)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def doveadm(self, *args: str) -> str:
        result = subprocess.run(
            [DOVEADM, "-c", str(self.config), *args], capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def deliver(self, data: bytes, sender: str = "reader@example.net") -> None:
        """Local delivery into the test user's INBOX, as an MTA hands mail to Dovecot."""
        result = subprocess.run(
            [LDA, "-c", str(self.config), "-d", USER, "-f", sender],
            input=data,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"dovecot-lda failed ({result.returncode}): {result.stderr.decode(errors='replace')}")

    def folder_counts(self) -> dict[str, int]:
        """Folder → messages, as the server reports them."""
        counts: dict[str, int] = {}
        for line in self.doveadm("-f", "flow", "mailbox", "status", "-u", USER, "messages", "*").splitlines():
            fields = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
            name = line.split(" messages=", 1)[0].removeprefix("mailbox=")
            counts[name] = int(fields.get("messages", "0"))
        return counts

    def set_uidvalidity(self, value: int, folder: str = "INBOX") -> None:
        self.doveadm("mailbox", "update", "-u", USER, "--uid-validity", str(value), folder)


class _Deliverer:
    def __init__(self, mailbox: Dovecot) -> None:
        self.mailbox = mailbox
        self.delivered = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd hook
        import asyncio

        data = envelope.original_content or envelope.content
        try:
            await asyncio.to_thread(self.mailbox.deliver, data, envelope.mail_from or "")
        except RuntimeError as exc:
            return f"451 4.3.0 local delivery failed: {exc}"[:500]
        self.delivered += 1
        return "250 2.0.0 delivered to the mailbox"


class SmtpToMailbox:
    """aiosmtpd on loopback that delivers every message it accepts into the Dovecot mailbox (via dovecot-lda)."""

    def __init__(self, mailbox: Dovecot) -> None:
        self.handler = _Deliverer(mailbox)
        self.port = free_port()
        self.controller = Controller(
            self.handler,
            hostname="127.0.0.1",
            port=self.port,
            decode_data=False,
            ready_timeout=30,
        )

    def __enter__(self) -> SmtpToMailbox:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def send(self, data: bytes, sender: str, recipient: str) -> None:
        import smtplib

        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.sendmail(sender, [recipient], data)

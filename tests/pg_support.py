"""A real PostgreSQL for the tests: a throwaway cluster on 127.0.0.1, one per test session.

`session_postgres()` yields a SQLAlchemy URL (`postgresql+psycopg://postgres@127.0.0.1:PORT/briefing_test`).
With BRIEFING_TEST_POSTGRES_URL set it uses that server instead. Without either, PostgreSQL tests fail under
CI (CI=true) and are skipped locally. `fresh_schema(url)` gives each test an empty schema of its own.

The server runs as the `postgres` OS user when we are root (postgres refuses to run as root), with its data
directory and unix socket in a temporary folder, trust authentication and durability off (fsync, full-page
writes): it is a test fixture, never a place for data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from sqlalchemy.engine import make_url

from tests.tool_support import tool_missing

logger = logging.getLogger(__name__)

ENV_URL = "BRIEFING_TEST_POSTGRES_URL"
DATABASE = "briefing_test"
PG_USER = "postgres"
REPO = Path(__file__).resolve().parent.parent


def find_pg_bin() -> Path | None:
    """The newest /usr/lib/postgresql/<major>/bin holding initdb, or BRIEFING_PG_BIN."""
    override = os.environ.get("BRIEFING_PG_BIN")
    candidates = [Path(override)] if override else []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        majors = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        candidates += [p / "bin" for p in majors]
    return next((c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()), None)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unavailable(reason: str) -> NoReturn:
    """Fail under CI (the PostgreSQL tests are part of the contract there); skip on a developer machine."""
    tool_missing(
        f"PostgreSQL tests cannot run: {reason}",
        f"install Debian's `postgresql` package (binaries in /usr/lib/postgresql/<major>/bin) "
        f"or set {ENV_URL}=postgresql+psycopg://user@host:port/db",
    )


class PostgresServer:
    """initdb + pg_ctl in a temporary folder; `url` is valid between start() and stop()."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="briefing-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = 0
        self.as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", PG_USER, "--", *command]
        return subprocess.run(command, cwd=self.folder, capture_output=True, text=True, timeout=120, check=False)

    def _checked(self, *args: str) -> None:
        result = self._run(*args)
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}\n{log}")

    def start(self) -> str:
        if self.as_postgres:
            account = pwd.getpwnam(PG_USER)
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self._checked("initdb", "-D", str(self.data), "-U", PG_USER, "-A", "trust", "-E", "UTF8", "--no-locale")
        options = (
            f"-c listen_addresses=127.0.0.1 -c unix_socket_directories={self.folder} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=64MB"
        )
        for _attempt in range(3):  # the free port can be taken between choosing and binding it
            self.port = free_port()
            result = self._run(
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                "-o",
                f"{options} -p {self.port}",
                "start",
            )
            if result.returncode == 0:
                break
        else:
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.strip()}\n{self.log.read_text(errors='replace')}")
        admin = f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/postgres"
        run_admin_sql(admin, f'CREATE DATABASE "{DATABASE}"')
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{DATABASE}"

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def _psycopg_conninfo(url: str) -> str:
    parsed = make_url(url)
    parts = {
        "host": parsed.host or "127.0.0.1",
        "port": str(parsed.port or 5432),
        "user": parsed.username or PG_USER,
        "dbname": parsed.database or "postgres",
    }
    if parsed.password:
        parts["password"] = parsed.password
    return " ".join(f"{k}={v}" for k, v in parts.items())


def run_admin_sql(url: str, *statements: str) -> None:
    """Run statements outside a transaction (CREATE DATABASE, DROP SCHEMA …)."""
    import psycopg

    with psycopg.connect(_psycopg_conninfo(url), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def session_postgres() -> Iterator[str]:
    """The session's PostgreSQL URL: BRIEFING_TEST_POSTGRES_URL, or a cluster started here and stopped after."""
    configured = os.environ.get(ENV_URL)
    if configured:
        yield configured
        return
    bin_dir = find_pg_bin()
    if bin_dir is None:
        unavailable(f"no PostgreSQL binaries found and {ENV_URL} is not set")
    assert bin_dir is not None
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        unavailable("running as root needs `runuser` to start postgres as the postgres user")
    server = PostgresServer(bin_dir)
    try:
        url = server.start()
    except (RuntimeError, KeyError, OSError, subprocess.TimeoutExpired) as exc:
        server.stop()
        unavailable(f"the throwaway server did not start: {exc}")
        return
    try:
        yield url
    finally:
        server.stop()


def schema_url(url: str, schema: str) -> str:
    """The same database with `schema` first on the search path (psycopg passes `options` to the server)."""
    return make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@contextlib.contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """An empty schema for one test; dropped afterwards with everything in it."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    run_admin_sql(url, f'CREATE SCHEMA "{schema}"')
    try:
        yield schema_url(url, schema)
    finally:
        run_admin_sql(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# scale tests: a counting SMTP server and a project with one big audience ------------------------------


class CountingSmtp:
    """A loopback aiosmtpd that counts messages per recipient and per connection, with arrival times."""

    def __init__(self) -> None:
        import threading
        from collections import Counter

        self.lock = threading.Lock()
        self.per_recipient: Counter[str] = Counter()
        self.per_peer: Counter[str] = Counter()
        self.arrivals: list[tuple[float, str]] = []  # (monotonic time, recipient)
        self.controller: Any = None
        self.port = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's naming)
        import time

        with self.lock:
            now = time.monotonic()
            for rcpt in envelope.rcpt_tos:
                self.per_recipient[rcpt.lower()] += 1
                self.arrivals.append((now, rcpt.lower()))
            self.per_peer[str(session.peer)] += 1
        return "250 OK queued"

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.per_recipient.values())

    def busy_peers(self, at_least: int) -> int:
        with self.lock:
            return sum(1 for n in self.per_peer.values() if n >= at_least)

    def __enter__(self) -> CountingSmtp:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, data_size_limit=10_000_000)
        self.controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.controller.stop()


def write_big_audience(content_dir: Path, audience: str, count: int) -> list[str]:
    """Replace an audience's subscribers file with `count` generated subscribers; returns their addresses."""
    emails = [f"{audience}.reader{i:05d}@example.org" for i in range(count)]
    lines = ["email,name,locale", *(f"{e},Reader {i},zh-CN" for i, e in enumerate(emails))]
    (content_dir / "subscribers" / f"{audience}.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return emails


def deliver_env(project: Path, database_url: str, smtp_port: int, **extra: str) -> dict[str, str]:
    """Environment for a deliverer process working on `project` (content copy) against the shared store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFING_")}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "BRIEFING_CONTENT_DIR": str(project / "content"),
            "BRIEFING_OUTPUT_DIR": str(project / "outputs"),
            "BRIEFING_DATABASE_URL": database_url,
            "BRIEFING_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}",
            "BRIEFING_SMTP_TLS": "none",
            "BRIEFING_SECRET": "scale-test-secret-0123456789-abcdefghijkl",
            **extra,
        }
    )
    return env

"""A simulated internet for the tests: a network namespace with global addresses, host names and real servers.

`unshare --net --mount` gives a process a network namespace of its own holding only a loopback interface,
so no packet can leave it, and a mount namespace in which /etc/hosts can be replaced without touching the
machine's. One long-lived process (`sleep infinity`) keeps both alive; everything else enters them with
`nsenter --target PID --net --mount`. Inside, `lo` carries whatever global IPv4 and IPv6 addresses a test
adds, a generated hosts file names them, and the product runs with default settings against real servers
on those addresses — the path a user takes against the real internet, with nothing reaching it.

    def test_delivery(internet, project):                    # `internet`: the fixture in tests/conftest.py
        internet.add_host("mail.frontier-news.com", "93.184.216.40")
        server = [sys.executable, "-m", "aiosmtpd", "-n", "-l", "93.184.216.40:25"]
        with internet.start(server, wait_for=[("93.184.216.40", 25)]):
            env = briefing_env(project, BRIEFING_SMTP_URL="smtp://mail.frontier-news.com:25")
            result = internet.run([briefing_executable(), "send"], env=env)

Global addresses are bound and connected to only by commands run through `command`/`run`/`popen`/`start`,
always inside the namespace (nsenter fails rather than run a command outside it); the test process itself
never touches them. It reads what the servers logged and what the product stored through the filesystem,
which the namespace shares.

`tests/netns_http_server.py` is the HTTP server `serve_http` starts: sites described as data (routes with
status, headers, gzip, ETag/Last-Modified revalidation, delays, stalls, connection resets, redirects),
every request logged as a JSON line the test reads back.

Without `unshare`, `nsenter`, `mount` (util-linux) or `ip` (iproute2), or without the right to create
namespaces (root, or CAP_SYS_ADMIN and CAP_NET_ADMIN), the tests that need a namespace fail under CI=true and
are skipped elsewhere with the reason (as tests/pg_support.py does for PostgreSQL).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import pytest

from tests.tool_support import tool_missing

HTTP_SERVER_SCRIPT = Path(__file__).resolve().parent / "netns_http_server.py"
TOOLS = ("unshare", "nsenter", "mount", "ip")

# Waits inside the namespace until every (host, port) accepts a TCP connection: argv = timeout host port ...
_PORT_PROBE = """
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
pending = list(zip(sys.argv[2::2], map(int, sys.argv[3::2])))
while pending:
    host, port = pending[0]
    try:
        socket.create_connection((host, port), timeout=1).close()
        pending.pop(0)
    except OSError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"nothing listens on {host} port {port}: {exc}")
        time.sleep(0.05)
"""


def namespace_unavailable(reason: str) -> NoReturn:
    """Fail under CI (the namespace tests are part of the contract there); skip on a developer machine."""
    tool_missing(
        f"network-namespace tests cannot run: {reason}",
        "they need unshare, nsenter and mount (Debian: util-linux, mount), ip (iproute2) and root, or "
        "CAP_SYS_ADMIN and CAP_NET_ADMIN; scripts/test.sh installs the tools",
    )


def briefing_executable() -> str:
    """The console script of the venv running the tests (the one `pip install -e .` put next to python)."""
    script = Path(sys.executable).parent / "briefing"
    if not script.exists():
        pytest.fail(f"no `briefing` console script next to {sys.executable}: run `pip install -e .` in this venv")
    return str(script)


class Process:
    """A process running inside the namespace; its output goes to `log`. Stop it with `stop()` or `with`."""

    def __init__(self, popen: subprocess.Popen[bytes], log: Path, argv: Sequence[str]) -> None:
        self.popen = popen
        self.log = log
        self.argv = list(argv)

    @property
    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 10) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=timeout)

    def __enter__(self) -> Process:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class NetworkNamespace:
    """One network + mount namespace with only `lo`; see the module docstring. Use `open_namespace()`."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="briefing-netns-"))
        self.hosts_file = self.folder / "hosts"
        self.hosts: dict[str, list[str]] = {"localhost": ["127.0.0.1", "::1"]}
        self.addresses: set[str] = set()
        self._holder: subprocess.Popen[bytes] | None = None
        self._processes: list[Process] = []
        self._clients: list[subprocess.Popen[str]] = []

    @property
    def pid(self) -> int:
        assert self._holder is not None, "the namespace is not running"
        return self._holder.pid

    # life cycle ---------------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the namespaces, check they hold nothing but `lo`, bring it up and mount the hosts file."""
        holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "sleep", "infinity"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._holder = holder
        deadline = time.monotonic() + 10
        # unshare execs `sleep` only once both namespaces exist and mount propagation is private
        while _command_name(holder.pid) != "sleep":
            if holder.poll() is not None:
                error = holder.stderr.read().decode(errors="replace").strip() if holder.stderr else ""
                raise NamespaceError(f"`unshare --net --mount` failed ({holder.returncode}): {error}")
            if time.monotonic() > deadline:
                raise NamespaceError("`unshare --net --mount` did not start within 10 s")
            time.sleep(0.01)
        if os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            raise NamespaceError("the holder process shares this process's network namespace")
        links = self._checked(["ip", "-o", "link", "show"]).stdout.splitlines()
        names = [line.split(":")[1].strip() for line in links if line.strip()]
        if names != ["lo"]:
            raise NamespaceError(f"the new namespace has interfaces besides lo: {names}")
        self._checked(["ip", "link", "set", "lo", "up"])
        self._write_hosts()
        self._checked(["mount", "--bind", str(self.hosts_file), "/etc/hosts"])

    def close(self) -> None:
        for client in self._clients:
            if client.poll() is None:
                client.kill()
                client.communicate(timeout=10)
        self._clients.clear()
        for process in reversed(self._processes):
            process.stop()
        self._processes.clear()
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait(timeout=10)
            if self._holder.stderr:
                self._holder.stderr.close()
            self._holder = None
        shutil.rmtree(self.folder, ignore_errors=True)

    # addresses and names ------------------------------------------------------------------------------

    def add_address(self, *addresses: str) -> None:
        """Put addresses on the namespace's `lo` (IPv4 as /32, IPv6 as /128; `nodad` so they work at once)."""
        for text in addresses:
            address = ipaddress.ip_address(text)
            if str(address) in self.addresses or address.is_loopback:
                continue
            if address.version == 4:
                self._checked(["ip", "addr", "add", f"{address}/32", "dev", "lo"])
            else:
                self._checked(["ip", "-6", "addr", "add", f"{address}/128", "dev", "lo", "nodad"])
            self.addresses.add(str(address))

    def add_host(self, name: str, *addresses: str) -> None:
        """Give `name` these addresses (A and AAAA records, as far as the resolver is concerned)."""
        if not addresses:
            raise ValueError("a host needs at least one address")
        self.add_address(*addresses)
        self.hosts[name] = [str(ipaddress.ip_address(a)) for a in addresses]
        self._write_hosts()

    def _write_hosts(self) -> None:
        # rewritten in place: the bind mount holds this inode, so a new file (os.replace) would not be seen
        lines = [f"{address} {name}" for name, addresses in self.hosts.items() for address in addresses]
        with self.hosts_file.open("w", encoding="utf-8") as hosts:
            hosts.write("\n".join(lines) + "\n")

    # running things inside ----------------------------------------------------------------------------

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` prefixed so that it runs inside the namespaces."""
        return ["nsenter", f"--target={self.pid}", "--net", "--mount", "--", *argv]

    def run(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | str | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside and wait for it; stdout and stderr are captured as text."""
        return subprocess.run(
            self.command(argv),
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def popen(
        self, argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | str | None = None
    ) -> subprocess.Popen[str]:
        """Start a command inside without waiting (stdout and stderr piped as text): for a client that runs
        while the test does something else. The caller waits for it (`communicate`); one still running when
        the namespace closes is killed."""
        client = subprocess.Popen(
            self.command(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._clients.append(client)
        return client

    def start(
        self,
        argv: Sequence[str],
        *,
        wait_for: Sequence[tuple[str, int]] = (),
        env: dict[str, str] | None = None,
        cwd: Path | str | None = None,
        timeout: float = 30,
    ) -> Process:
        """Start a server inside; return once every (address, port) of `wait_for` accepts connections.
        It is stopped by `Process.stop()`, at the end of its `with` block, or when the namespace closes."""
        log = self.folder / f"process-{len(self._processes)}.log"
        with log.open("wb") as output:
            popen = subprocess.Popen(
                self.command(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output, stderr=output
            )
        process = Process(popen, log, argv)
        self._processes.append(process)
        if wait_for:
            endpoints = [str(part) for host, port in wait_for for part in (host, port)]
            probe = self.run([sys.executable, "-c", _PORT_PROBE, str(timeout), *endpoints], timeout=timeout + 10)
            if probe.returncode != 0:
                process.stop()
                raise NamespaceError(
                    f"{' '.join(argv)} did not start: {probe.stderr.strip()}\n{process.output[-3000:]}"
                )
        return process

    def serve_http(self, sites: Sequence[Site], timeout: float = 30) -> HttpServers:
        """Real HTTP servers (tests/netns_http_server.py) for these sites, listening inside."""
        spec_path = self.folder / f"http-{len(self._processes)}.json"
        log_path = spec_path.with_suffix(".requests.jsonl")
        spec = {"log": str(log_path), "sites": [site.spec() for site in sites]}
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        endpoints = [(address, site.port) for site in sites for address in site.addresses]
        process = self.start(
            [sys.executable, str(HTTP_SERVER_SCRIPT), str(spec_path)], wait_for=endpoints, timeout=timeout
        )
        return HttpServers(process, log_path)

    def _checked(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        result = self.run(argv, timeout=30)
        if result.returncode != 0:
            raise NamespaceError(f"`{' '.join(argv)}` failed inside the namespace: {result.stderr.strip()}")
        return result


class NamespaceError(RuntimeError):
    """The namespace could not be created or set up."""


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def open_namespace() -> Iterator[NetworkNamespace]:
    """Yield a ready namespace (the `internet` fixture); fail under CI or skip when it cannot be made."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        namespace_unavailable(f"not found on PATH: {', '.join(missing)}")
    namespace = NetworkNamespace()
    try:
        namespace.open()
    except (NamespaceError, OSError, subprocess.SubprocessError) as exc:
        namespace.close()
        namespace_unavailable(str(exc))
        return
    try:
        yield namespace
    finally:
        namespace.close()


# HTTP servers described as data --------------------------------------------------------------------------


@dataclass
class Route:
    """What one path answers. Revalidation: a request whose If-None-Match holds `etag`, or whose
    If-Modified-Since equals `last_modified`, gets 304. `gzip` compresses the body when the client accepts
    gzip. `delay`: seconds before the status line; `trickle`: seconds between the body's 8 pieces;
    `stall`: never answer; `reset`: read the request, then reset the connection (TCP RST)."""

    body: str = ""
    status: int = 200
    content_type: str = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    etag: str = ""
    last_modified: str = ""
    gzip: bool = False
    delay: float = 0.0
    trickle: float = 0.0
    stall: bool = False
    reset: bool = False

    @classmethod
    def redirect(cls, location: str, status: int = 301) -> Route:
        return cls(status=status, content_type="text/plain", headers={"Location": location}, body="moved")


@dataclass
class Site:
    """Addresses (all on one port) answering the same routes, whatever the Host header says."""

    addresses: list[str]
    routes: dict[str, Route]
    port: int = 80

    def spec(self) -> dict[str, Any]:
        return {
            "addresses": self.addresses,
            "port": self.port,
            "routes": {path: vars(route) for path, route in self.routes.items()},
        }


@dataclass
class LoggedRequest:
    """One request as the server saw it, and what it answered (`status` 0 for a reset or a stall)."""

    local_address: str
    path: str
    host: str
    if_none_match: str
    if_modified_since: str
    accept_encoding: str
    status: int
    content_encoding: str
    outcome: str  # answered | reset | stalled


class HttpServers:
    """The running HTTP servers and their request log."""

    def __init__(self, process: Process, log_path: Path) -> None:
        self.process = process
        self.log_path = log_path

    def requests(self, path: str | None = None, address: str | None = None) -> list[LoggedRequest]:
        if not self.log_path.exists():
            return []
        logged = [
            LoggedRequest(**json.loads(line))
            for line in self.log_path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        local = str(ipaddress.ip_address(address)) if address is not None else None
        return [r for r in logged if path in {None, r.path} and local in {None, r.local_address}]

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> HttpServers:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def briefing_env(project: Path, **extra: str) -> dict[str, str]:
    """The environment of a `briefing` command run inside the namespace on `project` with DEFAULT settings:
    no BRIEFING_* variable but the content and output folders, its own Prefect home, no proxy, no API URL
    (each run starts Prefect's embedded server on the namespace's loopback)."""
    dropped = ("BRIEFING_", "PREFECT_API_URL", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(dropped)}
    env.update(
        {
            "BRIEFING_CONTENT_DIR": str(project / "content"),
            "BRIEFING_OUTPUT_DIR": str(project / "outputs"),
            "PREFECT_HOME": str(project / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "COLUMNS": "200",
            **extra,
        }
    )
    return env

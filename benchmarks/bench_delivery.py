"""Delivery benchmark: the real send path (ledger + prebuilt messages + SMTP) against a loopback aiosmtpd.

Measured in one run, against the same aiosmtpd server (its own process, keeping every message in memory):
- ceiling: pre-built message bytes over one connection with smtplib (no building, no ledger);
- ours: `deliver_briefing` to N recipients (SQLite ledger, one commit before and after each message) with
  1 and with 4 SMTP connections: messages/s and the peak RSS growth of the process during the send;
- prefect-email: `email_send_message` (its function body, without Prefect's task machinery, so the
  baseline is timed at its most favourable) on 500 recipients, one connection per message;
- message building alone: `EmailMessage` from scratch per recipient vs a prepared message;
- DKIM: prepared message + dkimpy signature per recipient.

Run: python -m benchmarks.bench_delivery [--small]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import smtplib
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
LEADING_DOTS = re.compile(rb"(?m)^\.\.")
AUDIENCE = "investors"  # the largest email of the sample briefing


# --- the server, in its own process ----------------------------------------------------------------------


class MemoryMailbox:
    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self.recipients: set[str] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.count += len(envelope.rcpt_tos)
        self.bytes += len(envelope.original_content or b"")
        self.recipients.update(envelope.rcpt_tos)
        return "250 2.0.0 queued"


def bulk_data_protocol() -> type:
    """aiosmtpd's SMTP with DATA read in 64 KB chunks instead of line by line (everything else unchanged).

    Stock aiosmtpd spends most of its time reading the ~600 base64 lines of each message one `readuntil` at a
    time; a C MTA does not. Measuring against this variant shows what the sender itself can do."""
    from aiosmtpd import smtp

    class BulkDataSMTP(smtp.SMTP):
        async def smtp_DATA(self, arg: str) -> None:  # noqa: N802
            if await self.check_helo_needed() or self.envelope is None:
                return
            if not self.envelope.rcpt_tos:
                await self.push("503 Error: need RCPT command")
                return
            await self.push("354 End data with <CR><LF>.<CR><LF>")
            buffer = bytearray()
            while not (buffer.endswith(b"\r\n.\r\n") or buffer == b".\r\n"):
                chunk = await self._reader.read(65536)
                if not chunk:
                    return
                buffer += chunk
            content = LEADING_DOTS.sub(b".", bytes(buffer[:-3]))
            self.envelope.content = self.envelope.original_content = content
            status = await self._call_handler_hook("DATA")
            self._set_post_data_state()
            await self.push(status)

    return BulkDataSMTP


def _serve(sock: socket.socket, control: Connection, bulk: bool) -> None:
    """One server process: aiosmtpd's SMTP protocol on the shared listening socket (pre-fork, like an MTA)."""
    from aiosmtpd import smtp

    protocol = bulk_data_protocol() if bulk else smtp.SMTP
    mailbox = MemoryMailbox()
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        loop.create_server(lambda: protocol(mailbox, data_size_limit=0, loop=loop), sock=sock)
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    control.send("ready")
    while True:
        command = control.recv()
        if command == "stats":
            control.send((mailbox.count, mailbox.recipients, mailbox.bytes))
        elif command == "reset":
            mailbox.__init__()  # type: ignore[misc]
            control.send("ok")
        else:
            break
    loop.call_soon_threadsafe(server.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


class ServerProcess:
    """aiosmtpd in `processes` forked processes accepting on one loopback socket; stats summed over them."""

    def __init__(self, processes: int = 1, *, bulk: bool = False) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.processes = processes
        context = multiprocessing.get_context("fork")
        self.controls: list[Connection] = []
        self.children = []
        for _ in range(processes):
            parent, child = context.Pipe()
            self.controls.append(parent)
            self.children.append(context.Process(target=_serve, args=(self.sock, child, bulk), daemon=True))

    def __enter__(self) -> ServerProcess:
        for child in self.children:
            child.start()
        for control in self.controls:
            assert control.recv() == "ready"
        return self

    def __exit__(self, *exc: object) -> None:
        for control in self.controls:
            control.send("stop")
        for child in self.children:
            child.join(10)
        self.sock.close()

    def stats(self) -> tuple[int, int, int]:
        count, size, recipients = 0, 0, set()
        for control in self.controls:
            control.send("stats")
            n, rcpts, nbytes = control.recv()
            count, size = count + n, size + nbytes
            recipients |= rcpts
        return count, len(recipients), size

    def reset(self) -> None:
        for control in self.controls:
            control.send("reset")
            control.recv()


# --- measuring --------------------------------------------------------------------------------------------


class PeakRss:
    """Samples this process's resident memory every 20 ms; `growth` is the peak above the start, in MB."""

    def __init__(self) -> None:
        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth(self) -> float:
        return (self.peak - self.start) / 1e6

    @property
    def total(self) -> float:
        return self.peak / 1e6


@dataclass
class Row:
    name: str
    messages: int
    seconds: float
    memory: str = ""
    note: str = ""

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


def _project(tmp: Path, recipients: int) -> Path:
    shutil.copytree(REPO / "content", tmp / "content")
    rows = ["email,name,locale", *(f"reader{i:05d}@example.net,读者{i},zh-CN" for i in range(recipients))]
    (tmp / "content" / "subscribers" / f"{AUDIENCE}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp


def _settings(project: Path, **overrides: Any) -> Any:
    from flows.settings import load_settings

    return load_settings(
        content_dir=project / "content",
        output_dir=project / "outputs",
        secret="benchmark-secret-0123456789-abcdefghijkl",
        base_url="https://briefing.example.org",
        **overrides,
    )


def _render(settings: Any, store: Any, content: Any) -> Any:
    from flows.publish import assign_paths, render_for_archive

    briefing = content.ready[0]
    page = assign_paths(store, content.ready)[briefing.slug]
    return render_for_archive(settings, content, briefing, page, audiences=[AUDIENCE])


def bench_ours(server: ServerProcess, recipients: int, connections: int) -> Row:
    from flows.content import load_content
    from flows.deliver import deliver_briefing
    from flows.store import Store

    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp:
        project = _project(Path(tmp), recipients)
        settings = _settings(
            project, smtp_url=f"smtp://127.0.0.1:{server.port}", smtp_connections=connections, smtp_tls="none"
        )
        store = Store(settings.store_url)
        content = load_content(settings.content_dir).content
        rendered = _render(settings, store, content)
        server.reset()
        with PeakRss() as memory:
            started = time.perf_counter()
            report = deliver_briefing(rendered, content, store, settings, audiences=[AUDIENCE])
            seconds = time.perf_counter() - started
        store.close()
    count, unique, size = server.stats()
    assert report.sent_now == recipients == count == unique, (report.to_dict(), count, unique)
    return Row(
        f"ours: deliver_briefing, {connections} connection{'s' if connections > 1 else ''}",
        recipients,
        seconds,
        f"+{memory.growth:.0f} MB (RSS {memory.total:.0f} MB)",
        f"{size / count / 1024:.0f} KB/message, ledger on SQLite",
    )


def _sample_email() -> tuple[Any, Any, Any]:
    from flows.content import load_content
    from flows.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    project = _project(tmp, 1)
    settings = _settings(project)
    store = Store(settings.store_url)
    content = load_content(settings.content_dir).content
    rendered = _render(settings, store, content).emails[AUDIENCE]
    store.close()
    return settings, content, rendered


def bench_ceiling(server: ServerProcess, messages: int, data: bytes) -> Row:
    server.reset()
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", server.port) as conn:
        for i in range(messages):
            conn.sendmail("briefing@example.org", [f"reader{i:05d}@example.net"], data)
    seconds = time.perf_counter() - started
    assert server.stats()[0] == messages
    return Row("ceiling: pre-built bytes, smtplib, 1 connection", messages, seconds, note="no building, no ledger")


def bench_prefect_email(server: ServerProcess, messages: int, rendered: Any) -> Row:
    from prefect_email import EmailServerCredentials, email_send_message

    credentials = EmailServerCredentials(smtp_server="127.0.0.1", smtp_port=server.port, smtp_type="INSECURE")
    send = email_send_message.fn

    async def run() -> None:
        for i in range(messages):
            await send(
                subject=rendered.subject,
                msg=rendered.html,
                msg_plain=rendered.text,
                email_server_credentials=credentials,
                email_from="briefing@example.org",
                email_to=f"reader{i:05d}@example.net",
            )

    server.reset()
    started = time.perf_counter()
    asyncio.run(run())
    seconds = time.perf_counter() - started
    assert server.stats()[0] == messages
    return Row("prefect-email: email_send_message", messages, seconds, note="new connection per message")


def build_from_scratch(rendered: Any, settings: Any, email: str, name: str) -> bytes:
    """The straightforward way: a whole EmailMessage per recipient (the skeleton's builder)."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = formataddr((settings.from_name, settings.from_address))
    msg["To"] = formataddr((name, email))
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = f"<{email}.{rendered.slug}@example.org>"
    msg["List-Unsubscribe"] = "<https://example.org/unsubscribe?t=x>"
    msg.set_content(rendered.text, subtype="plain", cte="base64")
    msg.add_alternative(rendered.html, subtype="html", cte="base64")
    return msg.as_bytes()


def bench_building(messages: int, settings: Any, rendered: Any) -> list[Row]:
    from flows.messages import prepare_message
    from flows.models import Subscriber

    started = time.perf_counter()
    for i in range(messages):
        build_from_scratch(rendered, settings, f"reader{i:05d}@example.net", f"读者{i}")
    scratch = Row("build: EmailMessage per recipient", messages, time.perf_counter() - started)
    started = time.perf_counter()
    prepared = prepare_message(rendered, settings, audience_name="投资")
    for i in range(messages):
        prepared.for_recipient(Subscriber(email=f"reader{i:05d}@example.net", name=f"读者{i}"))
    ours = Row("build: prepared once + per-recipient parts", messages, time.perf_counter() - started)
    return [scratch, ours]


def bench_dkim(messages: int, settings: Any, rendered: Any) -> Row:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from flows.messages import prepare_message
    from flows.models import Subscriber

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = Path(tempfile.mkdtemp(prefix="bench-dkim-")) / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    signed = settings.model_copy(update={"dkim_key_path": path})
    prepared = prepare_message(rendered, signed, audience_name="投资")
    started = time.perf_counter()
    for i in range(messages):
        prepared.for_recipient(Subscriber(email=f"reader{i:05d}@example.net"))
    return Row("build + DKIM (dkimpy, RSA-2048)", messages, time.perf_counter() - started)


def print_table(rows: list[Row], baselines: dict[str, Row]) -> None:
    header = f"{'case':<48} {'msgs':>6} {'s':>7} {'msg/s':>8} " + " ".join(f"{'×' + k:>10}" for k in baselines)
    print(header)
    print("-" * len(header))
    for row in rows:
        ratios = " ".join(f"{row.rate / b.rate:>10.2f}" for b in baselines.values())
        print(
            f"{row.name:<48} {row.messages:>6} {row.seconds:>7.2f} {row.rate:>8.0f} {ratios}  {row.memory} {row.note}"
        )


def bench_server(
    processes: int, recipients: int, baseline_n: int, probe: bytes, rendered: Any, *, bulk: bool = False
) -> list[Row]:
    with ServerProcess(processes, bulk=bulk) as server:
        ceiling = bench_ceiling(server, min(recipients, 3000), probe)
        prefect = bench_prefect_email(server, baseline_n, rendered)
        ours = [bench_ours(server, recipients, 1), bench_ours(server, recipients, 4)]
    label = f"aiosmtpd{' (bulk DATA reader)' if bulk else ''} × {processes} process{'es' if processes > 1 else ''}"
    print(f"\n{label}")
    print_table([ceiling, prefect, *ours], {"ceiling": ceiling, "prefect-email": prefect})
    best = max(ours, key=lambda r: r.rate)
    print(
        f"best: {best.rate:.0f} msg/s = {best.rate / prefect.rate:.1f}× prefect-email, "
        f"{best.rate / ceiling.rate:.2f}× the one-connection ceiling (targets: ≥ 500 msg/s, ≥ 10× prefect-email)"
    )
    return [ceiling, prefect, *ours]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1,000 recipients instead of 10,000 (quick check)")
    parser.add_argument(
        "--server-processes", default="1,2", help="aiosmtpd process counts to measure against (default 1,2)"
    )
    parser.add_argument(
        "--bulk-data",
        action="store_true",
        help="also measure against aiosmtpd with a chunked DATA reader (shows the sender's own capacity)",
    )
    args = parser.parse_args()
    recipients = 1_000 if args.small else 10_000
    baseline_n = 100 if args.small else 500
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    settings, _content, rendered = _sample_email()
    probe = build_from_scratch(rendered, settings, "reader@example.net", "读者")
    print(
        f"message: {AUDIENCE} email of the sample briefing, HTML {len(rendered.html.encode()) / 1024:.1f} KB, "
        f"{len(probe) / 1024:.1f} KB on the wire; {recipients} recipients; {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for processes in (int(p) for p in args.server_processes.split(",")):
        bench_server(processes, recipients, baseline_n, probe, rendered)
    if args.bulk_data:
        bench_server(1, recipients, baseline_n, probe, rendered, bulk=True)
    building = bench_building(min(recipients, 2000), settings, rendered)
    dkim_row = bench_dkim(100 if args.small else 300, settings, rendered)
    print("\nbuilding messages (no network)")
    print_table([*building, dkim_row], {"scratch": building[0]})


if __name__ == "__main__":
    main()

"""Benchmark of the collect stage: 10,000 messages in a Dovecot mailbox (Maildir, loopback IMAP), against a plain
imaplib fetch loop measured in the same run.

The mailbox holds what a newsletter's reply address receives: replies to a sent briefing (quoting it), RFC 3464
bounces, ARF complaints, auto-replies and strangers' mail (70/15/5/5/5 %). The baseline only reads: LOGIN,
SELECT, UID SEARCH and UID FETCH BODY.PEEK[] in batches of 100 — the floor of any IMAP reader. `collect_mailbox`
also parses and classifies each message, records each batch and its effects in the store (SQLite) in one
transaction, and MOVEs every message to the folder of its class. Each side runs in a child process of its own and
reports its wall time, its own CPU time (the rest is waiting for Dovecot, or for the CPU on a busy machine) and
its peak RSS (VmHWM, which exec resets). A warm-up pass first lets Dovecot build its index, so neither side pays
for that. The load average before and after is printed: on a shared machine, compare runs made close together.

    python -m benchmarks.bench_collect [--small | --messages N]

Needs Dovecot (Debian: dovecot-imapd) and, as root, a `nobody` user to own the Maildir.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from tests.mailbox_support import Dovecot

REPO = Path(__file__).resolve().parent.parent

BASELINE = """
import imaplib, json, sys, time
host, port, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
started, cpu = time.perf_counter(), time.process_time()
imap = imaplib.IMAP4(host, port)
imap.login(user, password)
imap.select("INBOX")
uids = imap.uid("SEARCH", None, "ALL")[1][0].split()
total = 0
for start in range(0, len(uids), 100):
    batch = b",".join(uids[start:start + 100]).decode()
    typ, data = imap.uid("FETCH", batch, "(BODY.PEEK[])")
    total += sum(len(item[1]) for item in data if isinstance(item, tuple))
imap.logout()
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"messages": len(uids), "bytes": total, "seconds": seconds, "cpu": cpu, "peak_kb": peak}))
"""

COLLECT = """
import json, sys, time
from flows.collect import collect_mailbox
from flows.core.settings import load_settings
from flows.core.store import Store
settings = load_settings()
store = Store(settings.store_url)
started, cpu = time.perf_counter(), time.process_time()
report = collect_mailbox(settings, store)
seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"messages": report.seen, "seconds": seconds, "cpu": cpu, "processed": dict(report.processed),
                  "moved": report.moved, "peak_kb": peak}))
"""

BRIEFING_TEXT = (
    "GitHub recorded roughly one billion commits across 2025 and now sees about 275 million a week.\n"
    "维护者反映，现在拖慢项目的是评审队列，而不是计算资源。\n"
) * 20


def _reply(i: int, message_id: str) -> bytes:
    quoted = "\n".join("> " + line for line in BRIEFING_TEXT.splitlines())
    header = "2026年6月5日 09:00，Briefing <briefing@example.org> 写道："
    body = f"第 {i} 位读者：评审队列才是瓶颈，我们改看回滚率。\n\n{header}\n{quoted}\n"
    subject = f"Re: 【阿头学】briefing {i}"
    return _message(f"读者 {i} <reader{i}@example.net>", subject, body, {"In-Reply-To": message_id})


def _message(sender: str, subject: str, body: str, headers: dict[str, str]) -> bytes:
    from email.message import EmailMessage
    from email.policy import SMTP

    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = "briefing@example.org"
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2026, 6, 5, 10, 0, tzinfo=UTC))
    message["Message-ID"] = f"<bench-{abs(hash((sender, subject)))}@example.net>"
    for key, value in headers.items():
        message[key] = value
    message.set_content(body)
    return message.as_bytes()


def _bounce(i: int, recipient: str) -> bytes:
    boundary = f"b{i}"
    return (
        f"Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.example.org\r\nTo: briefing@example.org\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn{i}@mx.example.org>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {'5.1.1' if i % 2 else '4.2.2'}\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def _complaint(i: int, recipient: str) -> bytes:
    boundary = f"c{i}"
    return (
        f"From: fbl@isp.example\r\nTo: abuse@example.org\r\nSubject: complaint\r\nMessage-ID: <arf{i}@isp.example>\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nA complaint.\r\n"
        f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n"
        f"Original-Rcpt-To: <{recipient}>\r\n\r\n--{boundary}--\r\n"
    ).encode()


def fill_mailbox(server: Dovecot, count: int, message_ids: list[str]) -> int:
    """Write `count` messages straight into the Maildir (as an MTA's delivery agent leaves them)."""
    new = server.maildir / "new"
    for sub in ("new", "cur", "tmp"):
        (server.maildir / sub).mkdir(exist_ok=True)
        os.chown(server.maildir / sub, server.uid, server.gid)
    size = 0
    for i in range(count):
        kind = i % 20
        if kind < 14:
            data = _reply(i, message_ids[i % len(message_ids)])
        elif kind < 17:
            data = _bounce(i, f"sub{i % 500}@example.org")
        elif kind == 17:
            data = _complaint(i, f"sub{i % 500}@example.org")
        elif kind == 18:
            auto = {"Auto-Submitted": "auto-replied"}
            data = _message(f"away{i}@example.net", "Automatic reply: out of office", "I am away.", auto)
        else:
            data = _message(f"stranger{i}@example.net", f"hello {i}", "A question about advertising.", {})
        path = new / f"{1780000000 + i}.M{i}P1.bench"
        path.write_bytes(data)
        os.chown(path, server.uid, server.gid)
        size += len(data)
    return size


def seed_ledger(store_url: str, count: int) -> list[str]:
    """Ledger rows of one sent briefing, so replies match (briefing, audience, subscriber)."""
    from sqlalchemy import insert

    from flows.core.store import Store, utcnow
    from flows.core.store.schema import send_ledger

    store = Store(store_url)
    now = utcnow()
    ids = [f"<bench-briefing.atou.{i:020x}@example.org>" for i in range(count)]
    rows = [
        {
            "slug": "bench-briefing",
            "audience": "atou",
            "recipient": f"sub{i}@example.org",
            "content_hash": "h",
            "message_id": ids[i],
            "state": "sent",
            "attempts": 1,
            "last_reply": "250 ok",
            "created_at": now,
            "updated_at": now,
        }
        for i in range(count)
    ]
    with store.begin() as conn:
        conn.execute(insert(send_ledger), rows)
    store.close()
    return ids


def run_child(code: str, args: list[str], env: dict[str, str]) -> tuple[dict[str, object], float]:
    """Run `code` in a child Python; returns its JSON result and its peak RSS in MB."""
    result = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, cwd=REPO, timeout=3600, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"child failed ({result.returncode}): {result.stderr.decode(errors='replace')[-2000:]}")
    data = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return data, int(data["peak_kb"]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="1,000 messages instead of 10,000 (quick check)")
    parser.add_argument("--messages", type=int, default=0, help="this many messages (the mix stays the same)")
    args = parser.parse_args()
    count = args.messages or (1_000 if args.small else 10_000)
    load_before = os.getloadavg()
    server = Dovecot().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp:
            store_url = f"sqlite:///{Path(tmp) / 'store.db'}"
            message_ids = seed_ledger(store_url, 500)
            size = fill_mailbox(server, count, message_ids)
            env = {
                **os.environ,
                "BRIEFING_CONTENT_DIR": str(REPO / "content"),
                "BRIEFING_OUTPUT_DIR": tmp,
                "BRIEFING_DATABASE_URL": store_url,
                "BRIEFING_IMAP_URL": server.url(),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            }
            login = ["127.0.0.1", str(server.port), "editor", "mailbox-test-password"]
            run_child(BASELINE, login, env)  # warm-up: Dovecot indexes the new Maildir
            base, base_rss = run_child(BASELINE, login, env)
            collected, collect_rss = run_child(COLLECT, [], env)
            counts = server.folder_counts()
    finally:
        server.remove()
    assert base["messages"] == count and collected["messages"] == count, (base, collected)
    assert counts.get("INBOX") == 0, counts
    load_after = os.getloadavg()
    base_rate = count / float(base["seconds"])  # type: ignore[arg-type]
    rate = count / float(collected["seconds"])  # type: ignore[arg-type]
    print(f"{count:,} messages, {size / 1e6:.1f} MB in the Maildir; processed: {collected['processed']}")
    print(f"after collect: {counts}")
    print(f"load average (1/5/15 min) before: {_load(load_before)}; after: {_load(load_after)}; {os.cpu_count()} CPUs")
    print()
    print(
        "| run | messages | seconds | messages/s | CPU s (own process) | peak RSS (MB) | speed vs baseline "
        "| RSS vs baseline |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| imaplib fetch loop (read only) | {count:,} | {base['seconds']:.2f} | {base_rate:,.0f} | "
        f"{base['cpu']:.2f} | {base_rss:.0f} | 1.00 | 1.00 |"
    )
    print(
        f"| collect_mailbox (classify, record, move) | {count:,} | {collected['seconds']:.2f} | {rate:,.0f} | "
        f"{collected['cpu']:.2f} | {collect_rss:.0f} | {rate / base_rate:.3f} | {collect_rss / base_rss:.2f} |"
    )


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.1f}" for v in values)


if __name__ == "__main__":
    main()

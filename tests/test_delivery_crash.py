"""Kill the sending process (SIGKILL, a real `python -m flows send`) mid-send, then run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.core.store import Store, ledger
from tests.delivery_support import FaultyMailbox, SmtpServer, load_sample, write_subscribers

REPO = Path(__file__).resolve().parent.parent
SECRET = "crash-test-secret-0123456789-abcdefghijkl"


def _send(
    project: Path, server: SmtpServer, *extra: str, wait: bool = True
) -> subprocess.Popen[bytes] | subprocess.CompletedProcess[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "BRIEFING_SMTP_URL": server.url,
        "BRIEFING_SECRET": SECRET,
        "BRIEFING_SMTP_RATE": "150",
        "BRIEFING_DELIVERY_RETRY_DELAY": "0.05",
    }
    cmd = [sys.executable, "-m", "flows", "--json", "send", "--audience", "atou", *extra]
    if wait:
        return subprocess.run(cmd, env=env, cwd=project, capture_output=True, timeout=300)
    return subprocess.Popen(cmd, env=env, cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sigkill_mid_send_loses_nothing_and_duplicates_nothing(project: Path, settings) -> None:
    recipients = [f"kill{i:04d}@example.net" for i in range(240)]
    write_subscribers(project, "atou.csv", recipients)
    slug = load_sample(project).ready[0].slug
    handler = FaultyMailbox(reply_delay=0.02)
    with SmtpServer(handler) as server:
        proc = _send(project, server, "--slug", slug, wait=False)
        deadline = time.monotonic() + 120
        while handler.count() < 60 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"the sender finished before it could be killed: {proc.stderr.read()!r}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = handler.count()
        assert 60 <= killed_at < len(recipients)

        second = _send(project, server, "--slug", slug)
        store = Store(settings.store_url)
        uncertain = {r.recipient for r in ledger.rows_in_state(store, ledger.UNCERTAIN, slug, "atou")}
        counts = handler.by_recipient()
        assert set(counts) | uncertain == set(recipients), "nothing lost"
        assert max(counts.values()) == 1, "nothing sent twice"
        assert len(uncertain) <= 1, "only the row in flight at the kill can be uncertain"
        report = json.loads(second.stdout)["briefings"][0]
        assert report["uncertain"] == len(uncertain)
        assert second.returncode == (6 if uncertain else 0), second.stderr.decode()
        reported = {f["recipient"] for f in report["audiences"]["atou"]["failures"] if f["state"] == "uncertain"}
        assert reported == uncertain

        third = _send(project, server, "--slug", slug, "--resend-uncertain")
        assert third.returncode == 0, third.stderr.decode()
        counts = handler.by_recipient()
        assert set(counts) == set(recipients)
        assert {r for r, n in counts.items() if n > 1} <= uncertain
        assert ledger.summarise(store, slug)[ledger.SENT] == len(recipients)
        store.close()

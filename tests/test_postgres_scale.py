"""Two deliverers, one PostgreSQL ledger, one loopback SMTP server, 5,000 recipients in one audience.

Kill test: two plain deliverer processes (`python -m flows.app.worker`) send at the same time; one is killed
with SIGKILL mid-send and a later run on the surviving side finishes the audience. Every recipient gets exactly
one message, except a row the ledger reports `uncertain` (the message in flight when the process died).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_support import REPO, CountingSmtp, deliver_env, fresh_schema, write_big_audience

from flows.core.content import load_content
from flows.core.store import Store, ledger

RECIPIENTS = int(os.environ.get("BRIEFING_SCALE_RECIPIENTS", "5000"))  # smaller only while developing
AUDIENCE = "atou"

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_url(postgres_url: str) -> Iterator[str]:
    with fresh_schema(postgres_url) as url:
        yield url


def _deliverer(env: dict[str, str], slug: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.app.worker", slug, "--audience", AUDIENCE, *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_two_deliverers_one_killed_mid_send_lose_nothing_and_send_nothing_twice(project: Path, pg_url: str) -> None:
    emails = write_big_audience(project / "content", AUDIENCE, RECIPIENTS)
    slug = load_content(project / "content").content.ready[0].slug
    store = Store(pg_url)
    with CountingSmtp() as smtp:
        env = deliver_env(project, pg_url, smtp.port)
        victim, survivor = _deliverer(env, slug), _deliverer(env, slug)
        try:
            # both connections are sending before the kill, so it lands mid-send
            _wait_for(lambda: smtp.busy_peers(100) == 2 or victim.poll() is not None, 180, "both deliverers sending")
            assert victim.poll() is None, "the first deliverer finished before it could be killed"
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            first = _finish(survivor)
        finally:
            for proc in (victim, survivor):
                if proc.poll() is None:
                    proc.kill()
        assert first["states"].get("sent", 0) > 0

        # the next run on the surviving side: dead worker's rows back to the queue, its in-flight row uncertain
        _finish(_deliverer(env, slug))
        counts = dict(smtp.per_recipient)

        rows = {r.recipient: r for state in ledger.STATES for r in ledger.rows_in_state(store, state, slug)}
        assert set(rows) == set(emails)
        states = {r.state for r in rows.values()}
        assert states <= {ledger.SENT, ledger.UNCERTAIN}, states
        uncertain = {e for e, r in rows.items() if r.state == ledger.UNCERTAIN}
        assert len(uncertain) <= 1  # one message per connection can be in flight when a process dies
        for email, row in rows.items():
            received = counts.get(email, 0)
            if row.state == ledger.SENT:
                assert received == 1, f"{email}: {received} messages for a row marked sent"
            else:
                assert received <= 1, f"{email}: {received} messages for an uncertain row"
        assert set(counts) <= set(emails)

        # an operator who accepts a possible duplicate resends the uncertain rows: nobody is left out
        _finish(_deliverer(env, slug, "--resend-uncertain"))
        final = dict(smtp.per_recipient)
    assert all(final.get(e, 0) >= 1 for e in emails)
    assert {e for e in emails if final[e] > 1} <= uncertain
    assert ledger.summarise(store, slug) == {ledger.SENT: RECIPIENTS}
    store.close()

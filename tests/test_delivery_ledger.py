"""The send ledger on its own: atomic claims, leases of dead workers, versions, the skeleton's call forms."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from flows.core.store import Store, ledger


def _queue(store: Store, n: int, content_hash: str = "h1") -> None:
    entries = [ledger.Entry(f"r{i:04d}@example.org", f"<m{i}@example.org>") for i in range(n)]
    assert ledger.enqueue(store, "brief", "atou", content_hash, entries) == n


def _claim_and_send_all(store: Store, worker: str, barrier: threading.Barrier) -> list[int]:
    sent: list[int] = []
    barrier.wait()
    while rows := ledger.claim_batch(store, "brief", "atou", worker, 13, content_hash="h1"):
        for row in rows:
            assert ledger.start_sending(store, row.id, worker)
            assert ledger.finish(store, row.id, ledger.SENT, "250 ok", worker=worker)
            sent.append(row.id)
    return sent


def test_threads_claiming_at_once_send_each_row_once(store: Store) -> None:
    """Runs on SQLite and PostgreSQL (the `store` fixture is parametrised over both)."""
    _queue(store, 400)
    barrier = threading.Barrier(5)
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda i: _claim_and_send_all(store, f"host:1:{i}", barrier), range(5)))
    every = [row_id for ids in results for row_id in ids]
    assert len(every) == len(set(every)) == 400
    assert ledger.summarise(store, "brief") == Counter({ledger.SENT: 400})


def test_rows_of_a_killed_worker_become_uncertain_or_go_back_to_the_queue(store: Store) -> None:
    _queue(store, 5)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    worker = f"{ledger.worker_id().split(':')[0]}:{int(dead.stdout)}:deadbeef"  # a pid that no longer exists
    rows = ledger.claim_batch(store, "brief", "atou", worker, 5)
    assert ledger.start_sending(store, rows[0].id, worker)
    assert ledger.mark_dead_workers_uncertain(store) == 1
    assert [r.recipient for r in ledger.rows_in_state(store, ledger.UNCERTAIN)] == [rows[0].recipient]
    again = ledger.claim_batch(store, "brief", "atou", "other:1:x", 10)
    assert [r.id for r in again] == [r.id for r in rows[1:]], "the 4 leased but unstarted rows are sendable again"
    assert not ledger.finish(store, rows[0].id, ledger.SENT, "late", worker="someone-else")
    assert ledger.requeue_uncertain(store, "brief", ["atou"]) == 1
    (requeued,) = [r for r in ledger.rows_in_state(store, ledger.QUEUED) if r.id == rows[0].id]
    assert requeued.message_id == rows[0].message_id


def test_edited_briefing_moves_unsent_rows_and_keeps_sent_ones(store: Store) -> None:
    _queue(store, 3)
    worker = ledger.worker_id()
    (first, *_rest) = ledger.claim_batch(store, "brief", "atou", worker, 1)
    ledger.start_sending(store, first.id, worker)
    ledger.finish(store, first.id, ledger.SENT, "250 ok", worker=worker)
    entries = [ledger.Entry(f"r{i:04d}@example.org", f"<v2.{i}@example.org>") for i in range(3)]
    assert ledger.enqueue(store, "brief", "atou", "h2", entries) == 0
    pending = ledger.rows_in_state(store, ledger.QUEUED)
    assert {(r.content_hash, r.message_id) for r in pending} == {
        ("h2", "<v2.1@example.org>"),
        ("h2", "<v2.2@example.org>"),
    }
    assert ledger.claim_batch(store, "brief", "atou", worker, 10, content_hash="h1") == []
    assert ledger.enqueue(store, "brief", "atou", "h2", entries, resend_updated=True) == 1  # r0000 got h1


def test_not_sent_result_does_not_count_as_an_attempt(store: Store) -> None:
    _queue(store, 1)
    worker = ledger.worker_id()
    (row,) = ledger.claim_batch(store, "brief", "atou", worker, 1)
    ledger.start_sending(store, row.id, worker)
    ledger.finish(store, row.id, ledger.QUEUED, "connection refused", worker=worker)
    (again,) = ledger.claim_batch(store, "brief", "atou", worker, 1)
    assert again.attempts == 0 and again.state == ledger.QUEUED


def test_skeleton_call_forms_still_work(store: Store) -> None:
    assert ledger.enqueue(store, "brief", "atou", "h", {"a@example.org": "<m1@x>", "b@example.org": "<m2@x>"}) == 2
    worker = ledger.worker_id()
    rows = ledger.claim_batch(store, "brief", "atou", worker, 10)
    for row in rows:
        assert ledger.start_sending(store, row.id, worker)
        ledger.finish(store, row.id, ledger.SENT, "250 ok")
    assert ledger.summarise(store, "brief") == Counter({ledger.SENT: 2})


def test_starting_a_row_records_the_previous_outcome_in_the_same_commit(store: Store) -> None:
    """The bulk path writes row N's outcome with row N+1's `sending` mark: both land, in order, or neither."""
    _queue(store, 3)
    worker = ledger.worker_id()
    first, second, third = ledger.claim_batch(store, "brief", "atou", worker, 3)
    assert ledger.start_sending(store, first.id, worker)
    assert ledger.start_sending(store, second.id, worker, recording=ledger.Outcome(first.id, ledger.SENT, "250 ok"))
    states = {r.id: r.state for r in ledger.rows_in_state(store, ledger.SENT) + ledger.rows_in_state(store, "sending")}
    assert states == {first.id: ledger.SENT, second.id: ledger.SENDING}
    # A worker that holds neither row changes nothing.
    assert not ledger.start_sending(
        store, third.id, "someone-else", recording=ledger.Outcome(second.id, ledger.FAILED, "550 no such user")
    )
    assert ledger.rows_in_state(store, ledger.FAILED) == []
    assert ledger.start_sending(
        store, third.id, worker, recording=ledger.Outcome(second.id, ledger.FAILED, "550 no such user")
    )
    (failed,) = ledger.rows_in_state(store, ledger.FAILED)
    assert (failed.id, failed.last_reply) == (second.id, "550 no such user")

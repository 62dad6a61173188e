"""The collector settings an ingest run holds: applied once for nested and concurrent runs, always undone."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from flows.ingest import gc_tuning
from flows.ingest.gc_tuning import relaxed_collection


@pytest.fixture(autouse=True)
def ordinary_collector():
    gc.unfreeze()
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_relaxed_inside_and_restored_after() -> None:
    with relaxed_collection():
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (gc_tuning.YOUNG_THRESHOLD, 10, 10)
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == (700, 10, 10)


def test_restored_after_an_error() -> None:
    with pytest.raises(RuntimeError), relaxed_collection():
        raise RuntimeError("the run failed")
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == (700, 10, 10)


def test_nested_and_concurrent_runs_restore_only_when_the_last_leaves() -> None:
    inner_left = threading.Event()
    outer_may_leave = threading.Event()
    seen_after_inner: list[tuple[int, int]] = []

    def other_run() -> None:
        with relaxed_collection():
            inner_left.wait(10)
            seen_after_inner.append((gc.get_freeze_count() > 0, gc.get_threshold()[0]))
        outer_may_leave.set()

    with relaxed_collection():
        thread = threading.Thread(target=other_run)
        thread.start()
        with relaxed_collection():
            pass
        inner_left.set()  # the nested block has left; the other thread's run and this one still hold it
        outer_may_leave.wait(10)
        assert gc.get_freeze_count() > 0  # the other thread left first: this run still holds the setting
        thread.join()
    assert seen_after_inner == [(True, gc_tuning.YOUNG_THRESHOLD)]
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == (700, 10, 10)


def test_cycles_made_inside_are_still_collected() -> None:
    with relaxed_collection():
        first, second = Node(), Node()
        first.other, second.other = second, first
        gone = weakref.ref(first)
        del first, second
        gc.collect()
        assert gone() is None


def test_collection_left_off_stays_off() -> None:
    gc.set_threshold(0, 10, 10)
    with relaxed_collection():
        assert gc.get_threshold()[0] == 0
    assert gc.get_threshold() == (0, 10, 10)

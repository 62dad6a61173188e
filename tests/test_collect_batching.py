"""UID sets for MOVE: ranges that span exactly the UIDs added, split to keep command lines short."""

from __future__ import annotations

import random

from flows.collect.imap import UidSet


def test_consecutive_uids_become_ranges_and_gaps_stay_gaps() -> None:
    uids = UidSet([1, 2, 3, 7, 9, 10, 11, 12, 20])
    assert uids.items() == ["1:3", "7", "9:12", "20"]
    assert len(uids) == 9 and uids.chars == len("1:3,7,9:12,20")
    assert uids.uids() == [1, 2, 3, 7, 9, 10, 11, 12, 20]


def test_a_set_covers_exactly_the_uids_added_whatever_their_order() -> None:
    rng = random.Random(7)
    for _ in range(200):
        chosen = sorted(rng.sample(range(1, 400), rng.randint(1, 120)))
        if rng.random() < 0.3:
            rng.shuffle(chosen)  # out of order: still exact, only less compact
        uids = UidSet(chosen)
        covered = [u for item in uids.items() for u in _expand(item)]
        assert sorted(covered) == sorted(chosen)
        assert uids.chars == len(",".join(uids.items()))


def test_split_keeps_each_command_under_the_limit_and_loses_nothing() -> None:
    uids = UidSet(range(1, 20_000, 2))  # 10,000 single UIDs: ~58,000 characters in one set
    parts = uids.split(8000)
    assert len(parts) > 1
    assert all(len(",".join(p.items())) <= 8000 and p.chars == len(",".join(p.items())) for p in parts)
    assert [u for p in parts for u in p.uids()] == list(range(1, 20_000, 2))
    assert sum(len(p) for p in parts) == 10_000
    assert UidSet(range(1, 10_001)).split(8000)[0].items() == ["1:10000"]


def _expand(item: str) -> list[int]:
    first, _, last = item.partition(":")
    return list(range(int(first), int(last or first) + 1))

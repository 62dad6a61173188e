"""Translation batches: consecutive blocks, under the token and block limits, balanced over the concurrent slots."""

from __future__ import annotations

import pytest

from flows.draft.budget import TokenBudget, estimate_tokens, plan_batches


def _check(groups: list[range], sizes: list[int], tokens: int, blocks: int) -> None:
    assert [i for g in groups for i in g] == list(range(len(sizes))), "every block once, in order"
    for group in groups:
        assert len(group) <= blocks
        assert len(group) == 1 or sum(sizes[i] for i in group) <= tokens


@pytest.mark.parametrize(
    ("sizes", "tokens", "blocks", "parallel", "expected"),
    [
        ([100] * 100, 1500, 30, 4, 8),  # 10 000 tokens need 7 batches; 8 fill two rounds of 4
        ([100] * 3, 1500, 30, 4, 3),  # fewer blocks than slots: one each
        ([100] * 40, 100_000, 30, 1, 2),  # one slot: only the block limit splits
        ([100] * 8, 100_000, 100, 4, 4),  # small article: still one batch per slot
    ],
)
def test_batch_counts(sizes: list[int], tokens: int, blocks: int, parallel: int, expected: int) -> None:
    groups = plan_batches(sizes, tokens, blocks, parallel)
    assert len(groups) == expected
    _check(groups, sizes, tokens, blocks)


def test_a_block_larger_than_the_batch_goes_alone() -> None:
    sizes = [50, 50, 5000, 50, 50]
    groups = plan_batches(sizes, 200, 30, 1)
    _check(groups, sizes, 200, 30)
    assert range(2, 3) in groups


def test_uneven_blocks_stay_under_the_limit() -> None:
    sizes = [10, 900, 20, 700, 30, 30, 800, 5, 5, 600]
    groups = plan_batches(sizes, 1000, 30, 2)
    _check(groups, sizes, 1000, 30)


def test_estimates_count_cjk_characters_one_each() -> None:
    assert estimate_tokens("一二三四五") == 5
    assert estimate_tokens("a" * 35) == 10
    assert estimate_tokens("") == 0


def test_the_budget_refuses_what_would_pass_it() -> None:
    budget = TokenBudget(1000)
    assert budget.reserve(600)
    assert not budget.reserve(500)
    budget.settle(600, 300)
    assert budget.used == 300 and budget.reserve(700) and not budget.reserve(1)
    assert TokenBudget(0).reserve(10**9), "0 means no limit"

"""Token estimates, translation batches and the per-briefing token budget.

No tokenizer is loaded: the endpoint's model is unknown here (GPT, Llama, Qwen… tokenise differently). The
estimate errs high — one token per CJK character, one per 3.5 other characters — so batches stay under
`llm_batch_tokens` and the budget is not overrun by surprise; the report counts what the server says it used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CJK_RANGES = ((0x2E80, 0x9FFF), (0xAC00, 0xD7AF), (0xF900, 0xFAFF), (0xFF00, 0xFFEF))
MESSAGE_OVERHEAD = 8  # role and framing tokens per chat message
BLOCK_OVERHEAD = 12  # the JSON keys, id and kind around each block


def _is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in CJK_RANGES)


def estimate_tokens(text: str) -> int:
    cjk = sum(1 for char in text if _is_cjk(char))
    return cjk + math.ceil((len(text) - cjk) / 3.5)


def estimate_output(source_tokens: int) -> int:
    """Expected answer tokens for a translation of this much source (Chinese runs ≈1.5× English tokens)."""
    return math.ceil(source_tokens * 1.5) + 50


def plan_batches(sizes: list[int], batch_tokens: int, batch_blocks: int, parallel: int) -> list[range]:
    """Split blocks (their token sizes, in order) into consecutive batches.

    A multiple of `parallel` batches when there are that many blocks, so every concurrent slot has work in every
    round; each batch under `batch_tokens` (a single larger block goes alone) and `batch_blocks`; sizes balanced."""
    count = len(sizes)
    if count == 0:
        return []
    total = sum(sizes)
    batches = max(math.ceil(total / batch_tokens), math.ceil(count / batch_blocks), min(parallel, count), 1)
    batches = min(count, math.ceil(batches / parallel) * parallel)  # whole rounds: every slot busy until the end
    while True:
        groups = _split(sizes, batches)
        fits = all(
            len(group) <= batch_blocks and (len(group) == 1 or sum(sizes[i] for i in group) <= batch_tokens)
            for group in groups
        )
        if fits or batches >= count:
            return groups
        batches += 1


def _split(sizes: list[int], batches: int) -> list[range]:
    """Exactly `batches` consecutive non-empty groups whose token sums are as even as the order allows."""
    total = sum(sizes)
    groups: list[range] = []
    start, running = 0, 0
    for index, size in enumerate(sizes):
        running += size
        cuts_left = batches - len(groups) - 1
        items_left = len(sizes) - index - 1
        reached = running >= total * (len(groups) + 1) / batches
        if cuts_left > 0 and items_left > 0 and (reached or items_left == cuts_left):
            groups.append(range(start, index + 1))
            start = index + 1
    groups.append(range(start, len(sizes)))
    return groups


@dataclass
class TokenBudget:
    """Tokens one briefing's draft may spend (0 = no limit). A request reserves its estimate before it is sent."""

    limit: int
    used: int = 0
    reserved: int = 0

    def reserve(self, tokens: int) -> bool:
        if self.limit and self.used + self.reserved + tokens > self.limit:
            return False
        self.reserved += tokens
        return True

    def settle(self, reserved: int, spent: int) -> None:
        self.reserved -= reserved
        self.used += spent

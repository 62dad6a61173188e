"""What a draft did: per section and block, what was filled, from cache or by a request, and what failed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class DraftStats:
    """Counters shared by every request of one draft."""

    requests: int = 0  # HTTP requests sent, retries and re-asks included
    retries: int = 0  # requests repeated after 429, 5xx or a failed connection
    reasks: int = 0  # requests repeated because the answer was not usable
    cache_hits: int = 0  # blocks and sections answered from the store without a request
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_estimated: bool = False  # some answers carried no `usage`: their tokens are estimates
    structured_output: str = "json_schema"  # what the draft ended with (a refused json_schema falls back)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Failure:
    """A section, note or block left empty, and why."""

    part: str  # "translation.p03-…", "notes.atou", "verdict"
    reason: str


@dataclass
class DraftReport:
    path: str
    slug: str
    model: str
    endpoint: str
    filled: list[str] = field(default_factory=list)  # sections and notes written into the file
    blocks_filled: int = 0  # translation blocks written
    blocks_from_cache: int = 0
    already_written: list[str] = field(default_factory=list)  # requested but not empty: left as they were
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: DraftStats = field(default_factory=DraftStats)
    wall_seconds: float = 0.0
    written: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stats"]["tokens"] = self.stats.tokens
        data["ok"] = self.ok
        data["wall_seconds"] = round(self.wall_seconds, 3)
        return data

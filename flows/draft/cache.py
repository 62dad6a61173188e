"""Answers kept in the store, keyed by (kind, source hash, model, prompt version, language).

A translated block is keyed by the hash of its source text, so re-drafting after a small source change asks
only for the blocks that changed; the curated sections are keyed by the hash of their whole request.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from flows.core.models import normalise_text
from flows.core.store import Store, draft_cache, utcnow

logger = logging.getLogger(__name__)


def source_hash(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode("utf-8")).hexdigest()


def request_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class DraftCache:
    """Reads and writes one (model, prompt version, language)'s answers. `enabled=False` reads nothing (a fresh
    draft) and replaces what it finds with the new answers."""

    def __init__(self, store: Store, model: str, prompt_version: str, language: str, *, enabled: bool = True) -> None:
        self.store = store
        self.key = {"model": model[:200], "prompt_version": prompt_version, "language": language[:16]}
        self.enabled = enabled

    def get_many(self, kind: str, hashes: list[str]) -> dict[str, Any]:
        if not self.enabled or not hashes:
            return {}
        stored = draft_cache.lookup(self.store, self.key, kind, hashes)
        return {source_hash: json.loads(value) for source_hash, value in stored.items()}

    def get(self, kind: str, key: str) -> Any:
        return self.get_many(kind, [key]).get(key)

    def put_many(self, kind: str, values: dict[str, Any], tokens: int = 0) -> None:
        """Store answers. An answer stored meanwhile by another draft is kept (the first one wins), except in a
        fresh draft, whose answers replace the cached ones."""
        if not values:
            return
        now = utcnow()
        share = tokens // len(values)
        rows = [
            {
                "kind": kind,
                "source_hash": key,
                **self.key,
                "value": json.dumps(value, ensure_ascii=False),
                "tokens": share,
                "created_at": now,
            }
            for key, value in values.items()
        ]
        draft_cache.save(self.store, rows, replace=not self.enabled)
        logger.debug("cached %d %s answers", len(rows), kind)

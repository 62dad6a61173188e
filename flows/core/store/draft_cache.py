"""The draft cache repository: what a model answered for a (kind, source hash, model, prompt version, language),
so drafting the same source again costs no request (used by flows/draft/cache.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from flows.core.store.base import Database
from flows.core.store.schema import draft_cache

LOOKUP_CHUNK = 500  # hashes per query (bound parameters)

_LOOKUP = select(draft_cache.c.source_hash, draft_cache.c.value).where(
    draft_cache.c.kind == bindparam("kind"),
    draft_cache.c.model == bindparam("model"),
    draft_cache.c.prompt_version == bindparam("prompt_version"),
    draft_cache.c.language == bindparam("language"),
    draft_cache.c.source_hash.in_(bindparam("hashes", expanding=True)),
)


def lookup(store: Database, key: dict[str, str], kind: str, hashes: list[str]) -> dict[str, str]:
    """source hash → the stored value (JSON text) for those of `hashes` answered before; `key`: model,
    prompt_version, language."""
    found: dict[str, str] = {}
    unique = sorted(set(hashes))
    with store.engine.connect() as conn:
        for start in range(0, len(unique), LOOKUP_CHUNK):
            params = {**key, "kind": kind, "hashes": unique[start : start + LOOKUP_CHUNK]}
            found.update({row.source_hash: row.value for row in conn.execute(_LOOKUP, params)})
    return found


def save(store: Database, rows: list[dict[str, Any]], *, replace: bool) -> None:
    """Store answers. One stored meanwhile by another draft is kept (the first one wins), unless `replace`."""
    statement = store.insert(draft_cache)
    if replace:
        keys = list(draft_cache.primary_key.columns)
        replaced = {name: statement.excluded[name] for name in ("value", "tokens", "created_at")}
        statement = statement.on_conflict_do_update(index_elements=keys, set_=replaced)
    else:
        statement = statement.on_conflict_do_nothing()
    with store.begin() as conn:
        conn.execute(statement, rows)

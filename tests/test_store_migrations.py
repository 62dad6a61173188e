"""The store's Alembic migrations on SQLite and PostgreSQL: a new database ends exactly at schema.py, and a store
made by the last release before Alembic (tests/data/legacy_store, made with that release's code) keeps every row.

Every test runs once per dialect.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pg_support import fresh_schema
from sqlalchemy import create_engine, inspect, select, text

from flows.core.store import Store, ledger
from flows.core.store import migrate as migrations
from flows.core.store.schema import metadata

REPO = Path(__file__).resolve().parent.parent
LEGACY = REPO / "tests" / "data" / "legacy_store"


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody has opened yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with fresh_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


def dialect(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def load_legacy_store(url: str) -> None:
    """Fill an empty database with the dump of a store the last release before Alembic made."""
    script = (LEGACY / f"{dialect(url)}.sql").read_text(encoding="utf-8")
    if dialect(url) == "sqlite":
        conn = sqlite3.connect(url.split("///", 1)[1])
        conn.executescript(script)
        conn.close()
        return
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(script)
    engine.dispose()


def differences(store: Store) -> list[Any]:
    """What Alembic finds between the database and schema.py (empty: the same tables, columns, indexes, types)."""
    with store.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)


def plain(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime | date) else value


def table_rows(store: Store) -> dict[str, list[dict[str, object]]]:
    rows = {}
    with store.engine.connect() as conn:
        for table in metadata.sorted_tables:
            order = list(table.primary_key.columns)
            found = conn.execute(select(table).order_by(*order)).mappings().all()
            rows[table.name] = [{k: plain(v) for k, v in row.items()} for row in found]
    return rows


def test_head_is_the_newest_revision() -> None:
    scripts = migrations.script_directory()
    assert scripts.get_heads() == [migrations.HEAD]
    assert [s.revision for s in scripts.walk_revisions()][-1] == "0001"  # the baseline comes first


def test_a_new_database_is_migrated_to_exactly_the_schema(empty_url: str) -> None:
    store = Store(empty_url)
    try:
        assert store.schema_revision() == migrations.HEAD
        assert [c.split(":")[0] for c in store.schema_changes] == ["migration 0001"]
        assert differences(store) == []
        with store.engine.connect() as conn:
            assert "ix_send_ledger_claim" in {i["name"] for i in inspect(conn).get_indexes("send_ledger")}
        assert Store(store.url).schema_changes == []  # a second start changes nothing
    finally:
        store.close()


def test_a_store_made_before_alembic_is_adopted_with_every_row(empty_url: str) -> None:
    expected = json.loads((LEGACY / "rows.json").read_text(encoding="utf-8"))[dialect(empty_url)]
    assert expected.pop("schema_version"), "the fixture is a store of the hand-written migrations"
    assert all(expected.values()), "the fixture has rows in every table"
    load_legacy_store(empty_url)

    store = Store(empty_url)
    try:
        assert store.schema_changes == [f"migration 0001: {migrations.script_directory().get_revision('0001').doc}"]
        assert store.schema_revision() == migrations.HEAD
        assert table_rows(store) == expected
        assert differences(store) == []  # schema_version is gone, nothing else differs
        # the store works on: new rows get new ids (PostgreSQL's sequences came along), sent rows stay sent
        ledger.enqueue(store, "anthropic-ai-builds-ai", "neta", "hash1", {"new@example.org": "<m9@x>"})
        [row] = ledger.rows_in_state(store, ledger.QUEUED, "anthropic-ai-builds-ai", "neta")
        assert row.id > max(r["id"] for r in expected["send_ledger"])
        assert ledger.summarise(store, "anthropic-ai-builds-ai")[ledger.SENT] == 1
        assert store.unsubscribed("atou") == {"gone@example.org"}
    finally:
        store.close()


def test_an_older_store_lacking_columns_and_an_index_is_completed(empty_url: str) -> None:
    """A store of an older release that later releases' start-ups never reached: no claim index, two ledger
    columns missing. Adopting it adds them (NOT NULL with its default for the rows already there)."""
    load_legacy_store(empty_url)
    engine = create_engine(empty_url)
    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_send_ledger_claim"))
        conn.execute(text("ALTER TABLE send_ledger DROP COLUMN claimed_at"))
        conn.execute(text("ALTER TABLE send_ledger DROP COLUMN attempts"))
        conn.execute(text("DELETE FROM schema_version WHERE version > 1"))
    engine.dispose()

    store = Store(empty_url)
    try:
        assert differences(store) == []
        with store.engine.connect() as conn:
            rows = conn.execute(text("SELECT recipient, attempts, claimed_at FROM send_ledger ORDER BY id")).all()
        assert [r.recipient for r in rows] == [
            "sent@example.org", "failed@example.org", "gone@example.org", "later@example.org"
        ]
        assert {(r.attempts, r.claimed_at) for r in rows} == {(0, None)}
        claimed = ledger.claim_batch(store, "anthropic-ai-builds-ai", "atou", "w1", 10, content_hash="hash1")
        assert [r.recipient for r in claimed] == ["later@example.org"]  # the deferred row, due since the fixture
    finally:
        store.close()


def test_status_reads_a_store_made_before_alembic_without_migrating_it(empty_url: str) -> None:
    load_legacy_store(empty_url)
    reader = Store(empty_url, read_only=True)
    try:
        assert ledger.summarise(reader)[ledger.SENT] == 1
        assert reader.schema_revision() is None
    finally:
        reader.close()
    writer = Store(empty_url)  # the first command that writes adopts it
    assert writer.schema_revision() == migrations.HEAD
    writer.close()


MIGRATE_AT_ONCE = """
import sys, time
from pathlib import Path
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
from flows.core.store import Store
store = Store(sys.argv[1])
print(store.schema_revision(), len(store.schema_changes))
"""


def test_processes_starting_at_once_migrate_once(empty_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_AT_ONCE, empty_url, str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(1.5)  # let them all import and wait at the line
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(out.split())
    assert all(revision == migrations.HEAD for revision, _changes in outputs)
    assert sorted(int(changes) for _revision, changes in outputs) == [0, 0, 0, 1]  # one of them migrated
    store = Store(empty_url)
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [migrations.HEAD]
    store.close()


def test_the_migrations_ship_in_the_package() -> None:
    """pyproject.toml lists the folders (a wheel without them could not create a store: scripts/check_wheel.sh)."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert {"flows.core.store.migrations", "flows.core.store.migrations.versions"} <= set(config["packages"])
    assert "script.py.mako" in config["package-data"]["flows.core.store.migrations"]

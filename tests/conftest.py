"""Shared fixtures: a temporary project (content copy + outputs), settings, store, and one Prefect harness."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.ingest_support import LoopbackServer

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")
# Prefect keeps its state under PREFECT_HOME; never share the developer's ~/.prefect with the tests.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="briefing-prefect-home-"))


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test harness per session (database migrations cost ~15 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped content in a temporary folder, with BRIEFING_* pointing at it."""
    shutil.copytree(REPO / "content", tmp_path / "content")
    (tmp_path / "outputs").mkdir()
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("BRIEFING_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("BRIEFING_CONTENT_DIR", str(tmp_path / "content"))
    monkeypatch.setenv("BRIEFING_OUTPUT_DIR", str(tmp_path / "outputs"))
    return tmp_path


@pytest.fixture
def settings(project: Path):
    from flows.core.settings import load_settings

    return load_settings()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, settings, monkeypatch: pytest.MonkeyPatch):
    """The store on both dialects: every test using it runs once on SQLite and once on PostgreSQL (own schema)."""
    from flows.core.store import Store, close_stores

    if request.param == "sqlite":
        store = Store(settings.store_url)
        yield store
        store.close()
        return
    from pg_support import fresh_schema

    with fresh_schema(request.getfixturevalue("postgres_url")) as url:
        monkeypatch.setenv("BRIEFING_DATABASE_URL", url)
        settings.database_url = url
        store = Store(url)
        yield store
        store.close()
        close_stores()


# --- postgres ---
@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL for the session (or BRIEFING_TEST_POSTGRES_URL); see tests/pg_support.py."""
    from pg_support import session_postgres

    yield from session_postgres()


# --- a simulated internet ---
@pytest.fixture(scope="module")
def internet():
    """A network namespace of the module's own with only `lo`, on which tests put global addresses, host names
    (a hosts file bind-mounted over /etc/hosts inside) and real servers, and run the product with default
    settings: `add_host`, `serve_http`, `start`, `run`. See tests/netns_support.py. Fails under CI (skips
    elsewhere) when namespaces cannot be made."""
    from tests.netns_support import open_namespace

    yield from open_namespace()


# --- a loopback HTTP server for feeds and pages ---
@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    """tests/ingest_support.py's scripted HTTP server on 127.0.0.1. Modules whose `server` is another kind of server
    (the chat API of the drafting tests, the preview) define their own fixture of that name, which takes precedence."""
    from tests.ingest_support import LoopbackServer

    with LoopbackServer() as running:
        yield running

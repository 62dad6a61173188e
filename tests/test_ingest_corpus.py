"""Every feed of feedparser's own test corpus (~2,250 files), served from loopback, through one ingest run.

The corpus is feedparser's source distribution (`pip download --no-binary :all:`), fetched once into
~/.cache/briefing-test. Files are served the way feedparser's own test server does: `Header:` lines in a
file's comments become response headers (Status, Location, Content-type, ETag …), `compression/` files
are sent with Content-Encoding gzip/deflate. No feed may crash the run: each ends ok, not modified or with
a recorded error — and ingesting the corpus a second time finds nothing new.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

from flows.core.models import Feed
from flows.core.store import Store
from flows.ingest import ingest_feeds
from tests.ingest_support import LoopbackServer, Reply, Request
from tests.test_ingest_fetch import make_settings

CACHE = Path.home() / ".cache" / "briefing-test"
HEADER_LINE = re.compile(rb"^Header:\s+([^:]+):(.+)$", re.MULTILINE)
FEEDPARSER_PORT = b"localhost:8097"


def corpus_dir() -> Path:
    """feedparser's tests/ folder for the installed feedparser version, downloaded and unpacked once."""
    release = version("feedparser")
    target = CACHE / f"feedparser-{release}"
    if (target / "tests").is_dir():
        return target / "tests"
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / f"feedparser-{release}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
             f"feedparser=={release}", "-d", str(CACHE)],
            check=True,
            capture_output=True,
            timeout=300,
        )  # fmt: skip
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and "/tests/" in m.name]
        tar.extractall(CACHE, members=members, filter="data")
    return target / "tests"


def corpus_route(path: Path, server: LoopbackServer):
    blob = path.read_bytes()
    relative = path.as_posix()
    if "/compression/" in relative:
        encoding = "gzip" if relative.endswith("gz") else "deflate"
        headers = {"Content-Encoding": encoding, "Content-Type": "application/xml"}
    else:
        headers = {k.decode().strip(): v.decode("utf-8", "replace").strip() for k, v in HEADER_LINE.findall(blob)}
        headers.setdefault("Content-type", "application/xml")
    status = int(headers.pop("Status", "200"))
    if "Location" in headers:
        headers["Location"] = headers["Location"].replace("localhost:8097", f"127.0.0.1:{server.port}")

    def route(request: Request) -> Reply:
        if request.headers.get("if-none-match") == headers.get("ETag", "\0") or request.headers.get(
            "if-modified-since"
        ) == headers.get("Last-Modified", "\0"):
            return Reply(304)
        return Reply(status, headers, blob)

    return route


@pytest.fixture(scope="module")
def corpus() -> list[Path]:
    folder = corpus_dir()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in {".xml", ".gz", ".z"})
    assert len(files) > 2000, f"expected ~2,250 corpus files under {folder}, found {len(files)}"
    return files


@pytest.fixture
def corpus_server(corpus: list[Path]) -> Iterator[tuple[LoopbackServer, list[Feed]]]:
    root = corpus[0].parents[len(corpus[0].relative_to(corpus_dir()).parts) - 1]
    with LoopbackServer() as server:
        server.route("/-/return-304.xml", lambda r: Reply(304))
        feeds = []
        for n, path in enumerate(corpus):
            url = server.route("/tests/" + path.relative_to(root).as_posix(), corpus_route(path, server))
            feeds.append(Feed(id=f"c{n}", url=url))
        yield server, feeds


@pytest.mark.slow
@pytest.mark.parametrize("parser", ["feedparser", "feedparser-rs"])
def test_whole_feedparser_corpus_ingests_without_a_crash(
    corpus_server: tuple[LoopbackServer, list[Feed]], project: Path, parser: str
) -> None:
    _server, feeds = corpus_server
    settings = make_settings(
        project,
        ingest_parser=parser,
        fulltext_threshold=0,  # the corpus links point at example.com; page fetching is tested elsewhere
        fetch_concurrency=64,
        fetch_per_host=64,
        fetch_retries=1,
        fetch_timeout=20.0,
        fetch_read_timeout=10.0,
    )
    store = Store(settings.store_url)
    try:
        first = ingest_feeds(feeds, store, settings)
        assert len(first.outcomes) == len(feeds)
        statuses = Counter(o.status for o in first.outcomes)
        assert set(statuses) <= {"ok", "not_modified", "error"}
        internal = [o for o in first.outcomes if "internal error" in o.error]
        assert internal == [], internal[:5]
        assert all(o.error for o in first.errors)
        assert statuses["ok"] > 0.9 * len(feeds), statuses
        states = {s["feed_url"]: s for s in store.all_feed_states()}
        for outcome in first.outcomes:
            assert states[outcome.url]["last_status"] == outcome.status
            if outcome.status == "error":
                assert states[outcome.url]["last_error"] == outcome.error
        entries = sum(o.entries for o in first.outcomes)
        assert entries > 1000
        # the corpus repeats a few example entries (same link, same text) across files: they are one article each
        assert 0 < len(first.new_articles) <= entries
        print(
            f"\ncorpus ({parser}): {len(feeds)} feeds {dict(statuses)}; {entries} entries, "
            f"{len(first.new_articles)} articles"
        )

        second = ingest_feeds(feeds, store, settings)
        assert [o for o in second.outcomes if "internal error" in o.error] == []
        assert second.new_articles == [], [o.url for o in second.outcomes if o.new][:5]
    finally:
        store.close()

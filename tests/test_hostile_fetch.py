"""Compression bombs and odd encodings against a real loopback HTTP server: the body limit counts decoded bytes
as they are produced, for stacked encodings too, on every path that fetches (feeds, article pages, `briefing add`).

The loopback server is reached through BRIEFING_FETCH_ALLOWED_NETWORKS=127.0.0.1/32; the public-address path is
covered by the network-namespace tests.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import brotli
import pytest
from typer.testing import CliRunner

from flows.app.cli import app
from flows.core.errors import FetchError
from flows.core.models import Feed
from flows.core.settings import Settings, load_settings
from flows.core.store import Store
from flows.ingest import ingest_feeds
from flows.ingest.fetch import Fetcher
from tests.bomb_support import MIB, brotli_bomb, deflate_bomb, gzip_bomb
from tests.ingest_support import Item, LoopbackServer, Reply, long_text, rss

LIMIT = 1_500_000
BOMB_SIZE = 256 * MIB
PEAK_ALLOWED = 16 * MIB  # a few decoding pieces and the kept body, far below the bomb's decoded size
FEED = rss([Item("Plain story", "http://news.invalid/plain", "g-plain", long_text("plain"))])


def make_settings(project: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "fetch_allowed_networks": ["127.0.0.1/32"],
        "fetch_timeout": 20.0,
        "fetch_retries": 0,
        "max_body_bytes": LIMIT,
        "content_dir": project / "content",
        "output_dir": project / "outputs",
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def cfg(project: Path) -> Settings:
    return make_settings(project)


@pytest.fixture
def db(cfg: Settings) -> Iterator[Store]:
    store = Store(cfg.store_url)
    yield store
    store.close()


def fetch(settings: Settings, url: str) -> bytes:
    async def run() -> bytes:
        async with Fetcher(settings) as fetcher:
            return (await fetcher.fetch(url)).body

    return asyncio.run(run())


def serve_encoded(server: LoopbackServer, path: str, body: bytes, encoding: str) -> str:
    headers = {"Content-Type": "application/rss+xml", "Content-Encoding": encoding}
    return server.route(path, lambda _r: Reply(200, headers, body))


def fetch_peak(settings: Settings, url: str) -> tuple[FetchError, int]:
    tracemalloc.start()
    try:
        with pytest.raises(FetchError) as caught:
            fetch(settings, url)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return caught.value, peak


@pytest.mark.parametrize(
    ("encoding", "make"),
    [
        ("gzip, gzip", lambda: gzip_bomb(BOMB_SIZE, layers=2)),
        ("gzip", lambda: gzip_bomb(BOMB_SIZE)),
        ("br", lambda: brotli_bomb(BOMB_SIZE)),
        ("br, gzip", lambda: zlib.compress(brotli_bomb(BOMB_SIZE), 9, wbits=31)),
        ("deflate", lambda: deflate_bomb(BOMB_SIZE)),
    ],
)
def test_a_bomb_is_cut_at_the_limit_with_an_error_naming_the_url(
    server: LoopbackServer, cfg: Settings, encoding: str, make
) -> None:
    body = make()
    assert len(body) < LIMIT  # small on the wire: only counting decoded bytes can stop it
    url = serve_encoded(server, "/bomb.xml", body, encoding)
    error, peak = fetch_peak(cfg, url)
    assert error.url == url
    assert f"body cut off: more than {LIMIT:,} bytes after decoding (Content-Encoding: {encoding})" in str(error)
    assert "BRIEFING_MAX_BODY_BYTES" in str(error)
    assert peak < PEAK_ALLOWED, f"peak {peak:,} bytes while refusing a {BOMB_SIZE:,}-byte bomb"


def test_a_bomb_feed_fails_alone_and_the_other_feeds_are_stored(
    server: LoopbackServer, cfg: Settings, db: Store
) -> None:
    bomb = Feed(id="bomb", url=serve_encoded(server, "/bomb.xml", gzip_bomb(BOMB_SIZE, layers=2), "gzip, gzip"))
    plain = Feed(id="plain", url=server.static("/plain.xml", FEED))
    tracemalloc.start()
    try:
        report = ingest_feeds([bomb, plain], db, cfg)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_ALLOWED, f"peak {peak:,} bytes while ingesting a {BOMB_SIZE:,}-byte bomb"
    outcomes = {o.feed_id: o for o in report.outcomes}
    assert outcomes["bomb"].status == "error" and "body cut off" in outcomes["bomb"].error
    assert outcomes["plain"].status == "ok" and len(outcomes["plain"].new) == 1
    assert "body cut off" in db.feed_state(bomb.url)["last_error"]


def test_an_article_page_bomb_keeps_the_teaser_with_a_warning(
    server: LoopbackServer, cfg: Settings, db: Store
) -> None:
    page = serve_encoded(server, "/page.html", gzip_bomb(BOMB_SIZE, layers=2), "gzip, gzip")
    teaser = rss([Item("Teaser only", page, "g-teaser", description="A short teaser.")])
    feed = Feed(id="teasers", url=server.static("/teasers.xml", teaser))
    outcome = ingest_feeds([feed], db, cfg).outcomes[0]
    assert outcome.status == "ok" and len(outcome.new) == 1
    assert any(page in w and "body cut off" in w and "after decoding" in w for w in outcome.warnings), outcome.warnings


def test_briefing_add_refuses_a_bomb_with_exit_4(
    server: LoopbackServer, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIEFING_FETCH_ALLOWED_NETWORKS", '["127.0.0.1/32"]')
    monkeypatch.setenv("BRIEFING_FETCH_RETRIES", "0")
    monkeypatch.setenv("BRIEFING_MAX_BODY_BYTES", str(LIMIT))
    url = serve_encoded(server, "/article.html", brotli_bomb(BOMB_SIZE), "br")
    result = CliRunner().invoke(app, ["--json", "add", url])
    data = json.loads(result.stdout)
    assert result.exit_code == 4, data
    assert url in data["error"] and "after decoding (Content-Encoding: br)" in data["error"]
    assert not list((project / "content" / "briefings").glob("article*"))


def test_br_and_stacked_encodings_decode_and_br_is_asked_for(
    server: LoopbackServer, cfg: Settings, db: Store
) -> None:
    data = FEED.encode()
    feeds = [
        Feed(id="brotli", url=serve_encoded(server, "/br.xml", brotli.compress(data), "br")),
        Feed(id="twice", url=serve_encoded(server, "/twice.xml", gzip.compress(gzip.compress(data)), "gzip, gzip")),
        Feed(id="raw", url=serve_encoded(server, "/raw.xml", zlib.compress(data)[2:-4], "deflate")),
    ]
    report = ingest_feeds(feeds, db, cfg)
    assert [(o.feed_id, o.status, o.error, o.entries) for o in report.outcomes] == [
        (feed.id, "ok", "", 1) for feed in feeds
    ]
    (stored,) = report.new_articles  # the same story in all three: whichever feed was stored first has it
    assert db.get_article(stored).title == "Plain story"
    assert all("br" in r.headers["accept-encoding"].split(", ") for r in server.requests)


def test_an_unknown_encoding_is_a_clear_error(server: LoopbackServer, cfg: Settings) -> None:
    url = serve_encoded(server, "/zstd.xml", b"\x28\xb5\x2f\xfd garbage", "zstd")
    accepted = r"\(this reader accepts gzip, deflate, br\)"
    with pytest.raises(FetchError, match=rf"unsupported Content-Encoding zstd {accepted}"):
        fetch(cfg, url)


def test_a_body_that_is_not_gzip_is_a_decoding_error(server: LoopbackServer, cfg: Settings) -> None:
    url = serve_encoded(server, "/fake.xml", b"<rss>not compressed at all</rss>", "gzip")
    with pytest.raises(FetchError, match=r"could not be decoded \(Content-Encoding: gzip\)"):
        fetch(cfg, url)

"""The fetcher and the feed-level outcomes against a real loopback HTTP server (no mocks of httpx)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import ssl
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import pytest

from flows.core.errors import FetchError, UnsafeURLError
from flows.core.models import Feed
from flows.core.settings import Settings, load_settings
from flows.core.store import Store
from flows.ingest import ingest_feeds
from flows.ingest.fetch import DRAIN_BYTES, Fetcher, FetchResult, parse_retry_after
from flows.ingest.transport import FetchTransport, _is_readable
from tests.ingest_support import (
    Item,
    LoopbackServer,
    Reply,
    Request,
    chunks,
    http_date,
    long_text,
    rss,
)
from tests.tls_support import server_tls, tls_certificate

FEED = rss(
    [
        Item("First story", "http://news.invalid/1", "g-first-1", long_text("alpha")),
        Item("Second story", "http://news.invalid/2", "g-second-2", long_text("beta")),
    ]
)


def etag_v1(request: Request) -> Reply:
    """FEED with ETag "v1"; 304 to a request that sends it back."""
    if request.headers.get("if-none-match") == '"v1"':
        return Reply(304, {"ETag": '"v1"'})
    return Reply(200, {"ETag": '"v1"', "Content-Type": "application/rss+xml"}, FEED.encode())


def make_settings(project: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "fetch_allowed_networks": ["127.0.0.1/32"],
        "fetch_timeout": 3.0,
        "fetch_read_timeout": 0.5,
        "fetch_connect_timeout": 1.0,
        "fetch_retries": 2,
        "fetch_backoff": 0.01,
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


def fetch(settings: Settings, url: str, **kwargs: object):
    async def run():
        async with Fetcher(settings) as fetcher:
            return await fetcher.fetch(url, **kwargs)

    return asyncio.run(run())


def test_etag_then_304_costs_no_parsing(
    server: LoopbackServer, cfg: Settings, db: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = Feed(id="etag", url=server.route("/etag.xml", etag_v1))
    first = ingest_feeds([feed], db, cfg)
    assert first.outcomes[0].status == "ok" and len(first.new_articles) == 2
    assert db.feed_state(feed.url)["etag"] == '"v1"'

    import flows.ingest.reading
    import flows.ingest.run

    def parsing_forbidden(*_args: object) -> None:
        raise AssertionError("a 304 must not be parsed")

    # Both the ingest's route to the parser (in process or in a parser process) and the parser itself.
    monkeypatch.setattr(flows.ingest.run, "read_and_store", parsing_forbidden)
    monkeypatch.setattr(flows.ingest.reading, "parse_feed", parsing_forbidden)
    second = ingest_feeds([feed], db, cfg)
    assert second.outcomes[0].status == "not_modified"
    assert second.new_articles == [] and second.errors == []
    assert server.requests[-1].headers["if-none-match"] == '"v1"'
    assert db.feed_state(feed.url)["last_status"] == "not_modified"


def test_last_modified_then_304(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    stamp = http_date()

    def route(request):
        if request.headers.get("if-modified-since") == stamp:
            return Reply(304)
        return Reply(200, {"Last-Modified": stamp, "Content-Type": "application/rss+xml"}, FEED.encode())

    feed = Feed(id="lastmod", url=server.route("/lm.xml", route))
    assert ingest_feeds([feed], db, cfg).outcomes[0].status == "ok"
    second = ingest_feeds([feed], db, cfg)
    assert second.outcomes[0].status == "not_modified"
    assert server.hits["/lm.xml"] == 2


def test_500_then_200_is_retried(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    def route(request):
        if request.hit == 1:
            return Reply(500, body=b"boom")
        return Reply(200, {"Content-Type": "application/rss+xml"}, FEED.encode())

    feed = Feed(id="flaky", url=server.route("/flaky.xml", route))
    report = ingest_feeds([feed], db, cfg)
    assert report.outcomes[0].status == "ok"
    assert report.outcomes[0].attempts == 2
    assert server.hits["/flaky.xml"] == 2
    assert len(report.new_articles) == 2


def test_404_is_not_retried_and_is_recorded(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    feed = Feed(id="gone", url=server.url("/missing.xml"))
    report = ingest_feeds([feed], db, cfg)
    outcome = report.outcomes[0]
    assert outcome.status == "error" and "HTTP 404" in outcome.error
    assert server.hits["/missing.xml"] == 1
    state = db.feed_state(feed.url)
    assert state["last_status"] == "error" and "HTTP 404" in state["last_error"]


def test_429_honours_retry_after_and_refuses_a_long_wait(server: LoopbackServer, project: Path) -> None:
    settings = make_settings(project, fetch_max_retry_after=5)
    server.route(
        "/busy",
        lambda r: Reply(429, {"Retry-After": "0"}) if r.hit == 1 else Reply(200, body=b"fine"),
    )
    result = fetch(settings, server.url("/busy"))
    assert result.body == b"fine" and result.attempts == 2

    server.route("/later", lambda r: Reply(429, {"Retry-After": "3600"}))
    with pytest.raises(FetchError, match="asks to wait 3600 s"):
        fetch(settings, server.url("/later"))
    assert server.hits["/later"] == 1


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None


def test_server_that_never_answers_times_out(server: LoopbackServer, project: Path, db: Store) -> None:
    settings = make_settings(project, fetch_timeout=1.0, fetch_read_timeout=0.3, fetch_retries=1)
    feed = Feed(id="silent", url=server.route("/silent.xml", lambda r: Reply(hang=True)))
    outcome = ingest_feeds([feed], db, settings).outcomes[0]
    assert outcome.status == "error"
    assert "timed out" in outcome.error or "no complete answer" in outcome.error
    assert "gave up after 2 attempts" in outcome.error
    assert server.hits["/silent.xml"] == 2


def test_50_mb_body_is_cut_off_while_streaming(server: LoopbackServer, project: Path) -> None:
    settings = make_settings(project, max_body_bytes=1_000_000)
    total = 50 * 1024 * 1024
    url = server.route("/huge", lambda r: Reply(200, {"Content-Type": "application/rss+xml"}, chunks(total)))
    tracemalloc.start()
    try:
        with pytest.raises(FetchError, match="cut off"):
            fetch(settings, url)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * 1024 * 1024, f"peak {peak:,} bytes while refusing a 50 MB body"
    assert server.hits["/huge"] == 1  # too big is not worth a retry


def test_declared_oversize_body_is_refused_before_reading(server: LoopbackServer, project: Path) -> None:
    settings = make_settings(project, max_body_bytes=2048)
    url = server.static("/big.xml", b"y" * 10_000)
    with pytest.raises(FetchError, match="exceeds the limit"):
        fetch(settings, url)


def test_gzip_body_is_decoded(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    def route(request):
        assert "gzip" in request.headers.get("accept-encoding", "")
        return Reply(
            200, {"Content-Type": "application/rss+xml", "Content-Encoding": "gzip"}, gzip.compress(FEED.encode())
        )

    feed = Feed(id="zipped", url=server.route("/gz.xml", route))
    report = ingest_feeds([feed], db, cfg)
    assert report.outcomes[0].status == "ok" and len(report.new_articles) == 2
    assert server.requests[0].headers["user-agent"] == cfg.user_agent


def test_redirect_loop_is_an_error(server: LoopbackServer, cfg: Settings) -> None:
    server.route("/a", lambda r: Reply(302, {"Location": "/b"}))
    server.route("/b", lambda r: Reply(301, {"Location": server.url("/a")}))
    with pytest.raises(FetchError, match="redirect loop"):
        fetch(cfg, server.url("/a"))


def test_redirect_limit(server: LoopbackServer, project: Path) -> None:
    settings = make_settings(project, max_redirects=3)
    for n in range(10):
        server.route(f"/hop{n}", lambda r, n=n: Reply(307, {"Location": f"/hop{n + 1}"}))
    with pytest.raises(FetchError, match="more than 3 redirects"):
        fetch(settings, server.url("/hop0"))
    assert server.hits["/hop3"] == 1 and server.hits["/hop4"] == 0

    server.static("/hop10", b"end", "text/plain")
    server.route("/start", lambda r: Reply(302, {"Location": "/hop8"}))
    result = fetch(settings, server.url("/start"))
    assert (result.url, result.redirects, result.body) == (server.url("/hop10"), 3, b"end")


@pytest.mark.parametrize(
    "target",
    ["http://10.0.0.1/feed.xml", "http://169.254.169.254/latest/meta-data/", "http://[::1]:1/x", "file:///etc/passwd"],
)
def test_redirect_to_a_private_address_is_refused_before_connecting(
    server: LoopbackServer, cfg: Settings, target: str
) -> None:
    server.route("/jump", lambda r: Reply(302, {"Location": target}))
    with pytest.raises(UnsafeURLError, match="refused") as caught:
        fetch(cfg, server.url("/jump"))
    assert caught.value.url == server.url("/jump")
    assert server.hits["/jump"] == 1  # refused, not retried


def test_loopback_is_refused_by_default(server: LoopbackServer, project: Path) -> None:
    settings = make_settings(project, fetch_allowed_networks=[])
    url = server.static("/feed.xml", FEED)
    with pytest.raises(UnsafeURLError, match=r"non-public address 127\.0\.0\.1"):
        fetch(settings, url)
    assert server.hits["/feed.xml"] == 0
    assert fetch(make_settings(project, allow_private_addresses=True), url).status == 200


def test_only_http_and_https(cfg: Settings, tmp_path: Path) -> None:
    local = cfg.content_dir / "feed.xml"  # file: feeds read only the content folder (test_hostile_file_feeds.py)
    local.write_text(FEED, encoding="utf-8")
    with pytest.raises(UnsafeURLError, match="file: URLs are only allowed"):
        fetch(cfg, local.as_uri())
    with pytest.raises(UnsafeURLError, match="scheme 'ftp'"):
        fetch(cfg, "ftp://example.invalid/feed.xml")
    assert fetch(cfg, local.as_uri(), allow_file=True).body == FEED.encode()


def test_hostname_is_pinned_to_the_checked_address(server: LoopbackServer, cfg: Settings) -> None:
    url = server.static("/named.xml", FEED).replace("127.0.0.1", "localhost")
    result = fetch(cfg, url)
    assert result.status == 200
    assert server.requests[-1].headers["host"] == f"localhost:{server.port}"


def test_a_host_name_is_looked_up_once_per_run(server: LoopbackServer, cfg: Settings) -> None:
    urls = [server.static(f"/n{n}.xml", FEED).replace("127.0.0.1", "localhost") for n in range(6)]

    async def run() -> tuple[list[int], int]:
        async with Fetcher(cfg) as fetcher:
            together = await asyncio.gather(*(fetcher.fetch(url) for url in urls))
            later = await fetcher.fetch(urls[0])
            return [r.status for r in [*together, later]], fetcher.lookups

    statuses, lookups = asyncio.run(run())
    assert statuses == [200] * 7
    assert lookups == 1  # six requests at once shared one lookup; the seventh reused its answer


def test_per_host_limit_is_respected(server: LoopbackServer, project: Path, db: Store) -> None:
    settings = make_settings(project, fetch_per_host=2, fetch_concurrency=16)
    feeds = []
    for n in range(6):
        server.route(
            f"/slow{n}.xml", lambda r: Reply(200, {"Content-Type": "application/rss+xml"}, FEED.encode(), delay=0.3)
        )
        feeds.append(Feed(id=f"slow{n}", url=server.url(f"/slow{n}.xml")))
    report = ingest_feeds(feeds, db, settings)
    assert all(o.status == "ok" for o in report.outcomes)
    assert server.max_in_flight == 2


def test_one_failing_feed_never_stops_the_others(server: LoopbackServer, cfg: Settings, db: Store) -> None:
    good = [
        Feed(
            id=f"good{n}",
            url=server.static(
                f"/good{n}.xml", rss([Item(f"Story {n}", f"http://n.invalid/{n}", "", long_text(f"s{n}"))])
            ),
        )
        for n in range(3)
    ]
    bad = [
        Feed(id="broken", url=server.route("/broken.xml", lambda r: Reply(500))),
        Feed(id="notfeed", url=server.static("/page.html", "<html><body><p>hello</p></body></html>", "text/html")),
        Feed(id="refused", url="http://10.0.0.1/feed.xml"),
    ]
    report = ingest_feeds([bad[0], *good, *bad[1:]], db, cfg)
    by_id = {o.feed_id: o for o in report.outcomes}
    assert [by_id[f.id].status for f in good] == ["ok", "ok", "ok"]
    assert {o.feed_id for o in report.errors} == {"broken", "notfeed", "refused"}
    assert "not a feed" in by_id["notfeed"].error
    assert "10.0.0.1" in by_id["refused"].error
    assert len(report.new_articles) == 3
    states = {s["feed_id"]: s for s in db.all_feed_states()}
    assert states["broken"]["last_status"] == "error" and states["good1"]["entries_new"] == 1


def test_parser_processes_store_the_same_articles(server: LoopbackServer, project: Path) -> None:
    feeds = [
        Feed(
            id=f"p{n}",
            url=server.static(f"/p{n}.xml", rss([Item(f"P {n}", f"http://p.invalid/{n}", "", long_text(f"p{n}"))])),
        )
        for n in range(4)
    ]
    feeds.append(Feed(id="pbad", url=server.static("/pbad.html", "<html><body>no feed</body></html>", "text/html")))
    results = {}
    for processes in (0, 2):
        settings = make_settings(project, ingest_parse_processes=processes, output_dir=project / f"out{processes}")
        store = Store(settings.store_url)
        try:
            report = ingest_feeds(feeds, store, settings)
            assert [o.feed_id for o in report.errors] == ["pbad"]
            results[processes] = sorted((a.id, a.title, a.paragraphs) for a in store.all_articles())
        finally:
            store.close()
    assert len(results[2]) == 4 and results[2] == results[0]


def test_parser_processes_start_off_the_event_loop_and_only_when_needed(
    server: LoopbackServer, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting the processes takes about a second; done by the first submit it would stall every fetch."""
    starts: list[str] = []
    spawn = ProcessPoolExecutor._spawn_process

    def recording_spawn(executor: ProcessPoolExecutor) -> None:
        starts.append(threading.current_thread().name)
        spawn(executor)

    monkeypatch.setattr(ProcessPoolExecutor, "_spawn_process", recording_spawn)

    feeds = [Feed(id=f"s{n}", url=server.route(f"/s{n}.xml", etag_v1)) for n in range(3)]
    settings = make_settings(project, ingest_parse_processes=2)
    store = Store(settings.store_url)
    try:
        assert len(ingest_feeds(feeds, store, settings).new_articles) == 2  # the three feeds carry the same two
        cold_starts, starts[:] = list(starts), []
        warm = ingest_feeds(feeds, store, settings)
    finally:
        store.close()
    assert len(cold_starts) == 2 and threading.main_thread().name not in cold_starts
    assert {o.status for o in warm.outcomes} == {"not_modified"} and starts == []  # nothing to parse: none started


def test_parser_processes_import_no_http_client_and_no_page_extractor() -> None:
    """A parser process can take its first feed only once `flows.ingest.reading` is imported, while the run's
    first answers are already in: httpx, trafilatura and the content loader would add about half a second."""
    code = "import sys, flows.ingest.reading; print(' '.join(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(run.stdout.split())
    assert {"flows.ingest.reading", "feedparser", "nh3", "sqlalchemy"} <= loaded
    unwanted = {
        "httpx", "httpcore", "trafilatura", "courlan", "flows.ingest.fetch", "flows.core.content", "flows.core.settings"
    }
    assert loaded & unwanted == set()


def test_https_with_an_untrusted_certificate_is_refused(project: Path, tmp_path: Path) -> None:
    cert, key = tls_certificate(tmp_path, ["localhost"])
    with LoopbackServer(tls=server_tls(cert, key)) as secure:
        url = secure.static("/feed.xml", FEED).replace("127.0.0.1", "localhost")
        with pytest.raises(FetchError, match="certificate not trusted"):
            fetch(make_settings(project), url)


def test_https_through_a_private_ca_and_one_connection_per_host_name(project: Path, tmp_path: Path) -> None:
    """The request goes to the checked IP with the host name as SNI; a second name on the same address must get
    its own TLS connection (and its own certificate check), not the first name's."""
    cert, key = tls_certificate(tmp_path, ["localhost"])
    settings = make_settings(project, fetch_ca_file=cert)
    with LoopbackServer(tls=server_tls(cert, key)) as secure:
        named = secure.static("/feed.xml", FEED).replace("127.0.0.1", "localhost")

        async def run() -> tuple[list[FetchResult], FetchError]:
            async with Fetcher(settings) as fetcher:
                results = [await fetcher.fetch(named) for _ in range(3)]
                with pytest.raises(FetchError) as refused:
                    await fetcher.fetch(secure.url("/feed.xml"))  # same address, a name the certificate lacks
                return results, refused.value

        results, refused = asyncio.run(run())
    assert [r.status for r in results] == [200, 200, 200] and results[0].body == FEED.encode()
    assert "certificate not trusted" in str(refused)
    # localhost's three requests shared one kept-alive connection; 127.0.0.1's handshake failed on a new one
    assert secure.connections == 1
    assert secure.hits["/feed.xml"] == 3


def test_a_missing_ca_file_names_the_setting(project: Path, tmp_path: Path) -> None:
    cert, key = tls_certificate(tmp_path, ["localhost"])
    with LoopbackServer(tls=server_tls(cert, key)) as secure:
        url = secure.static("/feed.xml", FEED).replace("127.0.0.1", "localhost")
        with pytest.raises(FetchError, match="BRIEFING_FETCH_CA_FILE") as error:
            fetch(make_settings(project, fetch_ca_file=tmp_path / "absent.pem"), url)
    assert "absent.pem" in str(error.value)


def test_keep_alive_serves_a_host_on_one_connection(server: LoopbackServer, cfg: Settings) -> None:
    urls = [server.static(f"/k{n}.xml", FEED) for n in range(4)]

    async def run() -> dict[tuple[bytes, bytes, int | None, str], int]:
        async with Fetcher(cfg) as fetcher:
            for url in urls:
                assert (await fetcher.fetch(url)).status == 200
            return fetcher.transport.pools.connections

    pools = asyncio.run(run())
    assert server.connections == 1
    assert list(pools.values()) == [1] and next(iter(pools))[3] == "127.0.0.1"


def test_304s_redirects_and_error_pages_leave_the_connection_open(server: LoopbackServer, cfg: Settings) -> None:
    """httpcore reuses a connection only once its response was read to the end, so the fetcher reads the
    bodies it does not keep; a body too big to be worth reading closes the connection instead."""

    final = server.route("/final.xml", etag_v1)
    moved = server.route("/moved.xml", lambda _r: Reply(302, {"Location": "/final.xml"}, b"<p>moved</p>"))
    missing = server.url("/missing.xml")  # 404 with a short page
    bulky = server.route("/bulky.xml", lambda _r: Reply(302, {"Location": "/final.xml"}, b"x" * 4 * DRAIN_BYTES))

    async def run() -> list[int]:
        connections = []
        async with Fetcher(cfg) as fetcher:
            assert (await fetcher.fetch(moved)).status == 200
            for _ in range(2):
                assert (await fetcher.fetch(final, etag='"v1"')).status == 304
            with pytest.raises(FetchError, match="HTTP 404"):
                await fetcher.fetch(missing)
            assert (await fetcher.fetch(final, etag='"v1"')).status == 304
            connections.append(server.connections)
            assert (await fetcher.fetch(bulky, etag='"v1"')).status == 304
            assert (await fetcher.fetch(final, etag='"v1"')).status == 304
            connections.append(server.connections)
        return connections

    assert asyncio.run(run()) == [1, 2]
    assert len(server.requests) == 9


def test_cookies_are_neither_kept_nor_sent(server: LoopbackServer, cfg: Settings) -> None:
    """Requests go to the checked IP, so a jar would hand one site's cookies to every site on that address."""
    headers = {"Set-Cookie": "session=abc; Path=/", "Content-Type": "application/rss+xml"}
    url = server.route("/cookie.xml", lambda _r: Reply(200, headers, FEED.encode()))

    async def run() -> int:
        async with Fetcher(cfg) as fetcher:
            for _ in range(2):
                assert (await fetcher.fetch(url)).headers["set-cookie"].startswith("session=")
            return len(fetcher.client.cookies)

    assert asyncio.run(run()) == 0
    assert [request.headers.get("cookie") for request in server.requests] == [None, None]


def test_idle_host_pools_are_closed_oldest_first(cfg: Settings) -> None:
    servers = [LoopbackServer() for _ in range(5)]
    for running in servers:
        running.__enter__()
    try:
        urls = [running.static("/feed.xml", FEED) for running in servers]

        async def run() -> tuple[list[int], int]:
            transport = FetchTransport(ssl.create_default_context(), per_host=2, max_idle_hosts=1)
            async with httpx.AsyncClient(transport=transport) as client:
                open_pools = []
                for url in urls:
                    assert (await client.get(url)).status_code == 200
                    open_pools.append(transport.pools.hosts)
                again = await client.get(urls[0])  # its pool was closed: a new one serves it
                return open_pools, again.status_code

        open_pools, status = asyncio.run(run())
    finally:
        for running in servers:
            running.__exit__(None, None, None)
    # a scan runs when the pools reach twice the idle allowance (2), then twice what is left
    assert open_pools == [1, 2, 3, 2, 3]
    assert status == 200 and servers[0].connections == 2


def test_an_idle_socket_closed_by_the_server_reads_as_readable() -> None:
    ours, theirs = socket.socketpair()
    with ours:
        assert _is_readable(ours) is False
        theirs.close()
        assert _is_readable(ours) is True  # httpcore then drops the connection instead of reusing it

"""The path a user takes: default settings, public hosts. `briefing run`, `briefing ingest` and `briefing add`
run as subprocesses inside a simulated internet (the `internet` fixture, tests/netns_support.py): global
IPv4 and IPv6 addresses on the namespace's loopback, named in its /etc/hosts, real HTTP servers on them.

The settings are the defaults: no BRIEFING_ALLOW_PRIVATE_ADDRESSES, no BRIEFING_FETCH_ALLOWED_NETWORKS, every
fetch limit and timeout as shipped. The one exception is Prefect's task retry delay for the two Prefect runs:
the resetting host makes the ingest task retry (10 s, then 20 s by default), cut to 1 s so those runs cost
seconds of waiting instead of half a minute each.

One `briefing run` ingests every feed below, then one `briefing ingest` revalidates them (nothing new, 304s);
the `briefing add` runs are separate processes with no Prefect. The hosts:

| host | address | what it serves |
|---|---|---|
| feeds.frontier-news.com | 93.184.216.34 | gzip feed with ETag and Last-Modified; the moved feed's new home |
| pages.frontier-news.com | 93.184.216.35, 2606:4700:10::35 | a teaser feed (Last-Modified only), gzip article pages |
| old.frontier-news.com | 93.184.216.36 | redirects: to feeds.…, to 127.0.0.1, to 10.0.0.1 |
| v6.frontier-news.com | 2606:4700:10::6 only | a feed with a full entry and a teaser, and the teaser's page |
| slow.frontier-news.com | 93.184.216.37 | a feed answered after 2 s, trickled over 2 s more; a page never answered |
| flaky.frontier-news.com | 93.184.216.38 | resets every connection |
| 127.0.0.1, 10.0.0.1 | (inside the namespace) | a "secret" feed and page: reaching them would be the bug |
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.ingest_support import Item, http_date, long_text, rss
from tests.netns_support import (
    HttpServers,
    LoggedRequest,
    NetworkNamespace,
    Route,
    Site,
    briefing_env,
    briefing_executable,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent

FEEDS_IP, PAGES_IP, OLD_IP, SLOW_IP, FLAKY_IP = (f"93.184.216.{n}" for n in (34, 35, 36, 37, 38))
PAGES_IP6, V6_IP6 = "2606:4700:10::35", "2606:4700:10::6"
LOOPBACK, PRIVATE = "127.0.0.1", "10.0.0.1"
HOSTS = {
    "feeds.frontier-news.com": [FEEDS_IP],
    "pages.frontier-news.com": [PAGES_IP, PAGES_IP6],
    "old.frontier-news.com": [OLD_IP],
    "v6.frontier-news.com": [V6_IP6],
    "slow.frontier-news.com": [SLOW_IP],
    "flaky.frontier-news.com": [FLAKY_IP],
}
WIRE_LAST_MODIFIED = http_date()
TEASERS_LAST_MODIFIED = "Mon, 01 Jun 2026 06:00:00 GMT"

# feed id → URL, as written to the project's feeds.yaml (the shipped sample `file:` feed stays first)
FEEDS = {
    "wire": "http://feeds.frontier-news.com/wire.xml",
    "moved": "http://old.frontier-news.com/feed.xml",
    "teasers": "http://pages.frontier-news.com/teasers.xml",
    "v6only": "http://v6.frontier-news.com/feed.xml",
    "slow": "http://slow.frontier-news.com/feed.xml",
    "flaky": "http://flaky.frontier-news.com/feed.xml",
    "to-loopback": "http://old.frontier-news.com/to-loopback.xml",
    "to-private": "http://old.frontier-news.com/to-private.xml",
}
WORKING_FEEDS = ["wire", "moved", "teasers", "v6only", "slow"]
STALLED_PATH = "/2026/06/stalled.html"  # the `briefing add` that runs beside the Prefect runs


def page_paragraph(n: int, topic: str) -> str:
    return (
        f"Paragraph {n} of the full article about {topic} goes into detail that no teaser carries: who decided, "
        "what it costs, which numbers were published and what the people involved expect to happen next."
    )


def article_page(title: str, topic: str) -> str:
    """An article page with furniture around it; four paragraphs of `page_paragraph`."""
    paragraphs = "\n".join(f"<p>{page_paragraph(n, topic)}</p>" for n in range(1, 5))
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title} | Frontier News</title>'
        '<meta name="author" content="Ines Okafor"></head><body>'
        '<nav><a href="/">Home</a> <a href="/topics">Topics</a></nav>'
        '<div class="cookie-banner">We use cookies. Accept all cookies?</div>'
        f"<article><h1>{title}</h1>\n{paragraphs}\n</article>"
        "<footer><p>Copyright 2026 Frontier News. All rights reserved.</p></footer></body></html>"
    )


def page(title: str, topic: str) -> Route:
    return Route(article_page(title, topic), content_type="text/html; charset=utf-8", gzip=True)


def full_item(title: str, link: str, guid: str, seed: str) -> Item:
    return Item(title, link, guid, content=f"<p>{long_text(seed)}</p>")


def secret_site(address: str) -> Site:
    """What a refused redirect would reach: a valid feed and page, so only the guard can keep them out."""
    feed = rss([full_item("Internal secret", f"http://{address}/secret.html", f"secret-{address}", "secret")])
    return Site([address], {"/secret.xml": Route(feed), "/secret.html": page("Internal secret", "secret")})


def sites() -> list[Site]:
    wire = rss(
        [
            full_item("Wire one", "http://feeds.frontier-news.com/2026/06/wire-one.html", "wire-1", "wireone"),
            full_item("Wire two", "http://feeds.frontier-news.com/2026/06/wire-two.html", "wire-2", "wiretwo"),
        ]
    )
    moved = rss([full_item("Moved one", "http://feeds.frontier-news.com/2026/06/moved.html", "moved-1", "moved")])
    teasers = rss(
        [
            Item("Chips and rivers", "http://pages.frontier-news.com/2026/06/chips.html", "t-1", description="Water."),
            Item("Grid batteries", "http://pages.frontier-news.com/2026/06/grid.html", "t-2", description="Storage."),
        ]
    )
    v6 = rss(
        [
            full_item("Six one", "http://v6.frontier-news.com/2026/06/six-one.html", "six-1", "sixone"),
            Item("Six two", "http://v6.frontier-news.com/2026/06/six-two.html", "six-2", description="Short."),
        ]
    )
    slow = rss([full_item("Slow one", "http://slow.frontier-news.com/2026/06/slow.html", "slow-1", "slowone")])
    return [
        Site(
            [FEEDS_IP],
            {
                "/wire.xml": Route(wire, etag='"wire-v1"', last_modified=WIRE_LAST_MODIFIED, gzip=True),
                "/moved.xml": Route(moved, etag='"moved-v1"'),
            },
        ),
        Site(
            [PAGES_IP, PAGES_IP6],
            {
                "/teasers.xml": Route(teasers, last_modified=TEASERS_LAST_MODIFIED, gzip=True),
                "/2026/06/chips.html": page("Chips and rivers", "chip plants and river water"),
                "/2026/06/grid.html": page("Grid batteries", "grid batteries"),
                "/2026/06/standalone.html": page("A standalone story", "a story outside any feed"),
            },
        ),
        Site(
            [OLD_IP],
            {
                "/feed.xml": Route.redirect("http://feeds.frontier-news.com/moved.xml"),
                "/to-loopback.xml": Route.redirect(f"http://{LOOPBACK}/secret.xml", 302),
                "/to-private.xml": Route.redirect(f"http://{PRIVATE}/secret.xml", 302),
            },
        ),
        Site(
            [V6_IP6],
            {
                "/feed.xml": Route(v6, etag='"six-v1"'),
                "/2026/06/six-two.html": page("Six two", "a host with only an IPv6 address"),
            },
        ),
        Site(
            [SLOW_IP],
            {
                "/feed.xml": Route(slow, etag='"slow-v1"', delay=2.0, trickle=0.25),
                STALLED_PATH: Route(stall=True),
            },
        ),
        Site([FLAKY_IP], {"/feed.xml": Route(reset=True)}),
        secret_site(LOOPBACK),
        secret_site(PRIVATE),
    ]


@dataclass
class World:
    internet: NetworkNamespace
    servers: HttpServers

    def project(self, root: Path, feeds: dict[str, str] | None = None) -> Path:
        """A copy of the shipped content in `root`; `feeds` are listed after the sample feed in feeds.yaml."""
        shutil.copytree(REPO / "content", root / "content")
        (root / "outputs").mkdir()
        if feeds:
            with (root / "content" / "feeds.yaml").open("a", encoding="utf-8") as listing:
                for feed_id, url in feeds.items():
                    listing.write(f"  - {{id: {feed_id}, url: '{url}'}}\n")
        return root

    def briefing(self, project: Path, *args: str, **env: str) -> Command:
        result = self.internet.run([briefing_executable(), *args], env=briefing_env(project, **env), cwd=project)
        return Command(result)

    def requests(self, path: str | None = None, address: str | None = None) -> list[LoggedRequest]:
        return self.servers.requests(path, address)


@dataclass
class Command:
    result: subprocess.CompletedProcess[str]

    @property
    def data(self) -> dict[str, Any]:
        """The JSON document a `--json` command printed (anything else on stdout would be a bug)."""
        try:
            return json.loads(self.result.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"no JSON on stdout:\n{self.result.stdout[-3000:]}\nstderr:\n{self.result.stderr[-3000:]}")

    def __str__(self) -> str:
        out, err = self.result.stdout[-4000:], self.result.stderr[-4000:]
        return f"exit {self.result.returncode}\nstdout:\n{out}\nstderr:\n{err}"


@pytest.fixture(scope="module")
def world(internet: NetworkNamespace) -> Iterator[World]:
    for name, addresses in HOSTS.items():
        internet.add_host(name, *addresses)
    internet.add_address(PRIVATE)
    with internet.serve_http(sites()) as servers:
        yield World(internet, servers)


@dataclass
class Snapshot:
    """What one command printed and what the store held right after it."""

    command: Command
    articles: dict[str, list[dict[str, Any]]]  # feed id → rows
    feed_state: dict[str, dict[str, Any]]  # feed id → row
    requests_before: int  # requests logged before the command ran


def snapshot(world: World, project: Path, *args: str) -> Snapshot:
    before = len(world.requests())
    command = world.briefing(project, *args, BRIEFING_TASK_RETRY_DELAY="1")
    with sqlite3.connect(project / "outputs" / "store.db") as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM articles ORDER BY feed_id, guid")]
        states = {r["feed_id"]: dict(r) for r in db.execute("SELECT * FROM feed_state")}
    articles: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        articles.setdefault(row["feed_id"], []).append(row)
    return Snapshot(command, articles, states, before)


@pytest.fixture(scope="module")
def stalled_add(world: World, tmp_path_factory: pytest.TempPathFactory) -> subprocess.Popen[str]:
    """`briefing add` of a page whose server never answers, started before the Prefect runs and left to run
    beside them: with the default timeouts and retries it gives up after about 45 s."""
    project = world.project(tmp_path_factory.mktemp("stalled"))
    return world.internet.popen(
        [briefing_executable(), "--json", "add", f"http://slow.frontier-news.com{STALLED_PATH}"],
        env=briefing_env(project),
        cwd=project,
    )


@pytest.fixture(scope="module")
def pipeline_project(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return world.project(tmp_path_factory.mktemp("pipeline"), FEEDS)


@pytest.fixture(scope="module")
def first_run(world: World, pipeline_project: Path, stalled_add: subprocess.Popen[str]) -> Snapshot:
    return snapshot(world, pipeline_project, "--json", "run")


@pytest.fixture(scope="module")
def second_ingest(world: World, pipeline_project: Path, first_run: Snapshot) -> Snapshot:
    return snapshot(world, pipeline_project, "--json", "ingest")


def paragraph_texts(row: dict[str, Any]) -> list[str]:
    return [p["text"] for p in json.loads(row["paragraphs"])]


# briefing run: every working feed stored ---------------------------------------------------------------


def test_run_stores_every_article_of_every_public_feed(first_run: Snapshot) -> None:
    data = first_run.command.data
    titles = {feed: sorted(r["title"] for r in first_run.articles.get(feed, [])) for feed in WORKING_FEEDS}
    assert titles == {
        "wire": ["Wire one", "Wire two"],
        "moved": ["Moved one"],
        "teasers": ["Chips and rivers", "Grid batteries"],
        "v6only": ["Six one", "Six two"],
        "slow": ["Slow one"],
    }, first_run.command
    assert data["articles_new"] == 8 + len(first_run.articles["frontier-notes"])
    for feed in WORKING_FEEDS:
        state = first_run.feed_state[feed]
        assert (state["feed_url"], state["last_status"], state["last_error"]) == (FEEDS[feed], "ok", None)
    stubs = [Path(s).name for s in data["stubs"]]
    assert any(s.startswith("chips-and-rivers") for s in stubs) and any(s.startswith("six-two") for s in stubs)


def test_run_delivers_to_the_outbox_and_publishes(first_run: Snapshot, pipeline_project: Path) -> None:
    data = first_run.command.data
    outbox = list((pipeline_project / "outputs" / "outbox").rglob("*.eml"))
    assert data["emails_sent"] == len(outbox) > 0, first_run.command
    assert (data["emails_uncertain"], data["emails_failed"]) == (0, 0)
    assert data["pages_written"] and (pipeline_project / "outputs" / "archive" / "feed.xml").exists()


def test_a_feed_redirected_to_another_host_is_stored_under_its_listed_url(first_run: Snapshot, world: World) -> None:
    hops = world.requests("/feed.xml", OLD_IP)
    targets = world.requests("/moved.xml", FEEDS_IP)
    assert hops and targets, "the redirect was not followed"
    assert (hops[0].host, hops[0].status, targets[0].host) == ("old.frontier-news.com", 301, "feeds.frontier-news.com")
    moved = first_run.feed_state["moved"]
    assert (moved["feed_url"], moved["etag"]) == (FEEDS["moved"], '"moved-v1"')  # the final answer's validators


def test_gzip_encoded_feeds_and_pages_are_decoded(first_run: Snapshot, world: World) -> None:
    served = [r for r in world.requests() if r.content_encoding == "gzip"]
    assert {r.path for r in served} >= {"/wire.xml", "/teasers.xml", "/2026/06/chips.html", "/2026/06/grid.html"}
    wire = {r["title"]: paragraph_texts(r) for r in first_run.articles["wire"]}
    assert wire["Wire one"][0].startswith("wireone sentence 0 says something specific")


def test_teasers_get_the_full_text_of_their_pages(first_run: Snapshot) -> None:
    topics = {
        "Chips and rivers": "chip plants and river water",
        "Grid batteries": "grid batteries",
        "Six two": "a host with only an IPv6 address",
    }
    rows = [r for feed in ("teasers", "v6only") for r in first_run.articles[feed] if r["title"] in topics]
    assert len(rows) == 3
    for row in rows:
        topic = topics[row["title"]]
        texts = paragraph_texts(row)
        assert [t for t in texts if "full article" in t] == [page_paragraph(n, topic) for n in range(1, 5)]
        assert not any("cookies" in t or "Copyright" in t for t in texts)
        assert row["author"] == "Ines Okafor"


def test_a_host_with_only_an_ipv6_address_is_fetched(first_run: Snapshot, world: World) -> None:
    assert [r.host for r in world.requests("/feed.xml", V6_IP6)][:1] == ["v6.frontier-news.com"]
    assert world.requests("/2026/06/six-two.html", V6_IP6)
    assert first_run.feed_state["v6only"]["etag"] == '"six-v1"'


def test_a_slow_host_is_waited_for_and_a_resetting_host_fails_alone(first_run: Snapshot, world: World) -> None:
    assert [r["title"] for r in first_run.articles["slow"]] == ["Slow one"]
    flaky = first_run.feed_state["flaky"]
    assert (flaky["feed_url"], flaky["last_status"]) == (FEEDS["flaky"], "error")
    assert "connection failed" in flaky["last_error"] and "gave up after 4 attempts" in flaky["last_error"]
    assert len(world.requests("/feed.xml", FLAKY_IP)) >= 4  # the fetcher's own retries, then Prefect's
    failed = first_run.command.data["feeds_failed"]
    assert any(f.startswith("flaky: connection failed") for f in failed), failed


@pytest.mark.parametrize(("feed", "address"), [("to-loopback", LOOPBACK), ("to-private", PRIVATE)])
def test_redirects_to_non_public_addresses_are_refused(
    first_run: Snapshot, world: World, feed: str, address: str
) -> None:
    state = first_run.feed_state[feed]
    assert (state["feed_url"], state["last_status"]) == (FEEDS[feed], "error")
    expected = f"refused: {address} resolves to the non-public address {address} (redirected to http://{address}/"
    assert expected in state["last_error"]
    assert any(f.startswith(f"{feed}: {expected}") for f in first_run.command.data["feeds_failed"])
    assert world.requests(address=address) == []  # the servers behind the refused hops never saw a request
    stored = [r for rows in first_run.articles.values() for r in rows]
    assert not [r for r in stored if r["title"] == "Internal secret" or (r["guid"] or "").startswith("secret-")]


# briefing ingest again: nothing new, 304s ----------------------------------------------------------------


def test_a_second_ingest_stores_nothing_new_and_gets_304s(
    first_run: Snapshot, second_ingest: Snapshot, world: World
) -> None:
    data = second_ingest.command.data
    assert (data["articles_new"], data["articles_updated"], data["stubs"]) == (0, 0, []), second_ingest.command
    versions = {f: [(r["id"], r["version"]) for r in rows] for f, rows in first_run.articles.items()}
    assert {f: [(r["id"], r["version"]) for r in rows] for f, rows in second_ingest.articles.items()} == versions
    for feed in [*WORKING_FEEDS, "frontier-notes"]:
        assert second_ingest.feed_state[feed]["last_status"] == "not_modified", feed
    again = [r for r in world.requests()[second_ingest.requests_before :] if r.path != STALLED_PATH]
    answers = {(r.path, r.status) for r in again if r.outcome == "answered"}
    assert answers >= {("/wire.xml", 304), ("/moved.xml", 304), ("/teasers.xml", 304), ("/feed.xml", 304)}
    assert not [r for r in again if r.status == 200 or r.path.endswith(".html")]  # no feed or page sent again
    revalidated = {f"http://{r.host}{r.path}": r for r in again if r.status == 304}
    assert revalidated[FEEDS["wire"]].if_none_match == '"wire-v1"'
    assert revalidated[FEEDS["wire"]].if_modified_since == WIRE_LAST_MODIFIED
    assert revalidated[FEEDS["teasers"]].if_modified_since == TEASERS_LAST_MODIFIED
    assert revalidated["http://feeds.frontier-news.com/moved.xml"].if_none_match == '"moved-v1"'
    assert revalidated[FEEDS["v6only"]].if_none_match == '"six-v1"'
    assert revalidated[FEEDS["slow"]].if_none_match == '"slow-v1"'
    assert sorted(f.split(":")[0] for f in data["feeds_failed"]) == ["flaky", "to-loopback", "to-private"]


# briefing add -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://pages.frontier-news.com/2026/06/standalone.html",
        f"http://{PAGES_IP}/2026/06/standalone.html",  # the literal public IPv4 address of the report
        f"http://[{PAGES_IP6}]/2026/06/standalone.html",
    ],
)
def test_add_fetches_a_public_page(world: World, tmp_path: Path, url: str) -> None:
    project = world.project(tmp_path)
    added = world.briefing(project, "--json", "add", url)
    data = added.data
    assert added.result.returncode == 0 and data["created"] is True, added
    assert data["title"] == "A standalone story" and data["url"] == url
    with sqlite3.connect(project / "outputs" / "store.db") as db:
        [(stored,)] = db.execute("SELECT paragraphs FROM articles WHERE id = ?", (data["article_id"],)).fetchall()
    texts = [p["text"] for p in json.loads(stored)]
    expected = [page_paragraph(n, "a story outside any feed") for n in range(1, 5)]
    assert [t for t in texts if "full article" in t] == expected
    assert Path(data["stub"]).is_file()


@pytest.mark.parametrize(
    ("host", "named"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1 (IPv4 127.0.0.1)"),
        ("10.0.0.1", "10.0.0.1"),
        ("012.0.0.1", "10.0.0.1"),
        ("167772161", "10.0.0.1"),
    ],
)
def test_add_refuses_every_spelling_of_a_non_public_host(
    world: World, tmp_path: Path, host: str, named: str
) -> None:
    project = world.project(tmp_path)
    refused = world.briefing(project, "--json", "add", f"http://{host}/secret.html")
    assert refused.result.returncode != 0, refused
    assert f"refused: {host.strip('[]')} resolves to the non-public address {named}" in refused.data["error"]
    assert world.requests(address=LOOPBACK) == world.requests(address=PRIVATE) == []
    assert not list((project / "content" / "briefings").glob("internal-secret*"))


def test_add_prints_the_refusal_for_a_person(world: World, tmp_path: Path) -> None:
    refused = world.briefing(world.project(tmp_path), "add", "http://0x7f.1/secret.html")
    assert refused.result.returncode != 0 and refused.result.stdout == ""
    assert "error: http://0x7f.1/secret.html: refused: 0x7f.1 resolves to the non-public address 127.0.0.1" in (
        " ".join(refused.result.stderr.split())
    ), refused


def test_a_host_too_slow_to_answer_fails_with_its_url_while_the_runs_go_on(
    stalled_add: subprocess.Popen[str], second_ingest: Snapshot, world: World
) -> None:
    stdout, _stderr = stalled_add.communicate(timeout=180)
    error = json.loads(stdout)["error"]
    assert stalled_add.returncode != 0
    assert error.startswith(f"http://slow.frontier-news.com{STALLED_PATH}: ")
    assert "timed out (ReadTimeout) (gave up after 4 attempts)" in error
    assert len(world.requests(STALLED_PATH, SLOW_IP)) == 4

"""The store on SQLite and PostgreSQL: concurrent claims, concurrent upserts, concurrent ingest (the migrations are
tested in tests/test_store_migrations.py).

Every test here takes the `store` fixture (or `empty_url`), so each runs once per dialect.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pg_support import fresh_schema
from sqlalchemy import func, insert, select, update

from flows.core.models import Article, Feed, ParagraphKind, make_paragraphs
from flows.core.store import Store, ledger
from flows.core.store.articles import MATCH_CHUNK
from flows.core.store.schema import articles, feed_state
from flows.core.store.schema import send_ledger as ledger_table
from flows.ingest import ingest_feeds

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody has opened yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with fresh_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


def _python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        env={**_env(), "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def _wait_all(procs: list[subprocess.Popen[str]], timeout: float = 90) -> list[str]:
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err[-3000:]
        outputs.append(out)
    return outputs


# claims -------------------------------------------------------------------------------------------


def _enqueue(store: Store, n: int) -> None:
    recipients = {f"r{i:05d}@example.org": f"<m{i}@example.org>" for i in range(n)}
    assert ledger.enqueue(store, "brief", "atou", "hash", recipients) == n


def test_threads_claiming_never_share_a_row(store: Store) -> None:
    _enqueue(store, 1200)
    barrier = threading.Barrier(6)

    def claim_all(index: int) -> list[int]:
        mine: list[int] = []
        worker = f"thread-{index}"
        barrier.wait()
        while rows := ledger.claim_batch(store, "brief", "atou", worker, 25):
            mine.extend(r.id for r in rows)
            for row in rows[::2]:  # finish half, leave half leased: both must stay out of others' claims
                assert ledger.start_sending(store, row.id, worker)
                ledger.finish(store, row.id, ledger.SENT, "250 ok")
        return mine

    with ThreadPoolExecutor(6) as pool:
        claimed = list(pool.map(claim_all, range(6)))
    every = [i for ids in claimed for i in ids]
    assert len(every) == len(set(every)) == 1200
    assert sum(1 for ids in claimed if ids) >= 2  # the claims really were spread over several threads


CLAIM_IN_PROCESS = """
import json, sys, time
from pathlib import Path
from flows.core.store import ledger
from flows.core.store import Store
store = Store(sys.argv[1])
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
worker = ledger.worker_id()
ids = []
while rows := ledger.claim_batch(store, "brief", "atou", worker, 20):
    for row in rows:
        if ledger.start_sending(store, row.id, worker):
            ledger.finish(store, row.id, ledger.SENT, "250 ok")
            ids.append(row.id)
print(json.dumps(ids))
"""


def test_processes_claiming_never_send_a_row_twice(store: Store, tmp_path: Path) -> None:
    _enqueue(store, 600)
    go = tmp_path / "go"
    procs = [_python(CLAIM_IN_PROCESS, store.url, str(go)) for _ in range(3)]
    time.sleep(1.5)
    go.touch()
    sent = [json.loads(out) for out in _wait_all(procs)]
    every = [i for ids in sent for i in ids]
    assert len(every) == len(set(every)) == 600
    assert ledger.summarise(store, "brief") == Counter({ledger.SENT: 600})


# upserts under concurrency ------------------------------------------------------------------------


def _article(i: int, version: str = "a") -> Article:
    return Article(
        id=f"art{i:04d}",
        url=f"https://news.example.org/{i}",
        title=f"Story {i} {version}",
        feed_id="f1",
        paragraphs=make_paragraphs([(ParagraphKind.TEXT, f"Body {i} {version}", "")]),
        fingerprint=f"fp{i}{version}",
        published=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_same_articles_saved_by_many_threads_are_stored_once(store: Store) -> None:
    items = [_article(i) for i in range(80)]
    barrier = threading.Barrier(5)

    def save_all(_: int) -> Counter[str]:
        results: Counter[str] = Counter()
        barrier.wait()
        for item in items:
            results[store.save_article(item, canonical_url=item.url, guid=item.id)] += 1
        return results

    with ThreadPoolExecutor(5) as pool:
        totals = sum(pool.map(save_all, range(5)), Counter())
    assert totals == Counter({"new": 80, "seen": 320})
    changed = [_article(i, "b") for i in range(80)]
    with ThreadPoolExecutor(4) as pool:
        results = Counter(pool.map(lambda a: store.save_article(a, canonical_url=a.url, guid=a.id), changed * 4))
    assert results == Counter({"updated": 80, "seen": 240})
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(articles)).scalar() == 80
        assert set(conn.execute(select(articles.c.version)).scalars()) == {2}


def test_matching_finds_articles_by_every_key_when_several_need_more_than_one_query(store: Store) -> None:
    saved = [_article(i) for i in range(1_300)]
    store.save_articles([(a, a.url, f"guid-{a.id}") for a in saved])
    assert MATCH_CHUNK < 260  # so ids, guids and links below each take more than one query, of unequal counts
    matches = store.match_articles(
        ids={a.id for a in saved[:600]} | {"no-such-id"},
        guids={f"guid-{a.id}" for a in saved[600:900]},
        canonical_urls={a.url for a in saved[900:1_160]},
        fingerprints={a.fingerprint for a in saved[1_160:1_165]} | {"no-such-fingerprint"},
        feed_id="f1",
    )
    assert set(matches.fingerprint_of) == {a.id for a in saved[:1_165]}
    assert all(matches.by_guid[f"guid-{a.id}"] == a.id for a in saved[600:900])
    assert all(matches.by_canonical_url[a.url] == a.id for a in saved[900:1_160])
    assert matches.by_fingerprint[saved[1_164].fingerprint] == "art1164"
    other_feed = store.match_articles(
        ids=set(), guids={"guid-art1100"}, canonical_urls=set(), fingerprints=set(), feed_id="f2"
    )
    assert other_feed.fingerprint_of == {"art1100": "fp1100a"} and other_feed.by_guid == {}  # guids count per feed


def test_where_two_stored_articles_share_a_key_the_one_first_seen_is_matched(store: Store) -> None:
    twins = [
        _article(n).model_copy(update={"id": article_id, "fingerprint": "fp-twin"})
        for n, article_id in ((1, "aaa"), (2, "zzz"))
    ]
    store.save_articles([(a, "https://news.example.org/twin", "guid-twin") for a in twins])

    def matched_after(first_seen: dict[str, datetime]) -> set[str]:
        with store.begin() as conn:
            for article_id, when in first_seen.items():
                conn.execute(update(articles).where(articles.c.id == article_id).values(first_seen=when))
        found = store.match_articles(
            ids=set(),
            guids={"guid-twin"},
            canonical_urls={"https://news.example.org/twin"},
            fingerprints={"fp-twin"},
            feed_id="f1",
        )
        return {
            found.by_guid["guid-twin"],
            found.by_canonical_url["https://news.example.org/twin"],
            found.by_fingerprint["fp-twin"],
        }

    early, late = datetime(2020, 1, 1), datetime(2026, 1, 1)
    assert matched_after({"aaa": late, "zzz": early}) == {"zzz"}
    assert matched_after({"aaa": early, "zzz": late}) == {"aaa"}


def test_feed_state_upsert_keeps_one_row_per_feed(store: Store) -> None:
    urls = [f"https://feeds.example.org/{i}.xml" for i in range(30)]

    def record(round_: int) -> None:
        for url in urls:
            store.record_feed(url, feed_id="f", last_status="ok", entries_new=round_)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(record, range(4)))
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(feed_state)).scalar() == 30
    assert store.feed_state(urls[0])["entries_new"] in {0, 1, 2, 3}


def test_304s_are_recorded_in_one_update_and_unknown_feeds_still_get_a_row(store: Store) -> None:
    known = [f"https://known.example/{n}.xml" for n in range(3)]
    for n, url in enumerate(known):
        store.record_feed(url, feed_id=f"k{n}", last_status="ok", etag=f'"{n}"', entries_new=2)
    unknown = "https://unknown.example/feed.xml"  # a server answering 304 to a request without validators
    store.record_feeds_not_modified([(url, f"k{n}") for n, url in enumerate(known)])
    store.record_feeds_not_modified([(known[0], "k0"), (unknown, "u")])
    rows = {url: store.feed_state(url) for url in [*known, unknown]}
    assert {row["last_status"] for row in rows.values()} == {"not_modified"}
    assert all(row["last_ok_at"] is not None and row["last_fetched_at"] == row["last_ok_at"] for row in rows.values())
    assert [rows[url]["etag"] for url in known] == ['"0"', '"1"', '"2"']  # what a 304 keeps is kept
    assert [rows[url]["entries_new"] for url in known] == [2, 2, 2]
    assert rows[unknown]["feed_id"] == "u" and rows[unknown]["etag"] is None
    validators = store.feed_validators()
    assert validators[known[1]] == {"etag": '"1"', "last_modified": None} and unknown in validators


def test_unsubscribe_twice_at_once_records_once(store: Store) -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: store.unsubscribe("atou", "Reader@Example.org", "link"), range(8)))
    assert results.count(True) == 1
    assert store.unsubscribed("atou") == {"reader@example.org"}


# two ingest runs of the same 50 feeds at once -------------------------------------------------------


def _rss(feed: int, entries: int) -> bytes:
    items = "".join(
        f"<item><title>Feed {feed} story {e}</title><link>http://news.example.org/{feed}/{e}</link>"
        f"<guid>urn:feed{feed}:{e}</guid><pubDate>Mon, 05 Jan 2026 0{e % 10}:00:00 GMT</pubDate>"
        f"<description>&lt;p&gt;Paragraph one of story {e} in feed {feed}, long enough to keep.&lt;/p&gt;"
        f"&lt;p&gt;Paragraph two.&lt;/p&gt;</description></item>"
        for e in range(entries)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Feed {feed}</title>'
        f"<link>http://news.example.org/{feed}</link><description>d</description>{items}</channel></rss>"
    ).encode()


class _FeedHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        feed = int(self.path.strip("/").split(".")[0])
        body = _rss(feed, 8)
        time.sleep(0.02)  # a little latency so the two runs overlap feed by feed
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        return None


@pytest.mark.parametrize("processes", [0, 2], ids=["in-process", "parser-processes-store"])
def test_two_ingest_runs_of_the_same_feeds_store_each_article_once(store: Store, settings, processes: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FeedHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        feeds = [Feed(id=f"feed{i}", url=f"http://127.0.0.1:{port}/{i}.xml") for i in range(50)]
        workers = [Store(store.url), Store(store.url)]  # two workers: separate engines and connections
        barrier = threading.Barrier(2)

        loopback = settings.model_copy(
            # no page fetches (the stories are short): every feed is stored whole, by a parser process when
            # there are any
            update={
                "fetch_allowed_networks": ["127.0.0.1/32"],
                "ingest_parse_processes": processes,
                "fulltext_threshold": 0,
            }
        )

        def run(worker: Store):
            barrier.wait()
            return ingest_feeds(feeds, worker, loopback)

        with ThreadPoolExecutor(2) as pool:
            reports = list(pool.map(run, workers))
        for worker in workers:
            worker.close()
    finally:
        server.shutdown()
        server.server_close()
    assert [len(r.errors) for r in reports] == [0, 0]
    new = [a for r in reports for a in r.new_articles]
    assert len(new) == len(set(new)) == 50 * 8  # each article "new" in exactly one of the two runs
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(articles)).scalar() == 400
        assert conn.execute(select(func.count(articles.c.canonical_url.distinct()))).scalar() == 400
        assert conn.execute(select(func.count()).select_from(feed_state)).scalar() == 50


def test_insert_conflict_is_a_clear_integrity_error_outside_upserts(store: Store) -> None:
    """The unique constraints themselves are in place on both dialects (the upserts rely on them)."""
    from sqlalchemy.exc import IntegrityError

    row = {
        "slug": "s",
        "audience": "a",
        "recipient": "x@example.org",
        "content_hash": "h",
        "message_id": "<m@x>",
        "state": "queued",
        "attempts": 0,
        "created_at": datetime(2026, 1, 1),
        "updated_at": datetime(2026, 1, 1),
    }
    with store.begin() as conn:
        conn.execute(insert(ledger_table).values(**row))
    with pytest.raises(IntegrityError), store.begin() as conn:
        conn.execute(insert(ledger_table).values(**row))


def test_sqlite_write_transactions_take_the_write_lock_up_front(tmp_path: Path) -> None:
    """`Store.begin()` on SQLite is BEGIN IMMEDIATE: while one is open, no other writer can even start, so a
    claim's read and its update cannot interleave with another process's claim."""
    import sqlite3

    store = Store(f"sqlite:///{tmp_path / 'lock.db'}")
    other = sqlite3.connect(tmp_path / "lock.db", timeout=0.2, isolation_level=None)
    with store.begin() as conn:
        conn.execute(select(func.count()).select_from(ledger_table))  # only a read so far
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")  # free again once the transaction ends
    other.execute("ROLLBACK")
    other.close()
    store.close()


def test_unreachable_postgres_is_a_clear_error() -> None:
    from pg_support import free_port

    from flows.core.errors import StoreError

    url = f"postgresql://briefing:secret@127.0.0.1:{free_port()}/briefing"
    with pytest.raises(StoreError) as caught:
        Store(url)
    message = str(caught.value)
    assert f"127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}" in message
    assert "secret" not in message
    assert "BRIEFING_DATABASE_URL" in message

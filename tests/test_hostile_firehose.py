"""A firehose feed cannot flood the store or the editors: only the newest BRIEFING_MAX_ENTRIES_PER_FEED entries are
read, a new feed's back catalogue gets at most BRIEFING_NEW_FEED_STUBS draft stubs, and no run writes more than
BRIEFING_MAX_STUBS_PER_RUN; the run summary says what was stored without a stub."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

from flows.core.models import Feed
from flows.core.settings import load_settings
from flows.core.store import Store
from flows.ingest import ingest_feeds
from tests.ingest_support import Item, LoopbackServer, Reply, rss
from tests.preview_support import make_project, run_briefing

START = datetime(2026, 1, 1, tzinfo=UTC)


def firehose(first: int, count: int) -> str:
    """`count` entries numbered from `first`, oldest first (the newest are at the end: order must not matter)."""
    items = [
        Item(
            f"Story {n}",
            f"http://news.invalid/story-{n}",
            f"g-{n}",
            f"<p>Story {n} reports one specific thing in enough words to be read as a full entry.</p>",
            published=format_datetime(START + timedelta(minutes=n)),
        )
        for n in range(first, first + count)
    ]
    return rss(items, title="Firehose")


def test_a_10000_entry_feed_has_only_its_newest_entries_read(server: LoopbackServer, project: Path) -> None:
    settings = load_settings(fetch_allowed_networks=["127.0.0.1/32"], fetch_retries=0)
    feed = Feed(id="firehose", url=server.static("/firehose.xml", firehose(0, 10_000)))
    store = Store(settings.store_url)
    outcome = ingest_feeds([feed], store, settings).outcomes[0]
    assert outcome.status == "ok" and outcome.entries == 200 and len(outcome.new) == 200
    assert outcome.first_sight
    assert "the feed lists 10,000 entries; only the newest 200 were read (BRIEFING_MAX_ENTRIES_PER_FEED)" in (
        outcome.warnings
    )
    titles = {a.title for a in store.all_articles()}
    assert titles == {f"Story {n}" for n in range(9_800, 10_000)}


def test_a_new_firehose_feed_gets_a_few_stubs_and_later_runs_are_capped(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with LoopbackServer() as server:
        feed = {"body": firehose(0, 10_000)}
        headers = {"Content-Type": "application/rss+xml"}
        server.route("/firehose.xml", lambda _r: Reply(200, headers, feed["body"].encode()))
        with (project / "content" / "feeds.yaml").open("a", encoding="utf-8") as handle:
            handle.write(f"  - id: firehose\n    url: {server.url('/firehose.xml')}\n")
        env = {"BRIEFING_FETCH_ALLOWED_NETWORKS": '["127.0.0.1/32"]', "BRIEFING_FETCH_RETRIES": "0"}
        first = run_briefing(project, "--json", "ingest", timeout=600, **env)
        assert first.returncode == 0, first.stdout + first.stderr
        summary = json.loads(first.stdout)
        stubs = sorted(Path(p).name for p in summary["stubs"])
        assert stubs == [f"story-{n}.md" for n in range(9_995, 10_000)]  # the newest five
        assert summary["articles_new"] == 203  # and the sample feed's three, which have briefings already
        assert summary["stubs_skipped"] == [
            "firehose: first read of this feed; its 195 older new articles are stored without draft stubs "
            "(BRIEFING_NEW_FEED_STUBS=5)"
        ]
        feed["body"] = firehose(10_000, 80)  # 80 new stories: the feed is known now, the per-run cap applies
        second = run_briefing(project, "--json", "ingest", timeout=600, BRIEFING_MAX_STUBS_PER_RUN="30", **env)
        assert second.returncode == 0, second.stdout + second.stderr
        later = json.loads(second.stdout)
        assert later["articles_new"] == 80 and len(later["stubs"]) == 30
        assert sorted(Path(p).name for p in later["stubs"]) == sorted(f"story-{n}.md" for n in range(10_050, 10_080))
        assert later["stubs_skipped"] == [
            "50 more new articles are stored without draft stubs: at most 30 per run (BRIEFING_MAX_STUBS_PER_RUN); "
            "`briefing add URL` writes one for any of them"
        ]
    briefings = list((project / "content" / "briefings").glob("story-*.md"))
    assert len(briefings) == 35

"""`file:` feeds read only the content folder (and folders BRIEFING_FILE_FEED_DIRS lists): absolute paths, `..`
and symlinks out of it are refused by `briefing check` and by ingest, naming feeds.yaml, the feed and the setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.app.cli import app
from flows.core.content import load_content
from flows.core.settings import load_settings
from flows.core.store import Store
from flows.ingest import ingest_feeds
from tests.ingest_support import Item, long_text, rss

SAMPLE = ("frontier-notes", "file:samples/ai-news.xml")  # the shipped sample feed keeps working
SECRET_FEED = rss([Item("Secret story", "http://secret.invalid/1", "g-secret", long_text("secret"))])
ESCAPING = ["passwd", "dotdot", "deeper", "symlink", "absolute"]


@pytest.fixture
def outside(project: Path) -> Path:
    folder = project / "outside"
    folder.mkdir()
    (folder / "secret.xml").write_text(SECRET_FEED, "utf-8")
    return folder


def write_feeds(project: Path, *entries: tuple[str, str]) -> Path:
    lines = ["feeds:"] + [f"  - id: {feed_id}\n    url: {url}" for feed_id, url in entries]
    path = project / "content" / "feeds.yaml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def escaping_feeds(project: Path, outside: Path) -> list[tuple[str, str]]:
    (project / "content" / "samples" / "link.xml").symlink_to(outside / "secret.xml")
    (project / "content" / "deep").mkdir()
    return [
        ("passwd", "file:///etc/passwd"),
        ("dotdot", "file:../outside/secret.xml"),
        ("deeper", "file:deep/../../outside/secret.xml"),
        ("symlink", "file:samples/link.xml"),
        ("absolute", f"file://{outside / 'secret.xml'}"),
    ]


def test_check_refuses_file_feeds_outside_the_content_folder(project: Path, outside: Path) -> None:
    feeds_yaml = write_feeds(project, SAMPLE, *escaping_feeds(project, outside))
    result = CliRunner().invoke(app, ["--json", "check"])
    assert result.exit_code == 3
    refused = [p for p in json.loads(result.stdout)["problems"] if "BRIEFING_FILE_FEED_DIRS" in p["message"]]
    assert [p["field"] for p in refused] == [f"feeds[{i}].url" for i in range(1, 6)]
    assert [p["line"] for p in refused] == [4, 6, 8, 10, 12]
    for problem, feed_id in zip(refused, ESCAPING, strict=True):
        assert problem["path"] == str(feeds_yaml) and f"feed '{feed_id}'" in problem["message"]


def test_ingest_refuses_them_and_reads_the_sample(project: Path, outside: Path) -> None:
    write_feeds(project, SAMPLE, *escaping_feeds(project, outside))
    settings = load_settings()
    store = Store(settings.store_url)
    report = ingest_feeds(list(load_content(settings.content_dir).content.feeds), store, settings)
    outcomes = {o.feed_id: o for o in report.outcomes}
    assert outcomes["frontier-notes"].status == "ok" and len(outcomes["frontier-notes"].new) == 3
    for feed_id in ESCAPING:
        error = outcomes[feed_id].error
        assert outcomes[feed_id].status == "error", feed_id
        assert "feeds.yaml" in error and f"feed '{feed_id}'" in error and "BRIEFING_FILE_FEED_DIRS" in error
    titles = {a.title for a in store.all_articles()}
    assert "Secret story" not in titles and not any("root:" in t for t in titles)


def test_a_folder_listed_in_the_setting_may_be_read(
    project: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_feeds(project, SAMPLE, ("allowed", f"file://{outside / 'secret.xml'}"))
    monkeypatch.setenv("BRIEFING_FILE_FEED_DIRS", json.dumps([str(outside)]))
    result = CliRunner().invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    settings = load_settings()
    report = ingest_feeds(list(load_content(settings.content_dir).content.feeds), Store(settings.store_url), settings)
    assert [o.status for o in report.outcomes] == ["ok", "ok"] and len(report.new_articles) == 4

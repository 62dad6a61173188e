"""Git publishing against a local bare repository: commits list the changed files; no change, no commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flows.core.errors import PublishError
from flows.core.settings import load_settings
from flows.publish.git import commit_message
from tests.publish_support import LATER, publish, sample_content, snapshot


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def bare_remote(tmp_path) -> Path:
    remote = tmp_path / "remote.git"
    _git("init", "-q", "--bare", str(remote))
    return remote


def _log(remote: Path) -> list[str]:
    return _git("--git-dir", str(remote), "log", "--format=%H", "main").split()


def _files_of(remote: Path, commit: str) -> set[str]:
    return set(_git("--git-dir", str(remote), "show", "--name-only", "--format=", commit).split())


def test_publish_commits_the_changed_files_and_pushes(project, store, bare_remote) -> None:
    settings = load_settings(archive_git_remote=str(bare_remote))
    content = sample_content(settings)
    first = publish(settings, store)
    assert first.commit and _log(bare_remote) == [first.commit]
    pages = set(first.pages.values())
    assert pages <= _files_of(bare_remote, first.commit)
    message = _git("--git-dir", str(bare_remote), "log", "-1", "--format=%B", "main")
    assert message.startswith("Publish archive: 9 files changed")
    assert all(f"A {p}" in message for p in pages)

    again = publish(settings, store, now=LATER)
    assert again.commit == "" and again.written == []
    assert _log(bare_remote) == [first.commit]

    edited = content.ready[1].model_copy(update={"prompts": ("换一个角度：谁会因此更忙？",)})
    third = publish(settings, store, (content.ready[0], edited), now=LATER)
    assert third.commit and _log(bare_remote) == [third.commit, first.commit]
    path = first.pages[edited.slug]
    changed = _files_of(bare_remote, third.commit)
    assert {path, path.replace(".md", ".html"), "feed.xml"} <= changed
    assert first.pages[content.ready[0].slug] not in changed
    message = _git("--git-dir", str(bare_remote), "log", "-1", "--format=%B", "main")
    assert f"M {path}" in message and "feed.xml" in message


def test_a_fresh_archive_folder_adopts_the_remote_history(project, store, bare_remote, tmp_path) -> None:
    settings = load_settings(archive_git_remote=str(bare_remote))
    first = publish(settings, store)
    elsewhere = load_settings(archive_git_remote=str(bare_remote), archive_dir=tmp_path / "second-machine")
    second = publish(elsewhere, store)
    assert second.commit == "" and _log(bare_remote) == [first.commit]
    assert snapshot(elsewhere.archive_path).keys() == snapshot(settings.archive_path).keys()


def test_an_unreachable_remote_fails_before_anything_is_written(project, store, tmp_path) -> None:
    settings = load_settings(archive_git_remote=str(tmp_path / "no-such-remote.git"))
    with pytest.raises(PublishError, match="git ls-remote") as err:
        publish(settings, store)
    assert "no-such-remote.git" in str(err.value)
    assert snapshot(settings.archive_path) == {}


def test_a_rejected_push_is_a_clear_error_and_is_pushed_next_time(project, store, bare_remote) -> None:
    hook = bare_remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'archive is frozen' >&2\nexit 1\n", encoding="utf-8")
    hook.chmod(0o755)
    settings = load_settings(archive_git_remote=str(bare_remote))
    with pytest.raises(PublishError, match="git push") as err:
        publish(settings, store)
    assert "archive is frozen" in str(err.value)
    local = _git("log", "--format=%H", cwd=settings.archive_path).split()
    assert len(local) == 1
    hook.unlink()
    report = publish(settings, store, now=LATER)
    assert report.written == [] and report.commit == ""
    assert _log(bare_remote) == local


def test_commit_message_lists_files_and_counts_the_rest() -> None:
    message = commit_message([f"A 2026/06/p{i}.md" for i in range(60)])
    assert message.splitlines()[0] == "Publish archive: 60 files changed"
    assert "A 2026/06/p0.md" in message and "… and 10 more" in message

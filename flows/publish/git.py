"""Optional git publishing of the archive: when `archive_git_remote` is set, the archive folder is a git
repository; each publish commits the changed files (the message lists them) and pushes to the remote.

Every git call is `git -C <archive> ...` with explicit arguments (no shell), a timeout, and no terminal prompt;
a failing call becomes a PublishError carrying git's own message.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from flows.core.errors import PublishError
from flows.core.settings import Settings

logger = logging.getLogger(__name__)

REMOTE = "archive"
MESSAGE_FILES = 50  # files listed by name in a commit message; more are counted


def git(root: Path, settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["git", "-C", str(root), *args]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=settings.archive_git_timeout, env=env, check=False
        )
    except FileNotFoundError:
        raise PublishError("git is not installed", hint="install git or unset BRIEFING_ARCHIVE_GIT_REMOTE") from None
    except subprocess.TimeoutExpired:
        raise PublishError(
            f"`git {' '.join(args)}` took longer than {settings.archive_git_timeout:g} s",
            where=str(root),
            hint="check the remote is reachable or raise BRIEFING_ARCHIVE_GIT_TIMEOUT",
        ) from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise PublishError(
            f"`git {' '.join(args)}` failed: {' / '.join(detail[-8:]) or f'exit {result.returncode}'}",
            where=str(root),
            hint="fix the archive repository or BRIEFING_ARCHIVE_GIT_REMOTE; the files are written, "
            "the next publish commits and pushes them",
        )
    return result


def _has_commits(root: Path, settings: Settings) -> bool:
    return git(root, settings, "rev-parse", "-q", "--verify", "HEAD^{commit}", check=False).returncode == 0


def _remote_ref(settings: Settings) -> str:
    return f"refs/remotes/{REMOTE}/{settings.archive_git_branch}"


def _has_ref(root: Path, settings: Settings, ref: str) -> bool:
    return git(root, settings, "rev-parse", "-q", "--verify", ref, check=False).returncode == 0


def _is_ancestor(root: Path, settings: Settings, older: str, newer: str) -> bool:
    return git(root, settings, "merge-base", "--is-ancestor", older, newer, check=False).returncode == 0


def prepare_repository(root: Path, settings: Settings) -> None:
    """Make the archive folder a repository tracking the remote branch, before any file is written."""
    branch = settings.archive_git_branch
    if git(root, settings, "check-ref-format", "--branch", branch, check=False).returncode != 0:
        raise PublishError(f"'{branch}' is not a valid branch name", where="BRIEFING_ARCHIVE_GIT_BRANCH")
    if not (root / ".git").exists():
        git(root, settings, "init", "-q")
        git(root, settings, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
        logger.info("archive: initialised a git repository in %s", root)
    current = git(root, settings, "remote", "get-url", REMOTE, check=False)
    if current.returncode != 0:
        git(root, settings, "remote", "add", REMOTE, settings.archive_git_remote)
    elif current.stdout.strip() != settings.archive_git_remote:
        git(root, settings, "remote", "set-url", REMOTE, settings.archive_git_remote)
    heads = git(root, settings, "ls-remote", "--heads", REMOTE, f"refs/heads/{branch}").stdout.strip()
    if not heads:
        return
    git(root, settings, "fetch", "-q", REMOTE, f"+refs/heads/{branch}:{_remote_ref(settings)}")
    _catch_up(root, settings)


def _catch_up(root: Path, settings: Settings) -> None:
    """Start from the remote's history: adopt it in a new repository, fast-forward an older one."""
    remote = _remote_ref(settings)
    if not _has_commits(root, settings):
        git(root, settings, "reset", "-q", remote)
        git(root, settings, "checkout", "-q", "--", ".")
        return
    if _is_ancestor(root, settings, remote, "HEAD"):
        return
    if _is_ancestor(root, settings, "HEAD", remote):
        git(root, settings, "merge", "-q", "--ff-only", remote)
        return
    raise PublishError(
        f"the archive's branch and {REMOTE}/{settings.archive_git_branch} have diverged",
        where=str(root),
        hint="reconcile them by hand (git pull --rebase in the archive folder), then publish again",
    )


def _identity_args(root: Path, settings: Settings) -> list[str]:
    if git(root, settings, "config", "--get", "user.email", check=False).stdout.strip():
        return []
    return ["-c", f"user.name={settings.from_name}", "-c", f"user.email={settings.from_address}"]


def commit_message(changes: list[str]) -> str:
    listed = changes[:MESSAGE_FILES]
    lines = [f"Publish archive: {len(changes)} file{'s' if len(changes) != 1 else ''} changed", ""]
    lines.extend(listed)
    if len(changes) > len(listed):
        lines.append(f"… and {len(changes) - len(listed)} more")
    return "\n".join(lines) + "\n"


def commit_and_push(root: Path, settings: Settings) -> str:
    """Commit every change in the archive folder and push; return the new commit's id ('' when nothing changed)."""
    git(root, settings, "add", "-A", "--", ".")
    status = git(root, settings, "diff", "--cached", "--name-status", "--no-renames").stdout
    changes = [" ".join(line.split("\t")) for line in status.splitlines() if line.strip()]
    commit = ""
    if changes:
        message = commit_message(changes)
        git(root, settings, *_identity_args(root, settings), "commit", "-q", "--no-gpg-sign", "-m", message)
        commit = git(root, settings, "rev-parse", "HEAD").stdout.strip()
        logger.info("archive: committed %s (%d files)", commit[:12], len(changes))
    if _has_commits(root, settings) and _needs_push(root, settings):
        git(root, settings, "push", "-q", REMOTE, f"HEAD:refs/heads/{settings.archive_git_branch}")
        logger.info("archive: pushed to %s", settings.archive_git_remote)
    return commit


def _needs_push(root: Path, settings: Settings) -> bool:
    remote = _remote_ref(settings)
    return not _has_ref(root, settings, remote) or not _is_ancestor(root, settings, "HEAD", remote)

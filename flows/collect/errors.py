"""The collect stage's error: the mailbox cannot be reached, read or changed."""

from __future__ import annotations

from flows.core.errors import BriefingError


class CollectError(BriefingError):
    """The IMAP mailbox could not be reached, logged into or read (exit status 10)."""

    exit_code = 10

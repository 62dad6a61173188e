"""One base exception; subclasses carry the context needed to fix the problem, and the exit status.

The CLI turns any BriefingError into one line: where (file:line, field, URL), what, and how to fix it. Every
exit status of the README's table is the `exit_code` of a class here, or `partial_failure_code`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Said at start-up (settings) and by a Store built directly: psycopg is the `postgres` extra, not a dependency.
POSTGRES_DRIVER_MISSING = (
    "a PostgreSQL store needs the psycopg driver, which is not installed: "
    "pip install 'briefing-pipeline[postgres]' (or leave it empty for SQLite)"
)


class BriefingError(Exception):
    """Base of every error the product raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "", where: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where

    def __str__(self) -> str:
        parts = [f"{self.where}: " if self.where else "", self.message]
        if self.hint:
            parts.append(f" — {self.hint}")
        return "".join(parts)


class SettingsError(BriefingError):
    exit_code = 2


class ContentError(BriefingError):
    """A human-edited file under content/ is wrong."""

    exit_code = 3

    def __init__(
        self, path: Path | str, message: str, *, field: str = "", line: int | None = None, hint: str = ""
    ) -> None:
        location = str(path) + (f":{line}" if line else "")
        if field:
            location += f" [{field}]"
        super().__init__(message, hint=hint, where=location)
        self.path = Path(path)
        self.field = field
        self.line = line


class FetchError(BriefingError):
    """A feed or page could not be fetched or parsed."""

    exit_code = 4

    def __init__(self, url: str, message: str, *, hint: str = "", retryable: bool = False) -> None:
        super().__init__(message, hint=hint, where=url)
        self.url = url
        self.retryable = retryable


class UnsafeURLError(FetchError):
    """The URL points somewhere the settings do not allow (private address, odd scheme)."""


class RenderError(BriefingError):
    exit_code = 5

    def __init__(self, message: str, *, slug: str = "", audience: str = "", hint: str = "") -> None:
        where = "/".join(x for x in (slug, audience) if x)
        super().__init__(message, hint=hint, where=where)


class DeliveryError(BriefingError):
    exit_code = 6


class PublishError(BriefingError):
    exit_code = 7


@dataclass(frozen=True)
class Problem:
    """One finding of `briefing check`: where, what, how to fix it."""

    path: str
    message: str
    field: str = ""
    line: int | None = None
    hint: str = ""
    severity: str = "error"

    def __str__(self) -> str:
        where = self.path + (f":{self.line}" if self.line else "")
        if self.field:
            where += f" [{self.field}]"
        tail = f" — {self.hint}" if self.hint else ""
        return f"{where}: {self.severity}: {self.message}{tail}"

    @classmethod
    def from_error(cls, err: ContentError) -> Problem:
        return cls(path=str(err.path), message=err.message, field=err.field, line=err.line, hint=err.hint)


class StoreError(BriefingError):
    """The database cannot be opened or migrated."""

    exit_code = 9


class ContentProblemsError(BriefingError):
    """Content errors stopped a command (strict mode, a held briefing asked for by name, nothing valid to do)."""

    exit_code = 3


class TokenError(BriefingError):
    """An unsubscribe token that is malformed, forged, or signed with a key no longer accepted."""

    exit_code = 8


class CollectError(BriefingError):
    """The IMAP mailbox could not be reached, logged into or read (exit status 10)."""

    exit_code = 10


class DraftError(BriefingError):
    """Drafting could not fill everything it was asked to (the report says what and why)."""

    exit_code = 11


def partial_failure_code(
    *, content: bool = False, fetch: bool = False, render: bool = False, delivery: bool = False, publish: bool = False
) -> int:
    """The one exit-code rule for a command that ran to its end but fell short somewhere.

    Each shortfall has the code of the error class it stands for: 3 content problems (a ready briefing held
    back, a row or file skipped), 4 a feed or page could not be fetched, 5 a briefing could not be rendered,
    6 emails failed, are uncertain or still pending, 7 the archive could not be written. When several apply,
    the highest wins: it is the one nearest the readers. 0 when nothing fell short."""
    for applies, code in ((publish, 7), (delivery, 6), (render, 5), (fetch, 4), (content, 3)):
        if applies:
            return code
    return 0

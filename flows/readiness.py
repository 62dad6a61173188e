"""Which `ready` briefings may reach readers: one decision that every path rendering, sending or publishing asks.

A ready briefing goes out only when `briefing check` finds no error in it: its own file's problems (format,
the ready rules, unknown audiences, control characters) and, with a store, its translation against the stored
source article (`flows.join`). `run`/`pipeline`, `brief`, `deliver`, `send`, `send --test`, the preview's test
send, `publish` and `flows.scaleout` all call `gate` (or `problems_for`); a held briefing's problems go to the
run summary and make the exit code 3, and every other briefing still goes out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from flows.core.content import Loaded
from flows.core.errors import BriefingError, Problem
from flows.core.models import Briefing
from flows.core.store import Store
from flows.join import Joined, join_briefing

logger = logging.getLogger(__name__)


class ContentProblemsError(BriefingError):
    """Content errors stopped a command (strict mode, or nothing valid left to do)."""

    exit_code = 3


def _same_file(problem: Problem, briefing: Briefing) -> bool:
    return bool(briefing.path) and Path(problem.path).resolve() == Path(briefing.path).resolve()


def file_problems(briefing: Briefing, loaded: Loaded) -> list[Problem]:
    """What `load_content` found in the briefing's own file (every severity)."""
    return [p for p in loaded.problems if _same_file(p, briefing)]


def problems_for(briefing: Briefing, loaded: Loaded, store: Store | None) -> list[Problem]:
    """Every problem between this briefing and its readers: its file's, then (with a store) its translation's."""
    problems = file_problems(briefing, loaded)
    if store is not None and briefing.status == "ready":
        problems += join_briefing(briefing, store).problems
    return problems


def errors_in(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


@dataclass
class Gate:
    """The ready briefings asked about, joined with their articles: `passed` may be rendered, sent and published,
    `held` may not (each Joined carries its problems)."""

    passed: list[Joined] = field(default_factory=list)
    held: list[Joined] = field(default_factory=list)

    @property
    def publishable(self) -> tuple[Briefing, ...]:
        return tuple(j.briefing for j in self.passed)

    def held_lines(self) -> list[str]:
        """One line per held briefing: its slug and its first errors."""
        lines = []
        for joined in self.held:
            errors = errors_in(joined.problems)
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            lines.append(f"{joined.briefing.slug}: {errors[0]}{more}")
        return lines


def gate(loaded: Loaded, store: Store, slugs: list[str] | None = None) -> Gate:
    """Sort every ready briefing (or the named ready ones) into passed and held."""
    result = Gate()
    for briefing in loaded.content.ready:
        if slugs and briefing.slug not in slugs:
            continue
        joined = join_briefing(briefing, store)
        joined.problems = file_problems(briefing, loaded) + joined.problems
        if joined.ok:
            result.passed.append(joined)
        else:
            result.held.append(joined)
            logger.warning("%s is ready but held back: %s", briefing.slug, errors_in(joined.problems)[0])
    return result


def refuse_if_strict(strict: bool, loaded: Loaded) -> None:
    """Strict mode (BRIEFING_STRICT): any content error stops the command with exit 3 before it does anything."""
    if strict and loaded.errors:
        raise ContentProblemsError(
            f"{len(loaded.errors)} content problems (strict mode): {loaded.errors[0]}",
            hint="run `briefing check` and fix them, or unset BRIEFING_STRICT to hold back only what is affected",
        )

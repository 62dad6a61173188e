"""Where things stand: each briefing's stage and problems, the last ingest per feed, the emails that need the
editor, and the summary of a run. Library functions shared by `briefing status`, the preview's list of briefings
and the Prefect flows (`briefing run`, `ingest`, `brief`, `deliver`, `publish`); the CLI and the preview only
format what they return.

`briefing status` reads the store through `read_store`: read-only, never created or migrated.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.core.content import Loaded, file_feed_problems
from flows.core.errors import Problem, partial_failure_code
from flows.core.models import Briefing
from flows.core.settings import Settings
from flows.core.store import Store, ledger, open_store
from flows.edition import EditionReport, errors_in, translation_problems

logger = logging.getLogger(__name__)

FAILURES_SHOWN = 20


def read_store(settings: Settings) -> Store | None:
    """The store opened read-only (looking changes nothing, and works on a read-only store); None when the
    default SQLite file does not exist yet: it is not created by looking."""
    if not settings.database_url and not (settings.output_dir / "store.db").exists():
        return None
    return open_store(settings.store_url, read_only=True)


# --- briefing check ---------------------------------------------------------------------------------------


def check_problems(settings: Settings, loaded: Loaded) -> list[Problem]:
    """Every problem `briefing check` reports: the content's own, file: feeds outside the allowed folders and,
    when a store exists, translations that drifted from their stored article and suppressed subscribers."""
    problems = list(loaded.problems)
    problems.extend(file_feed_problems(loaded.content.feeds, settings.content_dir, settings.file_feed_dirs))
    problems.extend(_alignment_problems(settings, loaded))
    problems.extend(_suppression_problems(settings, loaded))
    return problems


def _alignment_problems(settings: Settings, loaded: Loaded) -> list[Problem]:
    """Check translations against stored articles when a store exists (no store is created by checking)."""
    if not settings.database_url and not (settings.output_dir / "store.db").exists():
        return []
    store = open_store(settings.store_url)
    return [p for briefing in loaded.content.ready for p in errors_in(translation_problems(briefing, store))]


def _suppression_problems(settings: Settings, loaded: Loaded) -> list[Problem]:
    """A warning per subscriber-file row whose address is suppressed (bounced or complained): it is not mailed."""
    if not settings.database_url and not (settings.output_dir / "store.db").exists():
        return []
    suppressed = open_store(settings.store_url).suppressed()
    problems: list[Problem] = []
    for audience in loaded.content.audiences:
        where = str(settings.content_dir / audience.subscribers_file) if audience.subscribers_file else "audiences.yaml"
        for subscriber in audience.subscribers:
            reason = suppressed.get(subscriber.email.lower())
            if reason:
                problems.append(
                    Problem(
                        where,
                        f"{subscriber.email} is suppressed ({reason}): it is not mailed",
                        field=f"{audience.id}.subscribers",
                        hint="remove the row, or `briefing suppression lift ADDRESS` if the address works again",
                        severity="warning",
                    )
                )
    return problems


# --- briefings -----------------------------------------------------------------------------------------


def briefing_stage(status: str, states: dict[str, dict[str, int]]) -> str:
    """draft | ready (not sent yet) | sending (rows queued or deferred) | sent | attention (failed/uncertain)."""
    totals: dict[str, int] = {}
    for per_audience in states.values():
        for state, rows in per_audience.items():
            totals[state] = totals.get(state, 0) + rows
    if totals.get("failed") or totals.get("uncertain"):
        return "attention"
    if totals.get("queued") or totals.get("deferred") or totals.get("sending"):
        return "sending"
    if totals.get("sent"):
        return "sent"
    return status


@dataclass
class BriefingStatus:
    """One briefing as `briefing status` and the preview show it: its problems (what would hold it back, see
    `flows.edition.problems_for`) and its ledger rows per audience and state."""

    briefing: Briefing
    problems: list[Problem] = field(default_factory=list)
    sent: dict[str, dict[str, int]] = field(default_factory=dict)  # audience → state → rows

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def stage(self) -> str:
        return briefing_stage(self.briefing.status, self.sent)

    def to_dict(self) -> dict[str, Any]:
        return {
            "slug": self.briefing.slug,
            "date": self.briefing.date.isoformat(),
            "status": self.briefing.status,
            "stage": self.stage,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "audiences": self.sent,
            "path": self.briefing.path,
        }


def sent_counts(store: Store | None) -> dict[str, dict[str, dict[str, int]]]:
    """slug → audience → ledger state → rows (nothing without a store)."""
    sent: dict[str, dict[str, dict[str, int]]] = {}
    for (slug, audience, state), rows in (ledger.counts(store) if store is not None else {}).items():
        sent.setdefault(slug, {}).setdefault(audience, {})[state] = rows
    return sent


def briefing_statuses(loaded: Loaded, store: Store | None) -> tuple[list[BriefingStatus], list[Problem]]:
    """Every briefing with its own problems and ledger counts, plus the problems of the other files."""
    grouped: dict[str, list[Problem]] = {}
    for problem in loaded.problems:
        grouped.setdefault(str(Path(problem.path).resolve()), []).append(problem)
    sent = sent_counts(store)
    statuses = []
    for briefing in loaded.content.briefings:
        own = grouped.pop(str(Path(briefing.path).resolve()), []) + translation_problems(briefing, store)
        statuses.append(BriefingStatus(briefing, own, sent.get(briefing.slug, {})))
    general = [p for items in grouped.values() for p in items]
    return statuses, general


# --- `briefing status` ---------------------------------------------------------------------------------


def feed_rows(store: Store | None) -> list[dict[str, Any]]:
    """The last ingest of each feed."""
    return [
        {
            "feed": f.get("feed_id") or f.get("feed_url"),
            "url": f.get("feed_url"),
            "last_fetched_at": f.get("last_fetched_at"),
            "last_status": f.get("last_status"),
            "entries_new": f.get("entries_new"),
            "last_error": f.get("last_error"),
        }
        for f in (store.all_feed_states() if store is not None else [])
    ]


def failed_emails(store: Store | None) -> list[dict[str, str]]:
    """Every failed or uncertain ledger row with the server's reply."""
    if store is None:
        return []
    return [
        {"slug": r.slug, "audience": r.audience, "recipient": r.recipient, "state": r.state, "reply": r.last_reply}
        for state in (ledger.FAILED, ledger.UNCERTAIN)
        for r in ledger.rows_in_state(store, state)
    ]


def attention_lines(
    statuses: list[BriefingStatus], feeds: list[dict[str, Any]], failures: list[dict[str, str]]
) -> list[str]:
    """What the editor should act on, one line each."""
    lines = []
    for item in statuses:
        if item.stage == "attention":
            lines.append(
                f"{item.briefing.slug}: emails failed or uncertain — see `briefing run` output; "
                "uncertain rows are resent only with --resend-uncertain"
            )
        if item.briefing.status == "ready" and item.errors:
            lines.append(f"{item.briefing.path}: ready but has {len(item.errors)} errors — run `briefing check`")
    lines += [f"feed {f['feed']}: {f['last_error']} ({f['url']})" for f in feeds if f["last_error"]]
    lines += [
        f"{f['slug']}/{f['audience']} {f['recipient']}: {f['state']} — {f['reply'] or 'no reply recorded'}"
        for f in failures[:FAILURES_SHOWN]
    ]
    if len(failures) > FAILURES_SHOWN:
        lines.append(f"… and {len(failures) - FAILURES_SHOWN} more failed/uncertain emails (see --json)")
    return lines


def status_report(loaded: Loaded, store: Store | None) -> dict[str, Any]:
    """What is draft, ready, sent (per audience and state) and failed, the last ingest per feed, the suppressed
    addresses, and the lines that need attention: the data of `briefing status` (and its --json)."""
    from flows.core.store.suppressions import list_suppressions

    statuses, _general = briefing_statuses(loaded, store)
    feeds = feed_rows(store)
    failures = failed_emails(store)
    suppressed = list_suppressions(store) if store is not None else []
    return {
        "briefings": [s.to_dict() for s in statuses],
        "feeds": feeds,
        "failures": failures,
        "attention": attention_lines(statuses, feeds, failures),
        "suppressed": [s.to_dict() for s in suppressed],
    }


# --- the summary of a flow run -------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What a flow run did (`briefing run`, `ingest`, `brief`, `deliver`, `publish`), for its printed summary and
    `--json`. `edition` holds what became of the ready briefings; the email counts and delivery errors are read
    from it, and `exit_code` adds the run's own shortfalls (feeds, content files) to the edition's."""

    articles_new: int = 0
    articles_updated: int = 0
    feeds_failed: list[str] = field(default_factory=list)
    stubs: list[str] = field(default_factory=list)
    stubs_skipped: list[str] = field(default_factory=list)  # why some new articles got no stub (caps)
    drafts: list[dict[str, Any]] = field(default_factory=list)  # machine drafts of new stubs (draft_new_stubs)
    briefings_rendered: list[str] = field(default_factory=list)
    briefings_not_ready: list[str] = field(default_factory=list)  # `brief SLUG` of a draft: held, but no problem
    briefings_announced: list[str] = field(default_factory=list)
    publish_held: list[str] = field(default_factory=list)  # ready briefings left out of the archive
    pages_written: list[str] = field(default_factory=list)
    pages_unchanged: int = 0
    markdown_written: list[str] = field(default_factory=list)  # outputs/briefings/<slug>/<audience>.md
    markdown_unchanged: int = 0
    problems: list[str] = field(default_factory=list)
    content_errors: int = 0
    outbox: str | None = None  # where emails are written; None when they go to an SMTP server
    smtp: str | None = None  # the SMTP server (URL without password); None when they go to the outbox
    archive: str = ""
    edition: EditionReport = field(default_factory=EditionReport)

    @property
    def briefings_held(self) -> list[str]:
        held = [j.briefing.slug for j in self.edition.held] + self.briefings_not_ready
        return held + [slug for slug in self.publish_held if slug not in held]

    @property
    def delivery(self) -> dict[str, dict[str, dict[str, int]]]:
        """slug → audience → state → emails of this run."""
        per: dict[str, dict[str, dict[str, int]]] = {}
        for report in self.edition.deliveries:
            for audience, result in report.audiences.items():
                per.setdefault(report.slug, {})[audience] = dict(Counter(result.states))
        return per

    def _emails(self, state: str) -> int:
        return sum(r.audiences[a].states[state] for r in self.edition.deliveries for a in r.audiences)

    @property
    def emails_sent(self) -> int:
        return self._emails(ledger.SENT)

    @property
    def exit_code(self) -> int:
        """The edition's shortfalls (`flows.edition.EditionReport.shortfalls`), plus feeds that failed and
        content files with errors (a briefing held back from publishing is one too)."""
        edition = self.edition.shortfalls
        return partial_failure_code(
            content=edition.content or bool(self.content_errors or self.publish_held),
            fetch=bool(self.feeds_failed),
            render=edition.render,
            delivery=edition.delivery,
        )

    def to_dict(self) -> dict[str, Any]:
        plain = {name: getattr(self, name) for name in self.__dataclass_fields__ if name not in ("edition",)}
        plain.pop("publish_held")
        return {
            **plain,
            "briefings_held": self.briefings_held,
            "render_failed": list(self.edition.not_rendered),
            "emails_sent": self.emails_sent,
            "emails_uncertain": self._emails(ledger.UNCERTAIN),
            "emails_failed": self._emails(ledger.FAILED),
            "delivery_errors": [
                f"{r.slug}/{a}: {result.error}" for r in self.edition.deliveries for a, result in r.audiences.items()
                if result.error
            ],
            "delivery": self.delivery,
            "exit_code": self.exit_code,
        }

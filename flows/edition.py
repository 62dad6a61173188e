"""The edition: plan → join → render → deliver a briefing, for every path that sends one.

`gate` joins each ready briefing with its stored article and decides, in this one place, which briefings may
reach readers and why the others are held back (`problems_for`: what `briefing check` finds in the briefing's
file — format, the ready rules, unknown audiences, control characters, unreviewed machine drafts — and its
translation against the stored source article); it also fixes each briefing's archive page
(`flows.core.pages`), which every email links to. `render_for_archive` renders a briefing's emails for that page.

Every send path goes through here: `briefing send` and the scale-out worker (`send`, `deliver_slug`), the
Prefect flows of `briefing run`, `brief` and `deliver` (their tasks call `render_for_archive` and
`flows.deliver.deliver_briefing` on a `gate`), the test sends of `briefing send --test` and of the preview
(`send_test`) and the preview's renderings. What a send fell short of is an `EditionReport`, whose
`shortfalls` are the one exit rule: 3 a ready briefing held back, 5 one not rendered, 6 an email failed in
this run, is uncertain, still pending, or its send could not start (`flows.core.errors.partial_failure_code`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.core.content import Loaded, check_alignment, load_content
from flows.core.errors import BriefingError, ContentProblemsError, DeliveryError, Problem, partial_failure_code
from flows.core.identity import canonical_url
from flows.core.models import Article, Briefing, Content
from flows.core.pages import archive_index_url, archive_url, assign_paths
from flows.core.settings import Settings, load_settings
from flows.core.store import Store, ledger, open_store
from flows.deliver import DeliveryReport, deliver_briefing
from flows.deliver import send_test as deliver_test
from flows.deliver.rate_limit import GlobalRateLimitedTransport, ensure_send_rate_limit, permit_chunk
from flows.deliver.send import make_transport, warn_if_unsubscribe_url_is_not_https
from flows.deliver.transports import Transport
from flows.render import RenderedBriefing, render_briefing

logger = logging.getLogger(__name__)


# --- join: a briefing and its stored source article ---------------------------------------------------


@dataclass
class Joined:
    briefing: Briefing
    article: Article | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def find_article(briefing: Briefing, store: Store) -> Article | None:
    if briefing.article_id:
        article = store.get_article(briefing.article_id)
        if article is not None:
            return article
    return store.find_article(canonical_url=canonical_url(briefing.source.url))


def join_briefing(briefing: Briefing, store: Store) -> Joined:
    """The briefing with its stored article; its translation checked against the article's paragraphs. A
    briefing whose article is not in the store still renders from the source paragraphs quoted in its file."""
    article = find_article(briefing, store)
    if article is None:
        note = Problem(
            briefing.path,
            "source article is not in the store; using the paragraphs quoted in the file",
            field="source.url",
            severity="warning",
            hint="run `briefing ingest` or `briefing add URL`",
        )
        return Joined(briefing, None, [note])
    if not article.paragraphs:
        return Joined(briefing, article)
    return Joined(briefing, article, check_alignment(briefing, article))


# --- the hold-back decision ---------------------------------------------------------------------------


def _same_file(problem: Problem, briefing: Briefing) -> bool:
    return bool(briefing.path) and Path(problem.path).resolve() == Path(briefing.path).resolve()


def file_problems(briefing: Briefing, loaded: Loaded) -> list[Problem]:
    """What `load_content` found in the briefing's own file (every severity)."""
    return [p for p in loaded.problems if _same_file(p, briefing)]


def translation_problems(briefing: Briefing, store: Store | None) -> list[Problem]:
    """A ready briefing's translation against its stored article (nothing without a store, or for a draft)."""
    if store is None or briefing.status != "ready":
        return []
    return join_briefing(briefing, store).problems


def problems_for(briefing: Briefing, loaded: Loaded, store: Store | None) -> list[Problem]:
    """Every problem between this briefing and its readers: its file's, then its translation's. Any error holds
    it back."""
    return file_problems(briefing, loaded) + translation_problems(briefing, store)


def errors_in(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def held_line(slug: str, problems: list[Problem]) -> str:
    """One line for a held briefing: its slug and its first error."""
    errors = errors_in(problems)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{slug}: {errors[0]}{more}"


@dataclass
class Gate:
    """The ready briefings asked about, joined with their articles: `passed` may be rendered, sent and
    published, `held` may not (each Joined carries its problems); `pages`: slug → archive page of every ready
    briefing (the path of first publication, or where the first publication will go)."""

    passed: list[Joined] = field(default_factory=list)
    held: list[Joined] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)

    @property
    def publishable(self) -> tuple[Briefing, ...]:
        return tuple(j.briefing for j in self.passed)

    def held_lines(self) -> list[str]:
        return [held_line(j.briefing.slug, j.problems) for j in self.held]


def gate(loaded: Loaded, store: Store, slugs: list[str] | None = None, *, pages: bool = True) -> Gate:
    """Sort every ready briefing (or the named ready ones) into passed and held, and place their pages
    (`pages=False`: publishing places them itself)."""
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
    if pages and result.passed:
        result.pages = assign_paths(store, loaded.content.ready)
    return result


def refuse_if_strict(strict: bool, loaded: Loaded) -> None:
    """Strict mode (BRIEFING_STRICT): any content error stops the command with exit 3 before it does anything."""
    if strict and loaded.errors:
        raise ContentProblemsError(
            f"{len(loaded.errors)} content problems (strict mode): {loaded.errors[0]}",
            hint="run `briefing check` and fix them, or unset BRIEFING_STRICT to hold back only what is affected",
        )


# --- render -------------------------------------------------------------------------------------------


def render_for_archive(
    settings: Settings,
    content: Content,
    briefing: Briefing,
    page: str,
    *,
    audiences: list[str] | None = None,
    is_test: bool = False,
) -> RenderedBriefing:
    """Render `briefing`'s emails linking to its archive page `page` (from `gate` or
    `flows.core.pages.assign_paths`) and the archive index, within the settings' size budget. The pipeline,
    `briefing send`, the scale-out worker and the preview all render through here, so they make the same bytes."""
    return render_briefing(
        briefing,
        content,
        templates_dir=settings.templates_dir,
        archive_url=archive_url(settings, page),
        archive_index_url=archive_index_url(settings),
        budget=settings.email_size_budget,
        is_test=is_test,
        audiences=audiences,
        brand=settings.brand,
    )


# --- what a send did, and the one exit rule -----------------------------------------------------------


@dataclass(frozen=True)
class Shortfalls:
    """What a send path fell short of; `code` is the exit status (`partial_failure_code`)."""

    content: bool = False  # a ready briefing was held back
    render: bool = False  # a passed briefing could not be rendered
    delivery: bool = False  # an email failed in this run, is uncertain or pending, or its send could not start

    @property
    def code(self) -> int:
        return partial_failure_code(content=self.content, render=self.render, delivery=self.delivery)


@dataclass
class EditionReport:
    """The ready briefings a send path was asked about, and what became of each."""

    held: list[Joined] = field(default_factory=list)  # ready briefings held back, with their problems
    not_rendered: list[str] = field(default_factory=list)  # "slug: error" per briefing whose rendering failed
    deliveries: list[DeliveryReport] = field(default_factory=list)

    def held_lines(self) -> list[str]:
        """"slug: error" for every error of every briefing held back."""
        return [f"{j.briefing.slug}: {p}" for j in self.held for p in errors_in(j.problems)]

    @property
    def shortfalls(self) -> Shortfalls:
        return Shortfalls(
            content=bool(self.held),
            render=bool(self.not_rendered),
            delivery=any(d.needs_attention for d in self.deliveries),
        )

    @property
    def needs_attention(self) -> bool:
        """A delivery needs the editor, or a ready briefing could not be sent at all."""
        return bool(self.held or self.not_rendered) or any(d.needs_attention for d in self.deliveries)

    @property
    def exit_code(self) -> int:
        return self.shortfalls.code

    @property
    def uncertain(self) -> int:
        return sum(d.uncertain for d in self.deliveries)

    def to_dict(self) -> dict[str, Any]:
        return {
            "briefings": [d.to_dict() for d in self.deliveries],
            "held": self.held_lines(),
            "not_rendered": self.not_rendered,
            "needs_attention": self.needs_attention,
            "exit_code": self.exit_code,
        }


# --- sending without Prefect: `briefing send` and the scale-out worker --------------------------------


def check_choice(content: Content, slug: str | None, audiences: list[str]) -> None:
    """The briefing and audiences a send was asked for exist: a ready briefing with that slug, known audiences."""
    ready = [b.slug for b in content.ready]
    if slug and slug not in ready:
        raise DeliveryError(
            f"no ready briefing with slug '{slug}'",
            hint=f"ready: {', '.join(ready) or 'none'} (set `status: ready` in the briefing file)",
        )
    known = [a.id for a in content.audiences]
    unknown = [a for a in audiences if a not in known]
    if unknown:
        raise DeliveryError(f"unknown audience {', '.join(unknown)}", hint=f"use one of: {', '.join(known)}")


def send(
    settings: Settings,
    store: Store,
    loaded: Loaded,
    *,
    slug: str | None,
    audiences: list[str],
    resend_uncertain: bool = False,
    resend_updated: bool = False,
    transport: Transport | None = None,
) -> EditionReport:
    """Render and deliver every ready briefing (or one); one held back, or whose rendering fails, stops none
    of the others. `transport`: one for every audience (else each audience's send opens its own)."""
    content = loaded.content
    check_choice(content, slug, audiences)
    warn_if_unsubscribe_url_is_not_https(settings)
    checked = gate(loaded, store, [slug] if slug else None)
    report = EditionReport(held=checked.held)
    for joined in checked.passed:
        briefing = joined.briefing
        try:
            rendered = render_for_archive(
                settings, content, briefing, checked.pages[briefing.slug], audiences=audiences or None
            )
        except BriefingError as err:
            report.not_rendered.append(f"{briefing.slug}: {err}")
            continue
        report.deliveries.append(
            deliver_briefing(
                rendered,
                content,
                store,
                settings,
                audiences=audiences or None,
                resend_updated=resend_updated,
                resend_uncertain=resend_uncertain,
                transport=transport,
            )
        )
    return report


def render_for_delivery(slug: str, settings: Settings, store: Store) -> tuple[RenderedBriefing, Content]:
    """Render one ready briefing the way every send path does; every worker renders the same bytes. A briefing
    held back is refused (exit 3), as by every other command."""
    loaded = load_content(settings.content_dir)
    refuse_if_strict(settings.strict, loaded)
    checked = gate(loaded, store, [slug])
    if checked.held:
        held = checked.held_lines()[0]
        raise ContentProblemsError(f"briefing {slug!r} is held back: {held}", hint="run `briefing check`")
    if not checked.passed:
        raise DeliveryError(f"no ready briefing with slug {slug!r}", hint="check the slug and `status: ready`")
    rendered = render_for_archive(settings, loaded.content, checked.passed[0].briefing, checked.pages[slug])
    return rendered, loaded.content


def deliver_slug(
    slug: str,
    *,
    audiences: list[str] | None = None,
    resend_uncertain: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Deliver one briefing from this process alongside any other workers doing the same (the send ledger
    hands each row to one of them; a Prefect rate limit paces them together). Returns a summary."""
    settings = settings or load_settings()
    store = open_store(settings.store_url)
    rendered, content = render_for_delivery(slug, settings, store)
    warn_if_unsubscribe_url_is_not_https(settings)
    transport: Transport = make_transport(settings)
    limit = ensure_send_rate_limit(settings)
    if limit:
        transport = GlobalRateLimitedTransport(transport, limit, permit_chunk(settings.smtp_rate))
    try:
        report = deliver_briefing(
            rendered,
            content,
            store,
            settings,
            audiences=audiences,
            resend_uncertain=resend_uncertain,
            transport=transport,
        )
    finally:
        transport.close()
    states: dict[str, int] = {}
    for result in report.audiences.values():
        for state, n in result.states.items():
            states[state] = states.get(state, 0) + n
    return {"slug": slug, "pid": os.getpid(), "states": states, "rate_limit": limit or ""}


# --- test sends: `briefing send --test` and the preview -----------------------------------------------


@dataclass(frozen=True)
class TestSend:
    """One message marked as a test, sent to one address; no ledger row is written."""

    slug: str
    audience: str
    to: str
    message_id: str
    state: str
    reply: str

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def send_test(settings: Settings, loaded: Loaded, store: Store, slug: str, audience_id: str, address: str) -> TestSend:
    """Send one message marked as a test of `slug` (draft or ready) for one audience to `address`. A briefing
    that `briefing check` rejects is not sent (`problems_for`, as for real sends); neither is a test the
    server does not accept."""
    content = loaded.content
    briefing = next((b for b in content.briefings if b.slug == slug), None)
    if briefing is None:
        raise DeliveryError(f"no briefing with slug '{slug}'", hint="pick one from the list")
    try:
        audience = content.audience(audience_id)
    except KeyError:
        raise DeliveryError(f"unknown audience '{audience_id}'", where=slug) from None
    problems = problems_for(briefing, loaded, store)
    if errors_in(problems):
        raise ContentProblemsError(
            f"not sending a test of a briefing `briefing check` rejects: {held_line(slug, problems)}",
            hint="fix what `briefing check` (or the preview's list) reports first",
        )
    page = assign_paths(store, (briefing,))[slug]
    rendered = render_for_archive(settings, content, briefing, page, audiences=[audience.id], is_test=True)
    message_id, result = deliver_test(rendered.emails[audience.id], audience, address, settings)
    if result.state != ledger.SENT:
        where = f"{slug}/{audience.id}"
        raise DeliveryError(f"test message to {address} {result.state}: {result.reply}", where=where)
    logger.info("test message %s for %s/%s sent to %s: %s", message_id, slug, audience.id, address, result.reply)
    return TestSend(slug, audience.id, address, message_id, result.state, result.reply)

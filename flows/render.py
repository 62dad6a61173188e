"""Render stage: per audience an HTML email (jinja2 → MJML → mjml-python → css-inline), a plain-text part and a
Markdown briefing; per briefing the full archive page with its five views. Entry point: `render_briefing`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import css_inline
import jinja2
import yaml
from mjml import mjml2html

from flows.errors import RenderError
from flows.models import Audience, Briefing, Content, CorePoint
from flows.textwrap_cjk import wrap

logger = logging.getLogger(__name__)

UNSUBSCRIBE_PLACEHOLDER = "https://unsubscribe.invalid/__BRIEFING_UNSUBSCRIBE__"
MD_SPECIALS = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")
STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class NoteView:
    audience_id: str
    audience_name: str
    meaning: str
    next_step: str


@dataclass(frozen=True)
class EmailContext:
    """Everything the email, text and Markdown templates may use, as `ctx.<field>`.

    lang: value of <html lang>; labels: the locale's label table; subject/preheader: message subject and
    hidden preview text; audience_id/audience_name: who it is for; verdict/judgement/date: the briefing's
    headline; source_title/original_url: the source article; own_note: this audience's note (shown first);
    other_notes: the other audiences' notes when the audience asks for them; core_points/prompts: the
    briefing's points and discussion prompts, possibly shortened (core_points_cut tells); archive_url and
    archive_index_url: the online page and the archive list; unsubscribe_url: a placeholder replaced per
    recipient at send time; why_received: footer text; is_test: marks a test send.
    """

    lang: str
    labels: dict[str, str]
    subject: str
    preheader: str
    audience_id: str
    audience_name: str
    verdict: str
    judgement: str
    date: str
    source_title: str
    original_url: str
    own_note: NoteView
    other_notes: tuple[NoteView, ...]
    core_points: tuple[CorePoint, ...]
    core_points_cut: bool
    prompts: tuple[str, ...]
    archive_url: str
    archive_index_url: str
    unsubscribe_url: str
    why_received: str
    is_test: bool = False


@dataclass(frozen=True)
class RenderedEmail:
    slug: str
    audience: str
    subject: str
    preheader: str
    html: str
    text: str
    markdown: str
    content_hash: str
    warnings: tuple[str, ...] = ()

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


@dataclass
class RenderedBriefing:
    briefing: Briefing
    emails: dict[str, RenderedEmail] = field(default_factory=dict)


def md_escape(value: Any) -> str:
    text = str(value).replace("\n", " ")
    return MD_SPECIALS.sub(r"\\\1", text)


def md_url(value: Any) -> str:
    return (
        str(value).replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")
    )


@cache
def environment(templates_dir: Path, autoescape: bool) -> jinja2.Environment:
    """Two environments: HTML/MJML templates escape everything; text and Markdown templates use filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["wrap"] = wrap
    env.filters["md"] = md_escape
    env.filters["mdurl"] = md_url
    return env


def render_template(templates_dir: Path, name: str, **context: Any) -> str:
    env = environment(templates_dir, not name.endswith((".txt.j2", ".md.j2")))
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {name}: {exc}", hint="fix the template under templates/") from exc


@cache
def load_labels(templates_dir: Path) -> dict[str, dict[str, str]]:
    with (templates_dir / "labels.yaml").open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def labels_for(templates_dir: Path, locale: str) -> dict[str, str]:
    table = load_labels(templates_dir)
    if locale in table:
        return table[locale]
    base = locale.split("-")[0]
    return next((v for k, v in table.items() if k.split("-")[0] == base), table["en"])


def preheader_of(judgement: str, limit: int = 110) -> str:
    return judgement if len(judgement) <= limit else judgement[: limit - 1].rstrip() + "…"


def build_context(
    briefing: Briefing,
    audience: Audience,
    content: Content,
    *,
    templates_dir: Path,
    archive_url: str,
    archive_index_url: str,
    is_test: bool = False,
) -> EmailContext:
    labels = labels_for(templates_dir, audience.locale)
    names = {a.id: a.name for a in content.audiences}
    own = briefing.note_for(audience.id)
    if own is None:
        raise RenderError(
            "no note for this audience",
            slug=briefing.slug,
            audience=audience.id,
            hint="add the audience's note; `briefing check` lists what is missing",
        )
    others = tuple(
        NoteView(n.audience, names.get(n.audience, n.audience), n.meaning, n.next_step)
        for n in briefing.notes
        if n.audience != audience.id and n.audience in names
    )
    subject = f"{audience.subject_prefix}{briefing.verdict}".strip()
    return EmailContext(
        lang=audience.locale,
        labels=labels,
        subject=subject,
        preheader=preheader_of(briefing.judgement),
        audience_id=audience.id,
        audience_name=audience.name,
        verdict=briefing.verdict,
        judgement=briefing.judgement,
        date=briefing.date.isoformat(),
        source_title=briefing.source.title,
        original_url=briefing.source.url,
        own_note=NoteView(audience.id, audience.name, own.meaning, own.next_step),
        other_notes=others if audience.show_other_notes else (),
        core_points=briefing.core_points,
        core_points_cut=False,
        prompts=briefing.prompts,
        archive_url=archive_url,
        archive_index_url=archive_index_url,
        unsubscribe_url=UNSUBSCRIBE_PLACEHOLDER,
        why_received=labels["why_received"].format(audience=audience.name),
        is_test=is_test,
    )


def compile_mjml(source: str) -> str:
    try:
        html = mjml2html(source, disable_comments=True, fonts={})
    except Exception as exc:  # mjml-python raises a bare Exception subclass from Rust
        raise RenderError(f"MJML could not be compiled: {exc}", hint="check the email template's MJML") from exc
    inliner = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)
    return inliner.inline(html)


def style_bytes(html: str) -> int:
    return sum(len(m.encode("utf-8")) for m in STYLE_BLOCK.findall(html))


def render_email(ctx: EmailContext, templates_dir: Path) -> tuple[str, str, str]:
    mjml_source = render_template(templates_dir, "email/briefing.mjml.j2", ctx=ctx)
    html = compile_mjml(mjml_source)
    text = render_template(templates_dir, "text/briefing.txt.j2", ctx=ctx)
    markdown = render_template(templates_dir, "markdown/briefing.md.j2", ctx=ctx)
    return html, _tidy_text(text), _tidy_markdown(markdown)


def _tidy_text(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _tidy_markdown(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def fit_budget(ctx: EmailContext, templates_dir: Path, budget: int) -> tuple[EmailContext, str, str, str, list[str]]:
    """Render; when the HTML is over budget, drop core points from the end (with a link) and shorten prompts.

    The audience's own note is never dropped: if even the shortest form is over budget, it is an error.
    """
    warnings: list[str] = []
    html, text, markdown = render_email(ctx, templates_dir)
    while len(html.encode("utf-8")) > budget:
        if len(ctx.core_points) > 1:
            ctx = replace(ctx, core_points=ctx.core_points[: max(1, len(ctx.core_points) // 2)], core_points_cut=True)
        elif ctx.other_notes:
            ctx = replace(ctx, other_notes=())
        elif len(ctx.prompts) > 1:
            ctx = replace(ctx, prompts=ctx.prompts[:1])
        else:
            raise RenderError(
                f"the email is {len(html.encode('utf-8'))} bytes even at its shortest (budget {budget})",
                slug=ctx.subject,
                audience=ctx.audience_id,
                hint="shorten the audience note or judgement",
            )
        html, text, markdown = render_email(ctx, templates_dir)
        warnings.append(f"shortened to fit {budget} bytes")
    if style_bytes(html) > 16_000:
        warnings.append(f"style blocks are {style_bytes(html)} bytes (over 16 KB)")
    return ctx, html, text, markdown, warnings


def render_briefing(
    briefing: Briefing,
    content: Content,
    *,
    templates_dir: Path,
    archive_url: str,
    archive_index_url: str,
    budget: int = 100_000,
    is_test: bool = False,
    audiences: list[str] | None = None,
) -> RenderedBriefing:
    """Render every audience's email, text part and Markdown for one briefing."""
    result = RenderedBriefing(briefing=briefing)
    content_hash = briefing.content_hash()
    for audience in content.audiences:
        if audiences and audience.id not in audiences:
            continue
        ctx = build_context(
            briefing,
            audience,
            content,
            templates_dir=templates_dir,
            archive_url=archive_url,
            archive_index_url=archive_index_url,
            is_test=is_test,
        )
        ctx, html, text, markdown, warnings = fit_budget(ctx, templates_dir, budget)
        for warning in warnings:
            logger.warning("%s/%s: %s", briefing.slug, audience.id, warning)
        result.emails[audience.id] = RenderedEmail(
            slug=briefing.slug,
            audience=audience.id,
            subject=ctx.subject,
            preheader=ctx.preheader,
            html=html,
            text=text,
            markdown=markdown,
            content_hash=content_hash,
            warnings=tuple(dict.fromkeys(warnings)),
        )
    return result

"""Render stage: per audience an HTML email (jinja2 → MJML → mjml-python → css-inline), a plain-text part and a
Markdown briefing; per briefing the full archive page with its five views. Entry point: `render_briefing`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import css_inline
import jinja2
import yaml
from mjml import mjml2html

from flows.core import resources
from flows.core.errors import RenderError
from flows.core.models import DEFAULT_SUBJECT, Audience, AudienceNote, Briefing, Content
from flows.core.safe_urls import web_url
from flows.render.text_wrap import wrap

logger = logging.getLogger(__name__)

UNSUBSCRIBE_PLACEHOLDER = "https://unsubscribe.invalid/__BRIEFING_UNSUBSCRIBE__"
# Each Markdown/HTML special character is escaped in one C-level pass (str.translate): with a backslash where every
# generator honours one (CommonMark, Python-Markdown of MkDocs with its tables extension, goldmark, kramdown), as a
# character reference where Python-Markdown would show the backslash (`<`, `&`, `~`, `$`, `^`). A reference is
# always text, never markup, in all of them.
MD_SPECIALS = str.maketrans(
    {
        **{ch: "\\" + ch for ch in "\\`*_{}[]>()#+!|"},
        "<": "&lt;",
        "&": "&amp;",
        "~": "&#126;",
        "$": "&#36;",
        "^": "&#94;",
    }
)
CHAT_SPECIALS = str.maketrans({ch: "\\" + ch for ch in "\\`*_[]<~"})
CHAT_LEADING = frozenset("#>-+=")
CHAT_REFERENCE = re.compile(r"&(?=[#A-Za-z])")  # "&amp;" would be read as a character reference: "\&amp;" is not
# A line that starts with these is a list item, setext underline or kramdown definition.
MD_LEADING = {"-": "\\-", "=": "&#61;", ":": "&#58;"}
LEADING_NUMBER = re.compile(r"^(\d+)([.)])")
# In the plain-text part, a scheme no mail client may turn into a live link. It is written with an invisible
# zero-width space before its colon (`javascript\u200b:`), which no linkifier reads as a scheme; a scheme inside a
# URL (after "/", "=", "?", …) is left alone, since the linkifier takes the whole http(s) URL there.
SCRIPT_SCHEME = re.compile(r"(?<![\w+.\-/?=&#%~@])(javascript|vbscript|livescript|data)(?=:)", re.IGNORECASE)
ZERO_WIDTH_SPACE = "\u200b"
STYLE_BLOCK = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)
# Tables and images to check one by one: all but mjml-python's own layout tables, which start like this.
MJML_TABLE_START = ' border="0" cellpadding="0" cellspacing="0" role="presentation"'
_LAYOUT_START = rf"<(?:table(?!{re.escape(MJML_TABLE_START)})|img)(?=[\s/>])"
# Cheap first look: no such tag name anywhere (not even inside an attribute value or a comment) = nothing to do.
LAYOUT_CANDIDATE = re.compile(_LAYOUT_START, re.IGNORECASE)
# The tokenizer the post-MJML steps edit through: every token from its "<" to its ">", so a "<img" inside an
# attribute value (html5ever writes "<" there unescaped: a subject in mjml-python's aria-label) or a comment is
# never taken for a tag. Groups: `layout` a table or image start tag, `start` any other start tag, `raw` the start
# tag of an element whose content is text (style, script, …; taken whole up to its end tag). Outlook's conditional
# comments are split into their markers, because Outlook parses the markup inside them. Possessive quantifiers:
# no backtracking, whatever the input.
_ATTRIBUTES = r"""(?:[^>"']++|"[^"]*+"|'[^']*+')*+"""
_RAW_TEXT = r"style|script|title|textarea|xmp|iframe|noembed|noframes|noscript"
MARKUP_TOKEN = re.compile(
    r"<!--\[if[^\]]*+\]>|<!\[endif\]-->|<!--(?:-?>|.*?-->)"
    rf"|(?P<raw><(?P<raw_name>{_RAW_TEXT})(?=[\s/>]){_ATTRIBUTES}>).*?</(?P=raw_name)\s*>"
    rf"|(?P<layout>{_LAYOUT_START}{_ATTRIBUTES}>)"
    rf"|(?P<start><[A-Za-z]{_ATTRIBUTES}>)"
    rf"|</?[A-Za-z!?]{_ATTRIBUTES}>",
    re.DOTALL | re.IGNORECASE,
)
ATTRIBUTE_NAME = re.compile(r"""[\s/]([^\s"'>/=]+)(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]*))?""")
QUOTED_VALUE = re.compile(r""""[^"]*"|'[^']*'""")
PREHEADER_START = '<div class="preheader" style="display:none;'
PREHEADER_END = "</div>"
# MJML's Outlook-only markup (ghost tables) sits in these conditional comments.
MSO_OPEN = "<!--[if mso | IE]>"
MSO_CLOSE = "<![endif]-->"
MSO_PLACEHOLDER = "<!--briefing:mso-->"
# Invisible spacer after the preheader so mail clients do not pull body text into the inbox preview.
PREHEADER_PADDING = "&#847;&zwnj;&nbsp;" * 40
STYLE_BUDGET = 16_000
# The placeholder is replaced per recipient by a signed URL at send time; reserve room for the longer value.
UNSUBSCRIBE_RESERVE = 400
TEXT_TEMPLATE = "text/briefing.txt.j2"
HTML_TEMPLATE = "email/briefing.mjml.j2"
MARKDOWN_TEMPLATE = "markdown/briefing.md.j2"
INLINE_CSS = "partials/email_inline.css"
DEFAULT_TEMPLATES = resources.templates_dir()
CLIP_CHARS = 400


@dataclass(frozen=True)
class NoteView:
    """One audience's note, in lead form (`lead` + free `paragraphs`) or structured form (`meaning` + `next_step`).

    `gap` goes between the lead and the first paragraph: the locale's lead_gap label, or a plain space when the lead
    already ends in punctuation. `hook` is the note heading's hook ("" when none)."""

    audience_id: str
    audience_name: str
    meaning: str = ""
    next_step: str = ""
    lead: str = ""
    paragraphs: tuple[str, ...] = ()
    hook: str = ""
    gap: str = " "

    @property
    def lead_form(self) -> bool:
        return bool(self.lead or self.paragraphs)

    @property
    def first(self) -> str:
        """The paragraph the lead opens (lead form)."""
        return self.paragraphs[0] if self.paragraphs else ""

    @property
    def rest(self) -> tuple[str, ...]:
        """The paragraphs after the first (lead form)."""
        return self.paragraphs[1:]


@dataclass(frozen=True)
class PointView:
    """One core point; `clipped` when its explanation was shortened to fit the email (the archive has it all)."""

    lead: str
    explanation: str
    clipped: bool = False


@dataclass(frozen=True)
class EmailContext:
    """Everything the email, text and Markdown briefing templates may use, as `ctx.<field>`.

    A test (tests/test_render_context.py) parses every template and fails when one uses a `ctx.<name>` that
    is not a field here. Fields:

    - lang: the audience's locale, used as `<html lang>`; labels: that locale's label table (templates/labels.yaml)
    - brand: the brand line (setting `brand`, else the locale's `brand` label)
    - subject: the audience's subject template filled in (Audience.subject); preheader: hidden preview text from
      the audience's own note (its first paragraph), so each audience's inbox preview is its own
    - audience_id / audience_name: who the email is for
    - verdict / judgement / date (ISO): the briefing's headline
    - source_title / source_site / original_url: the source article (original_url: http(s) only, else empty and
      the templates show no link)
    - own_note: this audience's note (NoteView), rendered first and marked "for you"; never shortened
    - other_notes: the other audiences' notes (only when Audience.show_other_notes)
    - core_points: PointView tuple, possibly fewer or clipped to fit the size budget
    - prompts: the numbered discussion prompts, possibly fewer
    - shortened: something was cut to fit the budget (a notice and "continue reading" links appear)
    - core_points_cut / other_notes_cut / prompts_cut: which sections lost entries to the budget
    - archive_url: the online briefing page; archive_index_url: the archive list
    - unsubscribe_url: UNSUBSCRIBE_PLACEHOLDER, replaced per recipient at send time (flows/deliver/messages.py)
    - why_received: footer sentence; is_test: a test send (banner)
    """

    lang: str
    labels: dict[str, str]
    brand: str
    subject: str
    preheader: str
    audience_id: str
    audience_name: str
    verdict: str
    judgement: str
    date: str
    source_title: str
    source_site: str
    original_url: str
    own_note: NoteView
    other_notes: tuple[NoteView, ...]
    core_points: tuple[PointView, ...]
    prompts: tuple[str, ...]
    archive_url: str
    archive_index_url: str
    unsubscribe_url: str
    why_received: str
    is_test: bool = False
    shortened: bool = False
    core_points_cut: bool = False
    other_notes_cut: bool = False
    prompts_cut: bool = False


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
    shortened: bool = False

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))

    @property
    def style_bytes(self) -> int:
        return style_bytes(self.html)


@dataclass
class RenderedBriefing:
    briefing: Briefing
    emails: dict[str, RenderedEmail] = field(default_factory=dict)


def md_escape(value: Any) -> str:
    """Escape text for Markdown inline use: no emphasis, link, HTML, entity or block marker can come out of it."""
    text = " ".join(str(value).split()).translate(MD_SPECIALS)
    if text[:1] in MD_LEADING:
        return MD_LEADING[text[0]] + text[1:]
    return LEADING_NUMBER.sub(r"\1\\\2", text) if text[:1].isdecimal() else text


def chat_escape(value: Any) -> str:
    """Escape text for Markdown pasted into chat tools: only what CommonMark (and Slack, Feishu, Telegram, …) would
    read as markup is escaped (CHAT_SPECIALS, and block markers at the start), so `( ) ! | #` inside a line stay
    as typed and no stray backslash shows where Markdown is not parsed."""
    text = CHAT_REFERENCE.sub(r"\\&", " ".join(str(value).split()).translate(CHAT_SPECIALS))
    if text[:1] in CHAT_LEADING:
        return "\\" + text
    return LEADING_NUMBER.sub(r"\1\\\2", text) if text[:1].isdecimal() else text


def md_url(value: Any) -> str:
    return quote(str(value).strip(), safe="/:?#[]@!$&'*+,;=%~-._")


def template_environment(
    templates_dir: Path, *, autoescape: bool, filters: dict[str, Callable[..., Any]]
) -> jinja2.Environment:
    """A jinja2 environment with the project's rules: StrictUndefined, tidy whitespace, the given filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(filters)
    return env


@cache
def environment(templates_dir: Path, autoescape: bool) -> jinja2.Environment:
    """Two environments: HTML/MJML templates escape everything; text and Markdown templates use filters."""
    return template_environment(
        templates_dir,
        autoescape=autoescape,
        filters={"wrap": wrap, "md": md_escape, "chat": chat_escape, "mdurl": md_url, "web_url": web_url},
    )


def render_template(templates_dir: Path, name: str, **context: Any) -> str:
    env = environment(templates_dir, not name.endswith((".txt.j2", ".md.j2")))
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {name}: {exc}", hint="fix the template under templates/") from exc


@cache
def load_labels(templates_dir: Path) -> dict[str, dict[str, str]]:
    """The label tables, checked: `en` exists and every locale carries exactly the keys `en` has."""
    path = templates_dir / "labels.yaml"
    try:
        table = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RenderError(f"{path}: cannot read the label table: {exc}", hint="fix the YAML") from exc
    if not isinstance(table, dict) or not isinstance(table.get("en"), dict):
        raise RenderError(f"{path}: needs a mapping per locale, including `en`", hint="see docs/rendering.md")
    keys = set(table["en"])
    for locale, labels in table.items():
        found = set(labels) if isinstance(labels, dict) else set()
        if found != keys:
            missing, extra = sorted(keys - found), sorted(found - keys)
            raise RenderError(
                f"{path}: locale {locale} has missing labels {missing} and unknown labels {extra}",
                hint="every locale must carry the same keys as `en`",
            )
    return table


def labels_for(templates_dir: Path, locale: str) -> dict[str, str]:
    table = load_labels(templates_dir)
    if locale in table:
        return table[locale]
    base = locale.split("-")[0]
    return next((v for k, v in table.items() if k.split("-")[0] == base), table["en"])


CLAUSE_ENDS = "，。；：、,;:"
LEAD_ENDS = "：:。.！!？?"


def preheader_of(text: str, limit: int = 110) -> str:
    """Inbox preview text: whitespace collapsed, clipped to `limit` characters at the last clause boundary past half
    the limit (else at the limit), ending in an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    cut = max(head.rfind(mark) for mark in CLAUSE_ENDS)
    if cut > limit // 2:
        return head[:cut] + "…"
    return clip(text, limit)[0]


def subject_for(audience: Audience, briefing: Briefing, hook: str) -> str:
    """The audience's subject template filled in (one line). A template that uses {hook} falls back to the default
    subject for a note without a hook, so no subject shows an empty slot."""
    template = audience.subject if hook or "{hook}" not in audience.subject else DEFAULT_SUBJECT
    values = {"prefix": audience.subject_prefix, "name": audience.name, "verdict": briefing.verdict, "hook": hook}
    try:
        text = template.format(**values)
    except (KeyError, IndexError, ValueError):  # load_audiences reports a bad template; never crash a send on it
        text = DEFAULT_SUBJECT.format(**values)
    return " ".join(text.split())


def note_view(note: AudienceNote, name: str, labels: dict[str, str]) -> NoteView:
    gap = " " if note.lead.endswith(tuple(LEAD_ENDS)) else labels["lead_gap"]
    return NoteView(
        note.audience, name, note.meaning, note.next_step, note.lead, note.paragraphs, note.hook, gap
    )


def clip(text: str, limit: int) -> tuple[str, bool]:
    """Shorten `text` to about `limit` characters, at a word boundary for Latin text, ending with an ellipsis."""
    if len(text) <= limit:
        return text, False
    head = text[: limit - 1]
    if head[-1:].isascii() and head[-1:].isalnum():
        space = head.rfind(" ", limit // 2)
        head = head[:space] if space > 0 else head
    return head.rstrip(" ,.;:，。、；：") + "…", True


def build_context(
    briefing: Briefing,
    audience: Audience,
    content: Content,
    *,
    templates_dir: Path,
    archive_url: str,
    archive_index_url: str,
    is_test: bool = False,
    brand: str = "",
) -> EmailContext:
    """The full (unshortened) context of one audience's email."""
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
        note_view(n, names[n.audience], labels)
        for n in briefing.notes
        if n.audience != audience.id and n.audience in names
    )
    return EmailContext(
        lang=audience.locale,
        labels=labels,
        brand=brand or labels["brand"],
        subject=subject_for(audience, briefing, own.hook),
        preheader=preheader_of(own.first_paragraph or briefing.judgement),
        audience_id=audience.id,
        audience_name=audience.name,
        verdict=briefing.verdict,
        judgement=briefing.judgement,
        date=briefing.date.isoformat(),
        source_title=briefing.source.title,
        source_site=briefing.source.site,
        original_url=web_url(briefing.source.url, fallback=""),
        own_note=note_view(own, audience.name, labels),
        other_notes=others if audience.show_other_notes else (),
        core_points=tuple(PointView(p.lead, p.explanation) for p in briefing.core_points),
        prompts=briefing.prompts,
        archive_url=archive_url,
        archive_index_url=archive_index_url,
        unsubscribe_url=UNSUBSCRIBE_PLACEHOLDER,
        why_received=labels["why_received"].format(audience=audience.name),
        is_test=is_test,
    )


def compile_mjml(source: str, templates_dir: Path | None = None) -> str:
    """MJML → HTML (mjml-python), then inline templates/partials/email_inline.css with css-inline.

    mjml-python does not inline `<mj-style inline="inline">`; the rules to inline live in a CSS file instead and
    only they are inlined (MJML's own reset styles stay in <head>, as the reference compiler leaves them).
    """
    try:
        html = mjml2html(source, disable_comments=True, fonts={})
    except Exception as exc:  # mjml-python raises a bare Exception subclass from Rust
        raise RenderError(f"MJML could not be compiled: {exc}", hint="check the email template's MJML") from exc
    html = postprocess_html(html, templates_dir or DEFAULT_TEMPLATES)
    # Curated "<" and ">" reach the MJML only as jinja2's &lt; and &gt;: without them no attribute can hold one.
    return escape_attribute_brackets(html) if "&lt;" in source or "&gt;" in source else html


def postprocess_html(html: str, templates_dir: Path) -> str:
    """Everything after mjml-python: css-inline, then the guarantees of `finish_html`.

    css-inline parses and re-serialises the whole document (html5ever): that is most of its cost. With
    `inline_style_tags=False` it has nothing to do in `<head>` (MJML's reset, layout and dark-mode styles, meta
    tags), and a comment is opaque text to it, yet the head and the Outlook ghost tables inside
    `<!--[if mso | IE]>…<![endif]-->` were a quarter of its work. So it gets the `<html>` start tag, an empty head
    and the body with each such comment folded to a placeholder; the comments go back in order afterwards
    (adjacent ones merged, as the reference MJML compiler merges them) and the head stays as mjml-python wrote
    it. The role/alt check reads css-inline's output and the untouched head and comments apart. Anything
    unexpected (no body, an unterminated comment, a placeholder already present or moved) falls back to the
    whole document.
    """
    inliner = css_inliner(templates_dir)
    head_at = html.find("<head")
    body_at = html.find("<body", head_at + 1)
    folded = _fold_conditionals(html[body_at:]) if head_at >= 0 and body_at >= 0 else None
    if folded is None:
        return finish_html(inliner.inline(html))
    rest, comments = folded
    body = inliner.inline(html[:head_at] + "<head></head>" + MSO_PLACEHOLDER.join(rest))
    parts = body.split(MSO_PLACEHOLDER)
    if len(parts) != len(rest):  # a placeholder already in the body, or one html5ever moved
        logger.debug("Outlook conditional comments did not fold back; inlining the whole document")
        return finish_html(inliner.inline(html))
    head = html[:body_at]
    first = parts[0][parts[0].index("<body") :]
    preheader_first = PREHEADER_START in first  # where MJML puts it; else it is padded in the whole result
    parts[0] = _pad_preheader(first)
    pieces = [head] * (2 * len(parts))
    pieces[1::2] = parts
    pieces[2::2] = [f"{MSO_OPEN}{comment}{MSO_CLOSE}" for comment in comments]
    complete = _has_roles_and_alts(body) and _has_roles_and_alts("".join((head, *comments)))
    result = "".join(pieces) if complete else _add_roles_and_alts("".join(pieces))
    return result if preheader_first else _pad_preheader(result)


@cache
def css_inliner(templates_dir: Path) -> css_inline.CSSInliner:
    css = (templates_dir / INLINE_CSS).read_text(encoding="utf-8")
    return css_inline.CSSInliner(
        inline_style_tags=False, keep_style_tags=True, load_remote_stylesheets=False, extra_css=css
    )


def _fold_conditionals(body: str) -> tuple[list[str], list[str]] | None:
    """`body` split around its Outlook conditional comments (adjacent ones merged): the text between them and
    their contents; None if one is not closed."""
    chunks = body.replace(MSO_CLOSE + MSO_OPEN, "").split(MSO_OPEN)
    split = [chunk.partition(MSO_CLOSE) for chunk in chunks[1:]]
    if not all(closed for _, closed, _ in split):
        return None
    return [chunks[0], *(tail for _, _, tail in split)], [comment for comment, _, _ in split]


def finish_html(html: str) -> str:
    """Guarantees mjml-python does not give: every table is a layout table for screen readers, every image has
    alt text (empty = decorative), and the preheader is padded so body text does not leak into the preview."""
    if not _has_roles_and_alts(html):
        html = _add_roles_and_alts(html)
    return _pad_preheader(html)


def _missing_attribute(tag: str) -> tuple[str, int]:
    """The attribute a table ("role") or image ("alt") start tag still needs ("" when it has it) and where its
    tag name ends."""
    wanted, name_end = ("alt", 4) if tag[1:4].lower() == "img" else ("role", 6)
    names = {name.lower() for name in ATTRIBUTE_NAME.findall(tag, name_end)}
    return ("" if wanted in names else wanted), name_end


def _has_roles_and_alts(html: str) -> bool:
    if LAYOUT_CANDIDATE.search(html) is None:
        return True
    tags = (match["layout"] for match in MARKUP_TOKEN.finditer(html))
    return not any(_missing_attribute(tag)[0] for tag in tags if tag)


def _add_roles_and_alts(html: str) -> str:
    """Add role="presentation" to tables and alt="" to images that lack them, right after the tag name of real
    start tags only (MARKUP_TOKEN): an attribute value or a comment is never edited."""

    def fix(match: re.Match[str]) -> str:
        tag = match["layout"]
        if not tag:
            return match.group(0)
        missing, name_end = _missing_attribute(tag)
        if not missing:
            return tag
        value = "" if missing == "alt" else "presentation"
        return f'{tag[:name_end]} {missing}="{value}"{tag[name_end:]}'

    return MARKUP_TOKEN.sub(fix, html)


def escape_attribute_brackets(html: str) -> str:
    """Write "<" and ">" inside attribute values as character references.

    html5ever (css-inline) serialises them raw, which is valid HTML: mjml-python's `aria-label` then carries a
    subject such as `<img src=x onerror=…>` as plain text. A browser never reads it as a tag, but a mail client or
    tracking proxy that rewrites HTML with patterns instead of a parser could, so it never leaves looking like
    markup (browsers' own serialisers now escape them in attributes too)."""

    def escape(match: re.Match[str]) -> str:
        tag = match["start"] or match["layout"] or match["raw"]
        if not tag or ("<" not in tag[1:-1] and ">" not in tag[1:-1]):
            return match.group(0)
        fixed = QUOTED_VALUE.sub(lambda value: value.group(0).replace("<", "&lt;").replace(">", "&gt;"), tag)
        return fixed + match.group(0)[len(tag) :]

    return MARKUP_TOKEN.sub(escape, html)


def _pad_preheader(html: str) -> str:
    start = html.find(PREHEADER_START)
    if start < 0:
        return html
    end = html.find(PREHEADER_END, start)
    return "".join((html[:end], PREHEADER_PADDING, html[end:]))


def budget_bytes(html: str) -> int:
    """Size counted against the budget: the HTML plus room for each per-recipient unsubscribe URL."""
    return len(html.encode("utf-8")) + html.count(UNSUBSCRIBE_PLACEHOLDER) * UNSUBSCRIBE_RESERVE


def style_bytes(html: str) -> int:
    return sum(len(m.encode("utf-8")) for m in STYLE_BLOCK.findall(html))


def render_html(ctx: EmailContext, templates_dir: Path) -> str:
    return compile_mjml(render_mjml(ctx, templates_dir), templates_dir)


def render_mjml(ctx: EmailContext, templates_dir: Path) -> str:
    return render_template(templates_dir, HTML_TEMPLATE, ctx=ctx)


def render_text(ctx: EmailContext, templates_dir: Path) -> str:
    return defang_schemes(_tidy(render_template(templates_dir, TEXT_TEMPLATE, ctx=ctx)))


def defang_schemes(text: str) -> str:
    """Plain text in which no `javascript:`, `vbscript:` or `data:` can become a link (see SCRIPT_SCHEME)."""
    lowered = text.lower()  # two substring searches in C instead of the pattern at every position (usual case)
    if "script:" not in lowered and "data:" not in lowered:
        return text
    return SCRIPT_SCHEME.sub(rf"\1{ZERO_WIDTH_SPACE}", text)


def render_markdown(ctx: EmailContext, templates_dir: Path) -> str:
    return _tidy(render_template(templates_dir, MARKDOWN_TEMPLATE, ctx=ctx))


def _tidy(text: str) -> str:
    # "-- " (with its space) is the signature delimiter mail readers recognise; other trailing spaces go.
    lines = [line if line == "-- " else line.rstrip() for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def render_email(ctx: EmailContext, templates_dir: Path) -> tuple[str, str, str]:
    """HTML, plain text and Markdown of one context, unshortened."""
    return render_html(ctx, templates_dir), render_text(ctx, templates_dir), render_markdown(ctx, templates_dir)


def _clip_sections(ctx: EmailContext) -> EmailContext:
    points = []
    for point in ctx.core_points:
        explanation, clipped = clip(point.explanation, CLIP_CHARS)
        points.append(PointView(clip(point.lead, CLIP_CHARS // 4)[0], explanation, clipped or point.clipped))
    others = tuple(_clip_note(n) for n in ctx.other_notes)
    prompts = tuple(clip(p, CLIP_CHARS)[0] for p in ctx.prompts)
    cut = any(p.clipped for p in points) or others != ctx.other_notes or prompts != ctx.prompts
    return replace(ctx, core_points=tuple(points), other_notes=others, prompts=prompts, core_points_cut=cut)


def _clip_note(note: NoteView) -> NoteView:
    """Another audience's note within CLIP_CHARS: whole paragraphs while they fit, the last one clipped."""
    if not note.lead_form:
        return replace(note, meaning=clip(note.meaning, CLIP_CHARS)[0], next_step=clip(note.next_step, CLIP_CHARS)[0])
    kept: list[str] = []
    room = CLIP_CHARS
    for paragraph in note.paragraphs:
        if room <= 0:
            break
        text, clipped = clip(paragraph, max(room, 40))
        kept.append(text)
        room -= len(text)
        if clipped:
            break
    return replace(note, paragraphs=tuple(kept)) if tuple(kept) != note.paragraphs else note


def shorten_steps(ctx: EmailContext) -> Iterator[EmailContext]:
    """Ever shorter versions of `ctx`; the audience's own note is never touched."""
    ctx = replace(_clip_sections(ctx), shortened=True)
    yield ctx
    while len(ctx.core_points) > 1:
        ctx = replace(ctx, core_points=ctx.core_points[: len(ctx.core_points) // 2], core_points_cut=True)
        yield ctx
    if ctx.other_notes:
        ctx = replace(ctx, other_notes=(), other_notes_cut=True)
        yield ctx
    if len(ctx.prompts) > 1:
        ctx = replace(ctx, prompts=ctx.prompts[:1], prompts_cut=True)
        yield ctx
    judgement, clipped = clip(ctx.judgement, CLIP_CHARS)
    if clipped:
        yield replace(ctx, judgement=judgement)


def fit_budget(ctx: EmailContext, templates_dir: Path, budget: int) -> tuple[EmailContext, str, list[str]]:
    """Render the HTML; while it (plus the unsubscribe reserve) is over `budget` bytes, shorten: clip long
    entries, then drop core points from the end, other audiences' notes, extra prompts. Each cut section links
    to the archive page.

    The audience's own note is never shortened: if even the shortest form is over budget, that is an error.
    """
    warnings: list[str] = []
    html = render_html(ctx, templates_dir)
    size = budget_bytes(html)
    if size > budget:
        for shorter in shorten_steps(ctx):
            ctx, html = shorter, render_html(shorter, templates_dir)
            if budget_bytes(html) <= budget:
                break
        final = budget_bytes(html)
        if final > budget:
            raise RenderError(
                f"the email is {final} bytes even at its shortest (budget {budget})",
                audience=ctx.audience_id,
                hint="shorten the audience's own note or raise BRIEFING_EMAIL_SIZE_BUDGET",
            )
        warnings.append(f"shortened from {size} to {final} bytes to fit the {budget}-byte budget")
    styles = style_bytes(html)
    if styles > STYLE_BUDGET:
        warnings.append(f"style blocks are {styles} bytes (over {STYLE_BUDGET})")
    return ctx, html, warnings


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
    brand: str = "",
) -> RenderedBriefing:
    """Render every audience's email (HTML within `budget` bytes), text part and Markdown for one briefing.

    The text part follows the HTML's (possibly shortened) content; the Markdown briefing is never shortened.
    """
    result = RenderedBriefing(briefing=briefing)
    content_hash = briefing.content_hash()
    for audience in content.audiences:
        if audiences and audience.id not in audiences:
            continue
        full = build_context(
            briefing,
            audience,
            content,
            templates_dir=templates_dir,
            archive_url=archive_url,
            archive_index_url=archive_index_url,
            is_test=is_test,
            brand=brand,
        )
        try:
            ctx, html, warnings = fit_budget(full, templates_dir, budget)
        except RenderError as exc:
            raise RenderError(exc.message, slug=briefing.slug, audience=audience.id, hint=exc.hint) from exc
        for warning in warnings:
            logger.warning("%s/%s: %s", briefing.slug, audience.id, warning)
        result.emails[audience.id] = RenderedEmail(
            slug=briefing.slug,
            audience=audience.id,
            subject=ctx.subject,
            preheader=ctx.preheader,
            html=html,
            text=render_text(ctx, templates_dir),
            markdown=render_markdown(full, templates_dir),
            content_hash=content_hash,
            warnings=tuple(warnings),
            shortened=ctx.shortened,
        )
    return result

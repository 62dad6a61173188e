"""Escaping per context, one rule at a time: the email's attributes and its post-MJML step, links from content and
feeds, the Markdown escaper as every generator reads it, the text part's schemes, the archive's front matter, and
a MkDocs site built from it (the probes of issue 18: "Script in the email" and "Script in the MkDocs site")."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import markdown as python_markdown
import pytest
import yaml

from flows.core.content import load_content
from flows.core.models import Briefing
from flows.core.safe_urls import web_url
from flows.core.settings import Settings
from flows.core.store import Store
from flows.publish.archive import front_matter_text, mkdocs_config
from flows.render.email import _add_roles_and_alts, compile_mjml, defang_schemes, escape_attribute_brackets, md_escape
from tests.publish_support import publish, sample_content, split_front_matter
from tests.render_support import render
from tests.render_support import sample_content as render_sample
from tests.xss_support import MKDOCS_THEME, PAYLOADS, URL_PAYLOADS, bare, findings, markdown_to_html, visible_text

IMG_PAYLOAD = "<img src=x onerror=alert(document.domain)>"
REPO = Path(__file__).resolve().parent.parent


def _with(briefing: Briefing, **update: object) -> Briefing:
    return briefing.model_copy(update=update)


# --- the email ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [IMG_PAYLOAD, '"><svg onload=alert(1)>', "</title><script>alert(1)</script>"])
def test_a_verdict_with_markup_stays_text_in_the_subject_attribute(payload: str) -> None:
    """Issue 18, "Script in the email": mjml-python copies the subject into the body's aria-label; the post-MJML
    step once inserted alt="" after the "<img" inside that value, closing it and giving the image a live onerror."""
    briefing = _with(render_sample().ready[0], verdict=payload)
    for audience, email in render(briefing).emails.items():
        assert findings(email.html, audience) == []
        assert bare(email.subject) in visible_text(email.html)  # <title>
        escaped = email.subject.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
        assert f'aria-label="{escaped}"' in email.html


def test_roles_and_alts_are_added_to_real_tags_only() -> None:
    html = (
        '<div aria-label="<img src=x><table>" title=\'<img>\'><IMG src=a.png><table class="x"><img alt="" src=b>'
        "<!-- <img c> --><style>a<img{}</style><!--[if mso | IE]><table><tr><td><img src=d><![endif]--></div>"
    )
    assert _add_roles_and_alts(html) == (
        '<div aria-label="<img src=x><table>" title=\'<img>\'><IMG alt="" src=a.png><table role="presentation" '
        'class="x"><img alt="" src=b><!-- <img c> --><style>a<img{}</style><!--[if mso | IE]><table '
        'role="presentation"><tr><td><img alt="" src=d><![endif]--></div>'
    )


def test_brackets_inside_attribute_values_are_written_as_references() -> None:
    html = '<div aria-label="a <img src=x> b" data-x=\'>\'><style>p>a{}</style><!-- <a title="<x>"> --><p>x</p></div>'
    assert escape_attribute_brackets(html) == (
        '<div aria-label="a &lt;img src=x&gt; b" data-x=\'&gt;\'><style>p>a{}</style><!-- <a title="<x>"> -->'
        "<p>x</p></div>"
    )


def test_mjml_tags_in_curated_text_stay_text() -> None:
    source = (
        "<mjml><mj-head><mj-title>{t}</mj-title></mj-head><mj-body><mj-section><mj-column><mj-text>{t}</mj-text>"
        "</mj-column></mj-section></mj-body></mjml>"
    )
    payload = "</mj-text><mj-raw><script>alert(1)</script></mj-raw><mj-button href=javascript:alert(2)>x</mj-button>"
    escaped = payload.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    html = compile_mjml(source.format(t=escaped))
    assert findings(html, "mjml") == [] and bare(payload) in visible_text(html)


# --- links from content and feeds --------------------------------------------------------------------------


@pytest.mark.parametrize("url", URL_PAYLOADS)
def test_only_web_addresses_become_links(url: str) -> None:
    safe = web_url(url, "")
    assert safe == "" or safe.startswith(("https://", "http://"))
    assert (safe != "") == url.startswith("https://ok.example/")
    assert web_url("http://[oops", "#") == "#" and web_url("//evil.example/x") == "#"


def test_a_script_source_url_makes_no_link_anywhere() -> None:
    briefing = render_sample().ready[0]
    hostile = _with(briefing, source=briefing.source.model_copy(update={"url": " JaVaScRiPt:alert(1)"}))
    for audience, email in render(hostile).emails.items():
        assert findings(email.html, audience) == [] and "JaVaScRiPt" not in email.html
        assert findings(markdown_to_html(email.markdown), audience) == []
        assert "JaVaScRiPt" not in email.text and bare(briefing.source.title) in bare(email.text)
        assert bare(briefing.source.title) in visible_text(email.html)  # the title stays, without a link


def test_check_warns_about_a_source_url_that_cannot_be_a_link(project: Path) -> None:
    path = project / "content" / "briefings" / "metr-task-horizons.md"
    text = path.read_text("utf-8")
    url_line = next(n for n, line in enumerate(text.splitlines(), start=1) if line.strip().startswith("url:"))
    path.write_text(re.sub(r"(?m)^(\s+url:).*$", r"\1 ' jaVascript:alert(1)'", text, count=1), "utf-8")
    loaded = load_content(project / "content")
    warnings = [p for p in loaded.problems if p.field == "source.url"]
    assert len(warnings) == 1 and warnings[0].severity == "warning" and warnings[0].line == url_line
    assert "not an http(s) address" in warnings[0].message and "metr-task-horizons.md" in warnings[0].path
    assert not [p for p in load_content(REPO / "content").problems if p.field == "source.url"]


def test_the_text_part_carries_no_script_link() -> None:
    briefing = _with(render_sample().ready[0], verdict="see javascript:alert(1) and DATA:text/html,x or <vbscript:y>")
    text = render(briefing, audiences=["atou"]).emails["atou"].text
    assert "javascript\u200b:alert(1)" in text and "DATA\u200b:text/html" in text and "<vbscript\u200b:y>" in text
    assert defang_schemes("https://x.example/?next=javascript:y") == "https://x.example/?next=javascript:y"


# --- Markdown --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_md_escape_is_text_for_commonmark_and_python_markdown(payload: str) -> None:
    """Escaped text is shown as typed by CommonMark with raw HTML on (markdown-it) and by MkDocs' Python-Markdown
    (which honours fewer backslash escapes: `<`, `&`, `~`, `$` and `^` are character references instead)."""
    line = md_escape(payload)
    for name, html in (
        ("commonmark", markdown_to_html(line)),
        ("python-markdown", python_markdown.markdown(line, extensions=["tables", "toc", "fenced_code"])),
        ("heading", python_markdown.markdown("# " + line, extensions=["tables", "toc"])),
    ):
        assert findings(html, name) == []
        assert visible_text(html) == bare(" ".join(payload.split())), (name, html)


# --- the archive's front matter and a MkDocs site --------------------------------------------------------


@pytest.mark.parametrize("payload", PAYLOADS)
def test_front_matter_text_reads_the_same_escaped_or_not(payload: str) -> None:
    text = front_matter_text(payload)
    assert not set(text) & set("<>\"'") and "&#" not in text and "\n" not in text
    # as MkDocs writes it, unescaped, in the page title, an element and (in some themes) an attribute
    document = f"<title>{text}</title><a title='{text}' class=\"{text}\">{text}</a>"
    assert findings(document, "raw") == [] and bare(text) in visible_text(document)


def test_mkdocs_site_shows_curated_front_matter_as_text(settings: Settings, tmp_path: Path) -> None:
    """Issue 18, "Script in the MkDocs site": MkDocs puts the front matter's title into the page title and the
    navigation without escaping it."""
    content = sample_content(settings)
    first = content.ready[0]
    hostile = _with(
        first,
        verdict="V <script>alert(1)</script> <b onmouseover=alert(2)>x</b> \" onfocus='alert(3)'",
        judgement="J <img src=x onerror=alert(4)> &lt;i&gt;",
    )
    store = Store(settings.store_url)
    try:
        report = publish(settings, store, (hostile, *content.ready[1:]))
    finally:
        store.close()
    page = settings.archive_path / report.pages[first.slug]
    meta, _body = split_front_matter(page.read_text("utf-8"))
    assert meta["title"] == front_matter_text(hostile.verdict)
    assert meta["summary"] == front_matter_text(hostile.judgement)
    assert yaml.safe_load(page.read_text("utf-8").split("---\n")[1])["title"] == meta["title"]
    config = tmp_path / "mkdocs.yml"
    site = tmp_path / "site"
    config.write_text(mkdocs_config(settings, site), encoding="utf-8")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    pages = sorted(site.rglob("*.html"))
    assert [f for html in pages for f in findings(html.read_text("utf-8"), html.name, MKDOCS_THEME)] == []
    built_page = (site / report.pages[first.slug]).with_suffix(".html").read_text("utf-8")
    shown = visible_text(built_page)
    assert bare(hostile.verdict) in shown and bare(front_matter_text(hostile.verdict)) in shown
    assert bare(hostile.judgement) in shown

"""The HTML email: structure (lang, roles, alt, meta), content order, size budget and hostile input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from mjml import mjml2html

from flows.core.errors import RenderError
from flows.core.models import AudienceNote
from flows.render.email import (
    MSO_CLOSE,
    MSO_OPEN,
    PREHEADER_PADDING,
    STYLE_BUDGET,
    UNSUBSCRIBE_PLACEHOLDER,
    build_context,
    compile_mjml,
    css_inliner,
    finish_html,
    labels_for,
    postprocess_html,
    render_mjml,
)
from tests.render_support import (
    HOSTILE,
    TEMPLATES,
    hostile_briefing,
    huge_briefing,
    parse_html,
    render,
    sample_content,
    squash,
    unwrapped,
)

READY = sample_content().ready
AUDIENCES = sample_content().audiences


def _all_emails():
    for briefing in READY:
        for audience_id, email in render(briefing).emails.items():
            yield briefing, sample_content().audience(audience_id), email


@pytest.mark.parametrize(("briefing", "audience", "email"), list(_all_emails()), ids=lambda v: getattr(v, "id", ""))
def test_email_structure_and_order(briefing, audience, email) -> None:
    html = email.html
    parsed = parse_html(html)
    assert re.search(rf'<html[^>]*\blang="{audience.locale}"', html)
    tables = [attrs for tag, attrs in parsed.tags if tag == "table"]
    assert tables and all(attrs.get("role") == "presentation" for attrs in tables)
    assert all("alt" in attrs for tag, attrs in parsed.tags if tag == "img")
    assert '<meta name="color-scheme" content="light dark"' in html
    assert "fonts.googleapis" not in html and "<link" not in html
    assert "'Noto Sans SC'" in html and "PingFang SC" in html
    assert re.search(r"line-height:\s*1\.[6-8]", html)
    assert "max-width:600px" in html
    assert "<!--[if mso | IE]><table" in html  # Outlook's ghost tables around each section
    headings = [tag for tag, _ in parsed.tags if tag in ("h1", "h2")]  # screen readers navigate by these
    assert headings == ["h1", "h2", "h2", *(["h2"] if audience.show_other_notes else []), "h2"]
    assert email.html_bytes <= 100_000 and email.style_bytes <= STYLE_BUDGET
    assert not email.warnings and not email.shortened

    labels = labels_for(TEMPLATES, audience.locale)
    assert email.subject == f"{audience.subject_prefix}{briefing.verdict}"
    note = briefing.note_for(audience.id)
    # the inbox preview is the audience's own: the start of its note (issue 20)
    assert email.preheader and squash(email.preheader).rstrip("…")[:30] in squash(note.first_paragraph)
    hidden = re.search(r'<div class="preheader" style="display:none;[^"]*">(.*?)</div>', html, re.DOTALL)
    assert hidden and "color:" not in html[hidden.start() : hidden.start() + 200]  # HTML_FONT_LOW_CONTRAST
    assert hidden and hidden.group(1).startswith(email.preheader.replace('"', "&quot;")[:20])
    assert hidden.group(1).count("&zwnj;") >= 20  # padding keeps body text out of the inbox preview
    text = parsed.text
    assert text.startswith(squash(email.preheader)[:20])  # the hidden preheader is the first text of the body
    text = text[text.index(squash(briefing.verdict)) :]  # what the reader sees, from the top
    mine = text.index(f"{labels['for_you']} · {audience.name}")
    positions = [
        text.index(squash(briefing.verdict)),
        mine,  # the audience's own note comes before the judgement: it is on the first screen
        text.index(squash(note.meaning)),
        text.index(squash(briefing.judgement)),
        text.index(labels["core_points"]),
        text.index(squash(briefing.core_points[0].lead)),
        text.index(labels["prompts"]),
        text.index(squash(briefing.prompts[0])),
        text.index(labels["read_online"]),
        text.index(labels["unsubscribe"]),
    ]
    assert positions == sorted(positions)
    others = [n for n in briefing.notes if n.audience != audience.id]
    shown = [squash(n.meaning) in text for n in others]
    assert all(shown) if audience.show_other_notes else not any(shown)
    links = [attrs.get("href") for tag, attrs in parsed.tags if tag == "a"]
    assert f"https://briefing.example.org/2026/06/{briefing.slug}.html" in links
    assert briefing.source.url in links and UNSUBSCRIBE_PLACEHOLDER in links
    assert labels["why_received"].format(audience=audience.name) in text


def test_hostile_text_is_escaped_not_interpreted() -> None:
    briefing = hostile_briefing(READY[0])
    briefing = briefing.model_copy(update={"verdict": briefing.verdict + "\r\nBcc: victim@example.org"})
    for audience_id, email in render(briefing).emails.items():
        assert "\n" not in email.subject and "\r" not in email.subject and email.subject.endswith("victim@example.org")
        parsed = parse_html(email.html)
        assert [tag for tag, _ in parsed.tags].count("script") == 0
        assert "&lt;script&gt;" in email.html
        assert squash(HOSTILE) in parsed.text  # every character survives as text: {{ 7 * 7 }} is not 49
        assert "IF{% endif %}" in parsed.text
        assert "http://evil.example" not in [a.get("href") for t, a in parsed.tags if t == "a"]
        assert f"{audience_id} {squash(HOSTILE)}" in parsed.text  # the own note, whole


def test_huge_briefing_is_shortened_within_budget_keeping_the_own_note() -> None:
    briefing = huge_briefing(READY[0])
    rendered = render(briefing, budget=100_000)
    for audience in AUDIENCES:
        email = rendered.emails[audience.id]
        parsed = parse_html(email.html)
        labels = labels_for(TEMPLATES, audience.locale)
        assert email.html_bytes <= 100_000, email.html_bytes
        assert email.shortened and email.warnings
        assert squash(briefing.note_for(audience.id).meaning) in parsed.text
        assert labels["continue_reading"] in parsed.text and labels["shortened"] in parsed.text
        links = [a.get("href") for t, a in parsed.tags if t == "a"]
        assert f"https://briefing.example.org/2026/06/{briefing.slug}.html#briefing" in links
        assert parsed.text.index(labels["for_you"]) < parsed.text.index(labels["core_points"])
        # the text part follows the shortened email; the Markdown briefing keeps everything
        assert email.text.count("要点 ") < len(briefing.core_points)
        assert email.markdown.count("要点 ") == len(briefing.core_points)
        assert unwrapped(briefing.note_for(audience.id).meaning) in unwrapped(email.text)


def test_budget_too_small_for_the_own_note_is_a_clear_error() -> None:
    briefing = huge_briefing(READY[0], points=3, note_chars=40_000)
    with pytest.raises(RenderError) as info:
        render(briefing, budget=30_000, audiences=["atou"])
    assert "atou" in str(info.value) and briefing.slug in str(info.value) and "budget" in str(info.value)


def test_missing_note_names_briefing_and_audience() -> None:
    briefing = READY[0].model_copy(update={"notes": tuple(n for n in READY[0].notes if n.audience != "neta")})
    with pytest.raises(RenderError, match=f"{briefing.slug}/neta"):
        render(briefing)


def test_other_notes_follow_the_audience_setting() -> None:
    content = sample_content()
    flipped = content.model_copy(
        update={
            "audiences": tuple(a.model_copy(update={"show_other_notes": a.id == "atou"}) for a in content.audiences)
        }
    )
    rendered = render(READY[0], flipped)
    neta_note = squash(READY[0].note_for("neta").meaning)
    assert neta_note in parse_html(rendered.emails["atou"].html).text
    assert squash(READY[0].note_for("atou").meaning) not in parse_html(rendered.emails["investors"].html).text


def test_test_send_has_a_banner_and_english_locale_uses_english_labels() -> None:
    content = sample_content()
    english = content.model_copy(
        update={"audiences": tuple(a.model_copy(update={"locale": "en"}) for a in content.audiences)}
    )
    email = render(READY[0], english, is_test=True, audiences=["neta"]).emails["neta"]
    text = parse_html(email.html).text
    assert '<html lang="en"' in email.html
    assert "For you · Neta" in text and "Core points" in text and "Unsubscribe" in text
    assert labels_for(TEMPLATES, "en")["test_banner"] in text


def test_postprocessing_adds_alt_and_roles_mjml_python_leaves_out() -> None:
    html = compile_mjml(
        "<mjml><mj-body><mj-section><mj-column><mj-image src='https://example.org/a.png' />"
        "<mj-table><tr><td>x</td></tr></mj-table></mj-column></mj-section></mj-body></mjml>"
    )
    parsed = parse_html(html)
    assert [a.get("alt") for t, a in parsed.tags if t == "img"] == [""]
    assert all(a.get("role") == "presentation" for t, a in parsed.tags if t == "table")


def test_inlining_the_body_alone_inlines_exactly_what_the_whole_document_gets() -> None:
    # postprocess_html hands css-inline only <html>, an empty head and the body without Outlook comments.
    content = sample_content()
    ctx = build_context(
        READY[0],
        AUDIENCES[0],
        content,
        templates_dir=TEMPLATES,
        archive_url="https://a.example/b",
        archive_index_url="https://a.example/",
    )
    compiled = mjml2html(render_mjml(ctx, TEMPLATES), disable_comments=True, fonts={})
    inliner = css_inliner(TEMPLATES)
    whole, ours = finish_html(inliner.inline(compiled)), postprocess_html(compiled, TEMPLATES)
    assert ours[: ours.index("<body")] == compiled[: compiled.index("<body")]  # the head as mjml-python wrote it
    merged = whole[whole.index("<body") :].replace(MSO_CLOSE + MSO_OPEN, "")
    assert ours[ours.index("<body") :] == merged
    assert 'class="item" style="margin: 0 0 10px 0;"' in ours and MSO_CLOSE + MSO_OPEN not in ours


@pytest.mark.parametrize(
    "body",
    [
        '<body><p class="item">x</p><!--[if mso | IE]><table><tr><td><![endif]--></body>',
        '<body><p class="item">x</p><!--[if mso | IE]><table><tr><td></body>',  # unterminated
        '<body><p class="item">x</p><!--briefing:mso--></body>',  # the placeholder itself
        '<p class="item">x</p>',  # no head or body
        '<body><p class="item">x</p><table><tr><td><img src="a.png"></td></tr></table></body>',  # needs role, alt
        '<body><!--[if mso | IE]><TABLE><tr><td><IMG SRC="a.png"><![endif]--><p class="item">x</p></body>',
        '<body><!--[if mso | IE]><br><![endif]--><div class="preheader" style="display:none;font-size:1px;">pre</div>'
        '<p class="item">x</p></body>',  # the preheader after a conditional comment
    ],
)
def test_postprocessing_odd_documents_matches_whole_document_inlining(body: str) -> None:
    html = f'<!doctype html><html lang="en"><head><title>t</title></head>{body}</html>' if "<body" in body else body
    ours, whole = postprocess_html(html, TEMPLATES), finish_html(css_inliner(TEMPLATES).inline(html))
    assert ours[ours.find("<body") :] == whole[whole.find("<body") :]
    assert 'class="item" style="margin: 0 0 10px 0;"' in ours
    assert len(re.findall("<table", ours, re.I)) == len(re.findall('<table role="presentation"', ours, re.I))
    assert len(re.findall("<img", ours, re.I)) == len(re.findall('<img alt=""', ours, re.I))
    assert ours.count(PREHEADER_PADDING) == html.count('class="preheader" style="display:none;')


def test_label_tables_have_the_same_keys() -> None:
    table = yaml.safe_load((TEMPLATES / "labels.yaml").read_text(encoding="utf-8"))
    assert {"zh-CN", "en"} <= set(table)
    keys = {locale: set(labels) for locale, labels in table.items()}
    assert all(k == keys["zh-CN"] for k in keys.values()), keys
    assert all(isinstance(v, str) and v for labels in table.values() for v in labels.values())


def test_unknown_locale_falls_back_by_language_then_english(tmp_path: Path) -> None:
    assert labels_for(TEMPLATES, "zh-TW")["for_you"] == "给你的"
    assert labels_for(TEMPLATES, "fr")["for_you"] == "For you"


def test_note_for_an_unknown_audience_is_ignored() -> None:
    extra = AudienceNote(audience="ghost", meaning="ghost-meaning", next_step="x")
    briefing = READY[0].model_copy(update={"notes": (*READY[0].notes, extra)})
    assert "ghost-meaning" not in render(briefing, audiences=["investors"]).emails["investors"].html


def test_label_table_with_a_missing_key_is_a_clear_error(tmp_path: Path) -> None:
    from flows.render.email import load_labels

    table = yaml.safe_load((TEMPLATES / "labels.yaml").read_text(encoding="utf-8"))
    del table["zh-CN"]["for_you"]
    (tmp_path / "labels.yaml").write_text(yaml.safe_dump(table, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RenderError, match=r"labels\.yaml: locale zh-CN has missing labels \['for_you'\]"):
        load_labels(tmp_path)


def test_unescaped_lt_in_mjml_is_a_render_error_so_autoescape_matters() -> None:
    # Why the email environment autoescapes: a bare "<" from curated text would break mjml-python.
    source = "<mjml><mj-body><mj-section><mj-column><mj-text>a < b</mj-text></mj-column></mj-section></mj-body></mjml>"
    with pytest.raises(RenderError, match="MJML could not be compiled"):
        compile_mjml(source)
    assert "a &lt; b" in compile_mjml(source.replace("a < b", "a &lt; b"))


def test_audience_filter_renders_only_the_named_audiences() -> None:
    assert set(render(READY[0], audiences=["neta", "uota"]).emails) == {"neta", "uota"}

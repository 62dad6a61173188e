"""The per-audience Markdown briefing is CommonMark whose headings, lists and links come out as intended."""

from __future__ import annotations

from html import unescape

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

from flows.render.email import md_escape, md_url
from tests.render_support import HOSTILE, TEMPLATES, archive_url, hostile_briefing, render, sample_content, squash

READY = sample_content().ready
PARSER = MarkdownIt("commonmark")


def _blocks(markdown: str) -> list[Token]:
    return PARSER.parse(markdown)


def _headings(tokens: list[Token]) -> list[tuple[str, str]]:
    return [(t.tag, tokens[i + 1].content) for i, t in enumerate(tokens) if t.type == "heading_open"]


def _links(tokens: list[Token]) -> list[tuple[str, str]]:
    links = []
    for token in tokens:
        children = token.children or []
        for i, child in enumerate(children):
            if child.type == "link_open":
                links.append((str(child.attrs["href"]), children[i + 1].content))
    return links


def _list_items(tokens: list[Token], list_type: str) -> list[list[str]]:
    lists, current, depth = [], None, 0
    for token in tokens:
        if token.type == f"{list_type}_open":
            depth += 1
            current = [] if depth == 1 else current
        elif token.type == f"{list_type}_close":
            depth -= 1
            if depth == 0:
                lists.append(current)
        elif token.type == "inline" and depth and current is not None:
            current.append(token.content)
    return lists


def _bold_lines(tokens: list[Token]) -> list[str]:
    """Paragraphs that are one bold run: the Markdown briefing's section titles (chat tools show `#` literally)."""
    lines = []
    for i, token in enumerate(tokens):
        inline = (tokens[i + 1].children or []) if token.type == "paragraph_open" else []
        children = [c for c in inline if c.type != "text" or c.content]  # markdown-it adds empty text tokens
        if children and children[0].type == "strong_open" and children[-1].type == "strong_close":
            lines.append(unescape("".join(c.content for c in children if c.type == "text")))
    return lines


@pytest.mark.parametrize("briefing", READY, ids=lambda b: b.slug)
def test_markdown_sections_lists_and_links(briefing) -> None:
    """The chat form (issue 20): bold lines instead of headings, `1.` lists, bare URLs at line ends, no links."""
    from flows.render.email import labels_for

    for audience_id, email in render(briefing).emails.items():
        audience = sample_content().audience(audience_id)
        labels = labels_for(TEMPLATES, audience.locale)
        tokens = _blocks(email.markdown)
        html = PARSER.render(email.markdown)
        assert _headings(tokens) == [] and not [t for t in tokens if t.type in ("table_open", "html_block")]
        expected = [
            squash(briefing.verdict),
            f"{labels['for_you']} · {audience.name}",
            labels["core_points"],
            *([labels["other_notes"]] if audience.show_other_notes else []),
            labels["prompts"],
        ]
        assert [line for line in _bold_lines(tokens) if line in expected] == expected
        ordered = _list_items(tokens, "ordered_list")
        assert len(ordered) == 2
        assert len(ordered[0]) == len(briefing.core_points) and len(ordered[1]) == len(briefing.prompts)
        assert f"<strong>{briefing.core_points[0].lead}</strong>" in html
        assert _links(tokens) == []  # bare URLs, which every chat tool links; [text](url) shows raw in some
        lines = email.markdown.splitlines()
        assert any(line.endswith(briefing.source.url) for line in lines)
        assert any(line.endswith(archive_url(briefing.slug)) for line in lines)
        assert squash(briefing.note_for(audience_id).meaning) in unescape(html)
        assert html.index(labels["for_you"]) < html.index(labels["core_points"])
        assert "\\(" not in email.markdown and "\\!" not in email.markdown  # no needless escapes for chat


def md_unescape(text: str) -> str:
    return PARSER.renderInline(text).replace("&quot;", '"').replace("&amp;", "&").strip()


def test_hostile_text_stays_text_in_markdown() -> None:
    briefing = hostile_briefing(READY[0])
    for audience_id, email in render(briefing).emails.items():
        tokens = _blocks(email.markdown)
        html = PARSER.render(email.markdown)
        assert "<script>" not in html and "<em>" not in html and "<code>" not in html and "<s>" not in html
        assert all(href != "http://evil.example" for href, _ in _links(tokens))
        types = [t.type for t in tokens]
        others = len(briefing.notes) - 1 if sample_content().audience(audience_id).show_other_notes else 0
        # one core point and two prompts; other audiences' notes are paragraphs of their own, not list items
        assert "blockquote_open" not in types and types.count("list_item_open") == 1 + 2, others
        # the verdict is a bold line, not a list item starting "1." or a heading
        opened = [t for t in tokens if t.level == 0 and t.type.endswith("_open")]
        assert _headings(tokens) == [] and opened[1].type == "paragraph_open"
        assert squash(briefing.verdict)[:20] in unescape(md_unescape(tokens[tokens.index(opened[1]) + 1].content))
        assert "{{ 7 * 7 }}" in html and "{% if true %}IF{% endif %}" in html
        assert "a &lt; b &amp;&amp; c &gt; d &amp;amp;" in html


@pytest.mark.parametrize(
    ("raw", "expected_html"),
    [
        ("1. not a list", "<p>1. not a list</p>"),
        ("- not a bullet", "<p>- not a bullet</p>"),
        ("# not a heading", "<p># not a heading</p>"),
        ("> not a quote", "<p>&gt; not a quote</p>"),
        ("&copy; stays", "<p>&amp;copy; stays</p>"),
        ("<b>bold</b>", "<p>&lt;b&gt;bold&lt;/b&gt;</p>"),
        ("*a* _b_ `c` [d](e)", "<p>*a* _b_ `c` [d](e)</p>"),
        ("line\nbreak\n\nparagraph", "<p>line break paragraph</p>"),
    ],
)
def test_md_escape_round_trips_through_commonmark(raw: str, expected_html: str) -> None:
    assert PARSER.render(md_escape(raw)).strip() == expected_html


def test_md_url_keeps_links_intact() -> None:
    url = "https://example.org/a b/(x)?q=<1>&r=2#frag"
    tokens = _blocks(f"[t]({md_url(url)})")
    (href, text), *_ = _links(tokens)
    assert text == "t" and href == "https://example.org/a%20b/%28x%29?q=%3C1%3E&r=2#frag"


def test_markdown_briefing_has_no_html_blocks() -> None:
    email = render(hostile_briefing(READY[1]), audiences=["investors"]).emails["investors"]
    assert not [t for t in _blocks(email.markdown) if t.type in ("html_block", "html_inline")]
    assert HOSTILE.split()[0] not in email.markdown  # "<script>…" only appears escaped

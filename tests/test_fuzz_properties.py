"""Property tests (Hypothesis) of the three readers and writers that take arbitrary text: the briefing file parser
(and the stub writer that feeds it from feeds), the feed reader and the plain-text wrapper.

Arbitrary text never crashes them, and never breaks the structure around it: a field's text cannot make a new
section, heading, list item, translation block or front matter key, and the wrapper never loses, adds or reorders a
character. Runs are deterministic (`derandomize`, no example database) and small enough for every CI run; the
examples Hypothesis once found are pinned with `@example` so they are always checked.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import unquote
from xml.sax.saxutils import escape, quoteattr

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flows.core.briefing_format import BLOCK_ID, dump_front_matter, parse_briefing_file, split_front_matter
from flows.core.errors import ContentError
from flows.core.models import Article, Audience, Feed, ParagraphKind, make_paragraphs, normalise_text
from flows.ingest.reading import read_feed
from flows.ingest.stubs import render_stub
from flows.publish.archive import front_matter_text
from flows.render.text_wrap import _units, display_width, wrap
from tests.xss_support import findings, is_script_url

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ_FEEDS = settings(FUZZ, max_examples=60)  # each example parses a feed and writes and reads back stubs
AUDIENCES = tuple(Audience(id=a, name=a.title()) for a in ("atou", "neta", "uota", "investors"))

# Pieces of the briefing format, Markdown, HTML, YAML and line-breaking characters, mixed into arbitrary text.
MARKERS = [
    "## ",
    "### ",
    "## Verdict",
    "### atou",
    "- **",
    "**",
    "* ",
    "1. ",
    "> ",
    "Means: ",
    "Next: ",
    "<!--",
    "-->",
    "---",
    "...",
    "![a](b)",
    "](",
    "[",
    "]",
    "\\",
    "`",
    "key: value",
    "#",
    "\t",
    "\r",
    "\n",
    "\r\n",
    "\x0b",
    "\x0c",
    "\x1c",
    "\x1d",
    "\x1e",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "<script>",
    "&amp;",
    '"',
    "'",
    "。",
    "（",
    "👩\u200d💻",
]
CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x4FFF)
hostile_text = st.lists(
    st.one_of(st.sampled_from(MARKERS), st.text(min_size=1, max_size=12), st.text(CJK, min_size=1, max_size=6)),
    max_size=12,
).map("".join)
# What a feed entry's title or author becomes (feed_reading._one_line) and a paragraph's text (normalise_text).
one_line_text = hostile_text.map(lambda text: " ".join(text.split()))
paragraph_text = hostile_text.map(normalise_text)
url_text = st.one_of(
    hostile_text,
    st.sampled_from(["https://example.org/a b/(c).png", "javascript:alert(1)", "data:x", "", "https://x/]("]),
)


def _line_breakless(text: str) -> str:
    """`text` as one line of a file (CommonMark line endings: \\n, \\r)."""
    return text.replace("\r", " ").replace("\n", " ")


# --- the plain-text wrapper ------------------------------------------------------------------------------------

wrap_text = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.text(CJK, max_size=30),
        st.sampled_from(["，", "。", "（", "）", "“", "”", '"', " ", "  ", "\n", "🇨🇳", "👍🏽", "e\u0301", "x" * 120]),
        st.text(st.sampled_from("abcdefghij -/:."), max_size=60),
    ),
    max_size=20,
).map("".join)


@FUZZ
@given(text=wrap_text, width=st.integers(8, 100), indent=st.sampled_from(["", "  ", "   ", "\u3000"]))
@example(text="a" * 1200 + " b", width=20, indent="  ")
@example(text="（" * 5 + "字" * 50, width=8, indent="")
def test_wrap_keeps_every_character_in_order_within_the_width(text: str, width: int, indent: str) -> None:
    out = wrap(text, width=width, indent=indent)
    assert "".join(out.split()) == "".join(text.split()), "a character was lost, added or moved"
    assert out.count("\n") >= text.count("\n"), "a paragraph break was lost"
    for line in out.split("\n"):
        assert len(line.encode("utf-8")) <= 998
        body = line[len(indent) :] if line.startswith(indent) and indent else line
        if display_width(line) > width:
            # only a unit that may not be broken (a word, a URL, an emoji sequence, glued punctuation) overflows
            assert len(list(_units(body.strip()))) <= 1, (line, width)


@FUZZ
@given(text=wrap_text, width=st.integers(8, 100), limit=st.integers(12, 200))
def test_wrap_splits_only_tokens_longer_than_the_octet_limit(text: str, width: int, limit: int) -> None:
    out = wrap(text, width=width, indent="  ", hard_limit=limit)
    assert "".join(out.split()) == "".join(text.split())
    assert all(len(line.encode("utf-8")) <= limit or len(line) == 3 for line in out.split("\n"))


# --- the briefing parser -----------------------------------------------------------------------------------

FIELD_TEMPLATE = """---
slug: fuzz
status: draft
date: 2026-06-01
source:
  url: https://example.org/a
  title: A title
tags: [x]
---

## Verdict

VERDICT

## Judgement

JUDGEMENT

## Core points

- **LEAD** EXPLANATION
- **Second** point

## Audience notes

### atou
Means: MEANS
Next: NEXT

### neta
Means: m
Next: n

## Discussion prompts

1. PROMPT
2. second prompt

## Translation

### p01-aaaaaaaa
> SOURCE

TRANSLATION

### p02-bbbbbbbb
> second source

second translation

## Discussion archive

### 2026-06-02 · AUTHOR
ENTRY
"""


def _parse(text: str) -> tuple[object, object, list[ContentError]]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.md"
        path.write_text(text, encoding="utf-8")
        return parse_briefing_file(path)


@FUZZ
@given(text=st.one_of(hostile_text, st.text()))
def test_parser_never_crashes_on_any_file(text: str) -> None:
    briefing, partial, problems = _parse(text)
    assert all(isinstance(p, ContentError) for p in problems)
    assert briefing is not None or partial is not None or problems


@FUZZ
@given(cut=st.integers(0, len(FIELD_TEMPLATE)), insert=hostile_text)
def test_parser_never_crashes_on_a_damaged_briefing(cut: int, insert: str) -> None:
    problems = _parse(FIELD_TEMPLATE[:cut] + insert + FIELD_TEMPLATE[cut:])[2]
    assert all(isinstance(p, ContentError) for p in problems)


def structural(problems: list[ContentError]) -> list[ContentError]:
    """The problems other than control characters: `briefing check` reports those by design (flows/core/text_safety.py,
    with their line and field), and hostile text is full of them; any other problem means the structure broke."""
    return [p for p in problems if "control characters" not in p.message]


def test_a_byte_order_mark_before_the_front_matter_is_ignored() -> None:
    """Windows editors save UTF-8 with a byte order mark; the file is still a briefing."""
    briefing, _partial, problems = _parse("\ufeff" + FIELD_TEMPLATE.replace("\n", "\r\n"))
    assert briefing is not None and not [p for p in problems if p.severity == "error"], problems
    assert briefing.verdict == "VERDICT" and len(briefing.aligned) == 2


# Text an editor types on one line: no line ending, no HTML comment (an editor's note, dropped by design).
editor_line = hostile_text.map(_line_breakless).filter(lambda t: "<!--" not in t and t.strip())
AFTER_MARKER = {
    "EXPLANATION": lambda b: b.core_points[0].explanation,  # "- **LEAD** …"
    "MEANS": lambda b: b.notes[0].meaning,  # "Means: …"
    "NEXT": lambda b: b.notes[0].next_step,  # "Next: …"
    "PROMPT": lambda b: b.prompts[0],  # "1. …"
    "SOURCE": lambda b: b.aligned[0].source,  # "> …"
    "AUTHOR": lambda b: b.discussion[0].author,  # "### 2026-06-02 · …"
}
OWN_LINE = {
    "VERDICT": lambda b: b.verdict,
    "JUDGEMENT": lambda b: b.judgement,
    "TRANSLATION": lambda b: b.aligned[0].translation,
    "ENTRY": lambda b: b.discussion[0].text,
}
# On a line of its own, these start a section, a block or a source quote: that is the format, not an injection.
LINE_MARKERS = ("## ", "### ", ">")


def _structure(briefing: object) -> tuple[int, ...]:
    return (
        len(briefing.core_points),  # type: ignore[attr-defined]
        len(briefing.notes),  # type: ignore[attr-defined]
        len(briefing.prompts),  # type: ignore[attr-defined]
        len(briefing.aligned),  # type: ignore[attr-defined]
        len(briefing.discussion),  # type: ignore[attr-defined]
    )


@FUZZ
@given(value=editor_line, field=st.sampled_from(sorted(AFTER_MARKER)))
@example(value="x\x85Next: injected", field="MEANS")
@example(value="<!-- the article's own text", field="SOURCE")
@example(value="a\u2028## Judgement", field="PROMPT")
def test_text_after_a_marker_stays_in_its_field(value: str, field: str) -> None:
    if field == "EXPLANATION":  # an optional separator after the bold lead is part of the format
        value = "x " + value
    briefing, _partial, problems = _parse(FIELD_TEMPLATE.replace(field, value, 1))
    assert briefing is not None, problems
    assert _structure(briefing) == (2, 2, 2, 2, 1), problems
    assert not structural(problems), problems
    assert AFTER_MARKER[field](briefing) == value.strip()


@FUZZ
@given(
    value=editor_line.filter(lambda t: not t.lstrip().startswith(LINE_MARKERS)),
    field=st.sampled_from(sorted(OWN_LINE)),
)
@example(value="x\x1c## Judgement", field="VERDICT")
@example(value="x\u2028### p09-cccccccc", field="TRANSLATION")
@example(value="x\x0c## Core points", field="JUDGEMENT")
def test_text_on_its_own_line_stays_in_its_field(value: str, field: str) -> None:
    briefing, _partial, problems = _parse(FIELD_TEMPLATE.replace(field, value, 1))
    assert briefing is not None, problems
    assert _structure(briefing) == (2, 2, 2, 2, 1), problems
    assert not structural(problems), problems
    assert OWN_LINE[field](briefing) == value.strip()


@FUZZ
@given(meta=st.dictionaries(st.sampled_from(["title", "site", "author", "url"]), hostile_text, min_size=1))
@example(meta={"title": "a\n---\nb: c"})
@example(meta={"title": " ".join(["word"] * 300) + " ---"})
def test_front_matter_values_round_trip_and_add_no_key(meta: dict[str, str]) -> None:
    text = dump_front_matter({"slug": "fuzz", "source": meta}) + "\n## Verdict\n\nv\n"
    parsed, body = split_front_matter(Path("fuzz.md"), text)
    assert set(parsed) == {"slug", "source"} and set(parsed["source"]) == set(meta)
    assert parsed["source"] == meta
    assert [line for _, line in body if line.startswith("## ")] == ["## Verdict"]


# --- stubs: feed text written into a briefing file -----------------------------------------------------------

paragraph_items = st.lists(
    st.one_of(
        st.tuples(st.sampled_from([ParagraphKind.TEXT, ParagraphKind.HEADING, ParagraphKind.FOOTNOTE]), paragraph_text),
        st.tuples(st.just(ParagraphKind.IMAGE), paragraph_text, url_text, paragraph_text),
    ),
    max_size=5,
)


def _article(title: str, author: str, site: str, url: str, items: list[tuple]) -> Article:
    rows = [(item[0], item[1], *(item[2:] if item[0] is ParagraphKind.IMAGE else ("", ""))) for item in items]
    return Article(
        id="a1b2c3d4e5f60718",
        url=url,
        title=title,
        site=site,
        author=author,
        published=datetime(2026, 6, 1, tzinfo=UTC),
        feed_id="fuzz",
        paragraphs=make_paragraphs(rows),
    )


def assert_stub_reads_back(article: Article) -> None:
    """The stub written for `article` parses back to its source fields and paragraphs, with the stub's sections
    and nothing else: no feed text makes a section, block, list item or front matter key."""
    stub = render_stub(article, "fuzz", AUDIENCES, date(2026, 6, 2))
    briefing, _partial, problems = _parse(stub)
    assert briefing is not None, problems
    assert not structural(problems), problems
    source = briefing.source
    assert (source.title, source.author, source.site) == (article.title, article.author, article.site)
    assert source.url == article.url
    assert [b.id for b in briefing.aligned] == [p.id for p in article.paragraphs]
    assert [b.source for b in briefing.aligned] == [p.text for p in article.paragraphs]
    images = [(b.image_alt, unquote(b.image_src)) for b in briefing.aligned if b.kind is ParagraphKind.IMAGE]
    expected = [(p.image_alt, unquote(p.image_src)) for p in article.paragraphs if p.kind is ParagraphKind.IMAGE]
    assert images == expected
    assert [n.audience for n in briefing.notes] == [a.id for a in AUDIENCES]
    assert not (briefing.verdict or briefing.core_points or briefing.prompts or briefing.discussion)


@FUZZ
@given(title=one_line_text, author=one_line_text, site=one_line_text, url=url_text, items=paragraph_items)
@example(title="t", author="", site="", url="https://x/", items=[(ParagraphKind.TEXT, "See <!-- here")])
@example(title="t", author="", site="", url="https://x/", items=[(ParagraphKind.IMAGE, "c", "https://x/a b", "a](b")])
@example(title="\ufeffx", author="", site="", url="https://x/", items=[])
@example(title="t", author="", site="", url="## Verdict\x85## ", items=[])
def test_a_stub_reads_back_as_the_article_it_was_written_from(
    title: str, author: str, site: str, url: str, items: list[tuple]
) -> None:
    items = [item for item in items if item[1]]  # a paragraph always has text (extract drops empty ones)
    assert_stub_reads_back(_article(title or "untitled", author, site, url.strip() or "https://example.org/a", items))


# --- the feed reader -------------------------------------------------------------------------------------------

xml_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufffe\uffff").filter(
        lambda ch: ch in "\t\n\r" or ord(ch) >= 0x20
    ),
    max_size=40,
)
feed_field = st.one_of(xml_text, st.lists(st.one_of(st.sampled_from(MARKERS[:24]), xml_text), max_size=6).map("".join))
EMPTY_ENTRY = {"title": "", "author": "", "link": "", "content": ""}
LINKS = ["https://example.org/p", "javascript:alert(1)", " JAVASCRIPT:alert(1)", "data:x,y", "vbscript:x", "/rel", ""]


def _hostile_html(text: str) -> str:
    markup = f"<script>alert(1)</script><img src=x onerror=alert(2) alt='{text[:5]}'><a href=javascript:x>a</a>"
    return f"<p>{text}</p>{markup}"


entry = st.fixed_dictionaries(
    {
        "title": feed_field,
        "author": feed_field,
        "link": st.one_of(st.sampled_from(LINKS), feed_field),
        "content": st.one_of(feed_field, feed_field.map(_hostile_html)),
    }
)


def _clean(text: str) -> str:
    """`text` without the characters XML 1.0 cannot carry."""
    return "".join(ch for ch in text if (ch in "\t\n\r" or ord(ch) >= 0x20) and ch not in "\ufffe\uffff")


def _xml(text: str) -> str:
    return escape(_clean(text))


def _rss(entries: list[dict[str, str]]) -> bytes:
    items = "".join(
        f"<item><title>{_xml(e['title'])}</title><link>{_xml(e['link'])}</link>"
        f'<guid isPermaLink="false">g{n}</guid><dc:creator>{_xml(e["author"])}</dc:creator>'
        f"<description>{_xml(e['content'])}</description></item>"
        for n, e in enumerate(entries)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<channel><title>f</title><link>https://example.org/</link><description>d</description>{items}</channel></rss>"
    ).encode()


def _atom(entries: list[dict[str, str]]) -> bytes:
    items = "".join(
        f'<entry><title type="html">{_xml(_xml(e["title"]))}</title><id>urn:e:{n}</id>'
        f'<updated>2026-06-01T00:00:00Z</updated><link rel="alternate" href={quoteattr(_clean(e["link"]))}/>'
        f'<author><name>{_xml(e["author"])}</name></author>'
        f'<content type="html">{_xml(e["content"])}</content></entry>'
        for n, e in enumerate(entries)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>f</title>'
        f"<id>urn:f</id><updated>2026-06-01T00:00:00Z</updated>{items}</feed>"
    ).encode()


@FUZZ_FEEDS
@given(entries=st.lists(entry, max_size=4), atom=st.booleans(), parser=st.sampled_from(["feedparser", "feedparser-rs"]))
@example(entries=[dict(EMPTY_ENTRY, link="javascript:alert(1)")], atom=False, parser="feedparser-rs")
@example(entries=[dict(EMPTY_ENTRY, link="## ")], atom=True, parser="feedparser")
def test_feed_reader_keeps_every_entry_on_one_line_and_script_free(
    entries: list[dict[str, str]], atom: bool, parser: str
) -> None:
    body = _atom(entries) if atom else _rss(entries)
    feed = Feed(id="f", url="https://example.org/feed.xml")
    read = read_feed(body, {"content-type": "application/xml"}, feed.url, feed, parser)  # type: ignore[arg-type]
    assert read.is_feed
    assert len(read.entries) + len(read.warnings) == len(entries), read.warnings
    for item in read.entries:
        article = item.article
        for value in (article.title, article.author, article.site):
            assert value == " ".join(value.split()), value
        assert not is_script_url(article.url), article.url
        assert not findings(article.content_html, "content_html") and not findings(article.summary, "summary")
        assert all(BLOCK_ID.match(p.id) and p.text == normalise_text(p.text) for p in article.paragraphs)
        assert len({p.id for p in article.paragraphs}) == len(article.paragraphs)
        if article.url:
            assert_stub_reads_back(article)


@FUZZ
@given(body=st.binary(max_size=400), prefix=st.sampled_from([b"", b"<?xml version='1.0'?><rss><channel>", b"{"]))
def test_feed_reader_never_crashes_on_any_bytes(body: bytes, prefix: bytes) -> None:
    read = read_feed(prefix + body, {}, "https://example.org/feed.xml", Feed(id="f", url="x"))
    assert all(not is_script_url(e.article.url) for e in read.entries)


@FUZZ
@given(value=hostile_text)
def test_front_matter_text_is_one_line_without_markup(value: str) -> None:
    text = front_matter_text(value)
    assert "\n" not in text and not set(text) & set("<>\"'")
    assert yaml.safe_load(yaml.safe_dump({"title": text}, allow_unicode=True))["title"] == text

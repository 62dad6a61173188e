"""Editorial fidelity (issue 20, item 6): a full-size briefing written the way a briefing page is written
(tests/data/fidelity/briefing.md: 87 source blocks with headings, pull quotes, a table, a code block, images with
and without a file, footnotes with labels, one footnote kept in English, notes as a bold lead plus free paragraphs
with subject hooks) goes through `briefing run` like an editor's, and every curated text reaches every output
verbatim: each audience's HTML email and text part, each per-audience Markdown briefing, the archive's Markdown page
and HTML page, and each of the page's five views — with counts of blocks, pairs, footnotes and their links.

"Verbatim" means every character in order; only whitespace may differ where an output wraps lines (the text part)
and footnote markers show as their label where they become links.
"""

from __future__ import annotations

import email
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from email import policy
from pathlib import Path

import lxml.html
import pytest
from markdown_it import MarkdownIt

from flows.core.briefing_format import FOOTNOTE_REF, parse_briefing_file
from flows.core.models import Briefing, ParagraphKind

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests" / "data" / "fidelity" / "briefing.md"
SLUG = "larkspur-review-queue"
BASE_URL = "https://briefing.example.org"
BRAND = "🧠 阿头学 · 💬 讨论题"
VIEWS = ("briefing", "bilingual", "translation", "original", "discussion")
BODY_VIEWS = ("bilingual", "translation", "original")


def squash(text: str) -> str:
    return " ".join(text.split())


def unwrapped(text: str) -> str:
    return "".join(text.split())


def shown(text: str) -> str:
    """How a text with footnote markers reads once the markers are links: `[^1]` shows as `1`."""
    return FOOTNOTE_REF.sub(r"\1", text)


def missing(values: list[str], haystack: str, *, ignore_whitespace: bool = False) -> list[str]:
    norm = unwrapped if ignore_whitespace else squash
    hay = norm(haystack)
    return [v for v in values if v and norm(v) not in hay]


def _cli(project: Path, *args: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIEFING_")}
    env.update(
        BRIEFING_CONTENT_DIR=str(project / "content"),
        BRIEFING_OUTPUT_DIR=str(project / "outputs"),
        BRIEFING_BASE_URL=BASE_URL,
        BRIEFING_BRAND=BRAND,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    done = subprocess.run(
        [sys.executable, "-m", "flows", "--json", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"briefing {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


@dataclass
class Run:
    project: Path
    briefing: Briefing
    audiences: tuple[str, ...]
    first: dict
    second: dict

    def eml(self, audience: str) -> email.message.EmailMessage:
        folder = self.project / "outputs" / "outbox" / SLUG / audience
        path = sorted(folder.glob("*.eml"))[0]
        return email.message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[return-value]

    def archive(self, suffix: str) -> str:
        return next((self.project / "outputs" / "archive").glob(f"*/*/{SLUG}.{suffix}")).read_text(encoding="utf-8")

    def markdown(self, audience: str) -> Path:
        return self.project / "outputs" / "briefings" / SLUG / f"{audience}.md"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    project = tmp_path_factory.mktemp("fidelity")
    shutil.copytree(REPO / "content", project / "content")
    shutil.copy(SAMPLE, project / "content" / "briefings" / f"{SLUG}.md")
    briefing, _, problems = parse_briefing_file(project / "content" / "briefings" / f"{SLUG}.md")
    assert briefing is not None and not problems, problems
    first = _cli(project, "run")
    second = _cli(project, "run")
    audiences = tuple(a.id for a in _audiences(project))
    return Run(project, briefing, audiences, first, second)


def _audiences(project: Path):
    from flows.core.content import load_content

    return load_content(project / "content").content.audiences


def note_texts(briefing: Briefing, audience: str) -> list[str]:
    note = briefing.note_for(audience)
    assert note is not None and note.lead_form
    return [note.hook, *note.texts]


def briefing_texts(briefing: Briefing) -> list[str]:
    return [
        briefing.verdict,
        briefing.judgement,
        *(t for p in briefing.core_points for t in (p.lead, p.explanation)),
        *briefing.prompts,
    ]


# --- the sample itself ------------------------------------------------------------------------------------------


def test_the_sample_is_full_size_and_reads_without_a_problem(run: Run) -> None:
    briefing = run.briefing
    kinds = Counter(block.kind.value for block in briefing.aligned)
    assert len(briefing.aligned) == 87 and len(briefing.body) >= 78
    assert kinds == {"p": 61, "fn": 9, "h": 8, "img": 5, "q": 2, "table": 1, "code": 1}
    assert [f.footnote_label for f in briefing.footnotes] == ["1", "2", "3", "4", "5", "6", "7", "8", "*"]
    assert [b.id for b in briefing.aligned if b.untranslated] == ["fn83-28f17e1c"]
    assert sum(not b.image_src for b in briefing.aligned if b.kind is ParagraphKind.IMAGE) == 4
    for note in briefing.notes:  # a bold lead plus free paragraphs, whole: nothing split off, nothing added
        assert note.lead_form and note.lead and len(note.paragraphs) == 2 and note.hook
        assert not note.meaning and not note.next_step
    atou = briefing.note_for("atou")
    assert atou is not None and atou.paragraphs[1].startswith("下一步：本周把团队过去一个月的拉取请求")
    code = next(b for b in briefing.aligned if b.kind is ParagraphKind.CODE)
    assert "\n  - match: " in code.source and "\n    reviewers: senior" in code.source  # indentation kept


def test_every_ready_briefing_went_out_and_markdown_files_are_idempotent(run: Run) -> None:
    assert SLUG in run.first["briefings_rendered"] and not run.first["briefings_held"], run.first
    expected = {str(run.markdown(a)) for a in run.audiences}
    assert expected <= set(run.first["markdown_written"])
    assert run.second["markdown_written"] == [] and run.second["markdown_unchanged"] >= len(expected)
    assert run.second["emails_sent"] == 0 and run.second["pages_written"] == []


# --- emails -----------------------------------------------------------------------------------------------------


def test_each_email_carries_every_curated_text_verbatim(run: Run) -> None:
    briefing = run.briefing
    names = {a.id: a.name for a in _audiences(run.project)}
    for audience in run.audiences:
        message = run.eml(audience)
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        visible = lxml.html.fromstring(html).text_content()
        own = note_texts(briefing, audience)
        others = [t for other in run.audiences if other != audience for t in note_texts(briefing, other)]
        expected = [*briefing_texts(briefing), *own, BRAND]
        if audience == "investors":  # show_other_notes: every other note, whole
            expected += others + [names[o] for o in run.audiences if o != audience]
        assert missing(expected, visible) == [], audience
        assert missing(expected, text, ignore_whitespace=True) == [], audience
        if audience != "investors":
            assert missing(others, visible) == others  # the other notes are not in this email
        note = briefing.note_for(audience)
        assert note is not None
        assert str(message["Subject"]) == f"{_prefix(run, audience)}{note.hook}｜{briefing.verdict}"
        preheader = lxml.html.fromstring(html).cssselect("div.preheader")[0].text_content()
        assert squash(preheader).startswith(squash(note.paragraphs[0])[:40])


def _prefix(run: Run, audience: str) -> str:
    return next(a.subject_prefix for a in _audiences(run.project) if a.id == audience)


def test_text_part_keeps_notes_apart(run: Run) -> None:
    """Each note's lead, paragraphs and (for investors) the other notes are blocks of their own."""
    text = run.eml("investors").get_body(("plain",)).get_content()  # type: ignore[union-attr]
    for audience in run.audiences:
        note = run.briefing.note_for(audience)
        assert note is not None
        lead_at = text.index(note.lead)
        assert text[lead_at - 1] in "\n " and text[lead_at + len(note.lead)] == "\n", audience
    assert "下一步怎么用：下一步" not in unwrapped(text)


# --- per-audience Markdown --------------------------------------------------------------------------------------


def test_per_audience_markdown_carries_the_briefing_for_chat(run: Run) -> None:
    briefing = run.briefing
    for audience in run.audiences:
        source = run.markdown(audience).read_text(encoding="utf-8")
        html = MarkdownIt("commonmark").render(source)
        visible = lxml.html.fromstring(f"<div>{html}</div>").text_content()
        expected = [*briefing_texts(briefing), *note_texts(briefing, audience), BRAND]
        assert missing(expected, visible) == [], audience
        tags = set(re.findall(r"</?([a-z0-9]+)", html))
        assert tags <= {"p", "strong", "ol", "li"}, (audience, tags)  # no headings, tables, links or raw HTML
        assert not any(line.startswith("#") for line in source.splitlines())  # bold lines, not headings
        assert source.rstrip().endswith(briefing.source.url)  # bare URLs at line ends
        assert f"{BASE_URL}/2026/06/{SLUG}.html" in source


# --- the archive ------------------------------------------------------------------------------------------------


def _views_from_html(html: str) -> dict[str, lxml.html.HtmlElement]:
    document = lxml.html.fromstring(html)
    return {view: document.cssselect(f"section#{view}")[0] for view in VIEWS}


def _views_from_markdown(markdown: str) -> dict[str, lxml.html.HtmlElement]:
    body = markdown[markdown.index("\n---\n") + 5 :]  # after the front matter
    rendered = MarkdownIt("commonmark").render(body)
    parts: dict[str, str] = {}
    for view, following in zip(VIEWS, (*VIEWS[1:], None), strict=True):
        start = rendered.index(f'<a id="{view}"></a>')
        end = rendered.index(f'<a id="{following}"></a>') if following else len(rendered)
        parts[view] = rendered[start:end]
    return {view: lxml.html.fromstring(f"<section>{html}</section>") for view, html in parts.items()}


def expected_in_view(briefing: Briefing, view: str, names: dict[str, str]) -> list[str]:
    if view == "briefing":
        notes = [t for n in briefing.notes for t in note_texts(briefing, n.audience)]
        return [*(t for p in briefing.core_points for t in (p.lead, p.explanation)), *notes, *briefing.prompts] + [
            names[n.audience] for n in briefing.notes
        ]
    if view == "discussion":
        return [t for d in briefing.discussion for t in (d.author, d.text)]
    texts: list[str] = []
    for block in briefing.aligned:
        if block.kind in (ParagraphKind.CODE, ParagraphKind.TABLE):
            continue  # checked line by line / cell by cell below
        source = shown(block.source)
        translation = shown(block.translation)
        if block.kind is ParagraphKind.IMAGE:
            if not block.image_src:  # the description stands in for the picture (an image's is its alt text)
                texts.append(block.image_alt)
            source = block.caption
        wanted = {
            "bilingual": (source, translation),
            "translation": (translation or source,),
            "original": (source,),
        }[view]
        texts.extend(wanted)
    return texts


def _check_views(views: dict[str, lxml.html.HtmlElement], briefing: Briefing, names: dict[str, str]) -> None:
    for view in VIEWS:
        visible = views[view].text_content()
        assert missing(expected_in_view(briefing, view, names), visible) == [], view
    code = next(b for b in briefing.aligned if b.kind is ParagraphKind.CODE)
    table = next(b for b in briefing.aligned if b.kind is ParagraphKind.TABLE)
    for view in BODY_VIEWS:
        pres = [pre.text_content() for pre in views[view].cssselect("pre")]
        assert any(code.source in pre for pre in pres), view  # every line, indentation included
        visible = squash(views[view].text_content())
        cells = [c.strip() for line in (table.translation if view == "translation" else table.source).splitlines()
                 for c in line.strip("|").split("|") if c.strip() and set(c.strip()) != {"-"}]
        assert all(cell in visible for cell in cells), view
    photo = next(b for b in briefing.aligned if b.kind is ParagraphKind.IMAGE and b.image_src)
    for view in BODY_VIEWS:
        assert [img.get("alt") for img in views[view].cssselect("img")] == [photo.image_alt], view
    assert views["original"].text_content().rstrip().endswith("原文链接 ↗")


def _footnote_counts(view: lxml.html.HtmlElement, name: str) -> tuple[int, int, Counter[str]]:
    markers = view.cssselect("sup.fnref a")
    targets = [a.get("href").rsplit("#", 1)[1] for a in markers]
    assert all(t.startswith(f"{name}-fn-") for t in targets)
    ids = [a.get("id") for a in markers]
    assert len(ids) == len(set(ids)) and all(i.startswith(f"{name}-fnref-") for i in ids)
    return len(markers), len(set(targets)), Counter(targets)


def test_archive_html_page_has_every_text_in_every_view(run: Run) -> None:
    names = {a.id: a.name for a in _audiences(run.project)}
    html = run.archive("html")
    views = _views_from_html(html)
    _check_views(views, run.briefing, names)
    assert BRAND in lxml.html.fromstring(html).cssselect("header .brand")[0].text_content()
    counts = {}
    for view in BODY_VIEWS:
        section = views[view]
        notes = section.cssselect("ol.footnotes > li")
        assert len(notes) == 9, view
        assert [li.cssselect(".fn-label")[0].text_content() for li in notes] == [
            f.footnote_label for f in run.briefing.footnotes
        ]
        markers, distinct, per_target = _footnote_counts(section, view)
        backs = section.cssselect("ol.footnotes a.fnback")
        assert len(backs) == markers, view  # every marker has its way back
        for back in backs:  # …to a marker that exists in this view
            assert section.cssselect(f"#{back.get('href').rsplit('#', 1)[1]}"), back.get("href")
        counts[view] = (markers, distinct, per_target[f"{view}-fn-9"])
        blocks = section.cssselect("h3, blockquote, figure, .table-wrap, pre, p:not(.src):not(.tr):not(.source-link)")
        inside = "ancestor::ol[contains(@class,'footnotes')] | ancestor::blockquote"
        body_blocks = [b for b in blocks if not b.xpath(inside)]
        if view == "bilingual":
            assert len(section.cssselect("p.src")) == len(section.cssselect("p.tr")) == 61
            assert len(section.cssselect("blockquote.src")) == len(section.cssselect("blockquote.tr")) == 2
            assert len(section.cssselect("h3.src")) == len(section.cssselect("h3.tr")) == 8
        else:
            assert len(body_blocks) == 78, (view, len(body_blocks))
    # 8 numbered markers and [^*] twice in each text: once per view for the translation and the original, twice
    # (source and translation) in the bilingual view
    assert counts == {"bilingual": (20, 9, 4), "translation": (10, 9, 2), "original": (10, 9, 2)}
    english = lxml.html.fromstring(html).cssselect("#translation [lang=en]")
    untranslated = next(b for b in run.briefing.footnotes if b.untranslated)
    assert any(untranslated.source in e.text_content() for e in english)  # kept in English, marked as such
    assert len(views["translation"].cssselect("figure.no-image [role=img][aria-label]")) == 4


def test_archive_markdown_page_has_every_text_in_every_view(run: Run) -> None:
    names = {a.id: a.name for a in _audiences(run.project)}
    markdown = run.archive("md")
    views = _views_from_markdown(markdown)
    _check_views(views, run.briefing, names)
    for view in BODY_VIEWS:
        markers, distinct, _ = _footnote_counts(views[view], view)
        assert (markers, distinct) == ((20, 9) if view == "bilingual" else (10, 9)), view
        targets = views[view].xpath(".//a[@id and starts-with(@id, $p)]", p=f"{view}-fn-")
        assert len(targets) == 9, view


def test_atom_feed_entry_carries_the_views(run: Run) -> None:
    feed = (run.project / "outputs" / "archive" / "feed.xml").read_text(encoding="utf-8")
    assert "原文链接" in feed and "fnref" in feed


# --- readable everywhere: the full-size sample's emails and page in Chromium with axe-core, and SpamAssassin ------


WIDTHS = (375, 600)
SCHEMES = ("light", "dark")
NOTE_TOP_AT_375 = 320  # px: below a mail app's own header (≈ 190 px), the note's box and first lines are on screen


def test_full_size_emails_and_page_are_readable_and_not_spam(run: Run, tmp_path: Path) -> None:
    """Each audience's email (lead-form note with its hook, brand with emoji) light and dark at 375 and 600 px:
    no serious or critical axe-core violation, every text at least 4.5:1, the own note high on the first screen;
    each view of the archive page likewise; each email scores at most 1.0 in SpamAssassin (local rules)."""
    from tests.a11y_support import Chromium, element_top
    from tests.spam_support import require_spamassassin, score_message

    problems: list[str] = []
    lowest = {scheme: 21.0 for scheme in SCHEMES}
    with Chromium() as browser:
        for audience in run.audiences:
            message = run.eml(audience)
            page = tmp_path / f"{audience}.html"
            page.write_text(message.get_body(("html",)).get_content(), encoding="utf-8")  # type: ignore[union-attr]
            tops = []
            for width in WIDTHS:
                for scheme in SCHEMES:
                    with browser.open(page, width=width, scheme=scheme) as opened:
                        top = element_top(opened, ".for-you")
                        report = browser.run_axe(opened)
                    tops.append(f"{width}px {scheme}: {top:.0f}")
                    problems += [f"{audience} {width} {scheme}: {v.describe()}" for v in report.serious]
                    problems += [f"{audience} {width} {scheme}: {c.describe()}" for c in report.contrast_below(4.5)]
                    problems += [f"{audience} {width} {scheme}: fetched {u}" for u in report.blocked]
                    ratios = [c.ratio for c in report.contrast if c.ratio]
                    lowest[scheme] = min([lowest[scheme], *ratios])
                    if width == 375 and top > NOTE_TOP_AT_375:
                        problems.append(f"{audience} {scheme}: note starts {top:.0f} px down")
            print(f"\n{audience}: own note at {', '.join(tops)}")
        url = next((run.project / "outputs" / "archive").glob(f"*/*/{SLUG}.html")).resolve().as_uri()
        for view in VIEWS:
            for width in WIDTHS:
                for scheme in SCHEMES:
                    report = browser.audit(f"{url}#{view}", width=width, scheme=scheme)
                    problems += [f"page {view} {width} {scheme}: {v.describe()}" for v in report.serious]
                    problems += [f"page {view} {width} {scheme}: {c.describe()}" for c in report.contrast_below(4.5)]
    print(f"lowest contrast in the emails: light {lowest['light']:.2f}:1, dark {lowest['dark']:.2f}:1")
    executable = require_spamassassin()
    for audience in run.audiences:
        path = sorted((run.project / "outputs" / "outbox" / SLUG / audience).glob("*.eml"))[0]
        spam = score_message(path.read_bytes(), executable)
        print(f"SpamAssassin {audience}: {spam.describe()}")
        if spam.score > 1.0:
            problems.append(f"{audience}: SpamAssassin {spam.describe()}")
    assert problems == []

"""XSS payloads and the checks the escaping tests apply to every output: what a browser would run, and whether a
payload's text is still shown.

`findings` parses a document with html5lib, which follows the WHATWG parsing algorithm as browsers do (lxml's
libxml2 parser does not), and reports every live script: a `script` element (HTML or SVG), an `on*` attribute, a
`javascript:`, `data:` or `vbscript:` URL in a URL attribute (however its scheme is obfuscated: browsers strip
surrounding C0 controls and spaces and remove tabs and newlines before reading it), `srcdoc`, a refresh to a
script URL, `<base>`, plugins and frames.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from xml.etree.ElementTree import Element

import html5lib
from markdown_it import MarkdownIt

from flows.core.briefing_format import dump_front_matter
from flows.core.models import (
    AlignedParagraph,
    AudienceNote,
    Briefing,
    CorePoint,
    DiscussionEntry,
    ParagraphKind,
    Source,
)

SCRIPT_SCHEMES = ("javascript:", "data:", "vbscript:")
URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "xlink:href",
    "data",
    "poster",
    "background",
    "codebase",
    "cite",
    "longdesc",
    "lowsrc",
    "dynsrc",
    "ping",
    "manifest",
    "icon",
    "srcset",
    "to",
    "from",
    "values",
}
EMBEDDING = {"iframe", "frame", "frameset", "object", "embed", "applet", "base", "portal"}
XLINK = "{http://www.w3.org/1999/xlink}"
ZERO_WIDTH_SPACE = "\u200b"

# What an attacker or a careless paste puts into a field. Each is checked in every field and every output.
PAYLOADS: tuple[str, ...] = (
    # script elements and event handlers
    "<script>alert('s1')</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert('i1')>",
    '<img src="x" onerror="alert(\'i2\')">',
    "<svg onload=alert('v1')>",
    "<svg><script>alert('v2')</script></svg>",
    "<svg><animate attributeName=href values=javascript:alert('v3') /><a><text>v3</text></a></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert('m1')>",
    "<math><a xlink:href=javascript:alert('m2')>m2</a></math>",
    "<body onload=alert('b1')>",
    "<details open ontoggle=alert('d1')>",
    "<input autofocus onfocus=alert('in1')>",
    "<marquee onstart=alert('mq1')>mq</marquee>",
    # URLs with a script scheme, plain and obfuscated
    "<a href=\"javascript:alert('a1')\">a1</a>",
    "<a href=\"&#106;avascript:alert('a2')\">a2</a>",
    "<a href=\" jAvAsCrIpT:alert('a3')\">a3</a>",
    "<a href=\"java&#x09;script:alert('a4')\">a4</a>",
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">a5</a>',
    "<a href=\"vbscript:msgbox('a6')\">a6</a>",
    "<form action=\"javascript:alert('f1')\"><button formaction=\"javascript:alert('f2')\">f</button></form>",
    "<svg><a xlink:href=\"javascript:alert('x1')\"><text>x1</text></a></svg>",
    "<iframe src=\"javascript:alert('fr1')\"></iframe>",
    "<iframe srcdoc=\"<script>alert('fr2')</script>\"></iframe>",
    "<object data=\"javascript:alert('o1')\"></object>",
    "<embed src=\"data:text/html,<script>alert('e1')</script>\">",
    "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert('r1')\">",
    "<base href=\"javascript:alert('bh')//\">",
    # attribute breakouts, both quote kinds
    "\" onmouseover=\"alert('q1')\" x=\"",
    "' onmouseover='alert(\"q2\")' x='",
    "\"><img src=x onerror=alert('q3')>",
    "'><svg onload=alert('q4')>",
    "` onmouseover=alert('q5') `",
    "x\" autofocus onfocus=\"alert('q6')",
    # raw-text and comment breakouts
    "</style><script>alert('st1')</script>",
    "</title><script>alert('ti1')</script>",
    "</textarea><script>alert('tx1')</script>",
    "</noscript><img src=x onerror=alert('ns1')>",
    "</script><script>alert('sc1')</script>",
    "--><script>alert('cm1')</script><!--",
    "<!--<img src=\"--><img src=x onerror=alert('cm2')//\">",
    "]]><script>alert('cd1')</script>",
    "<![CDATA[<script>alert('cd2')</script>]]>",
    # MJML tag injection
    "</mj-text><mj-raw><script>alert('mj1')</script></mj-raw><mj-text>",
    "<mj-button href=\"javascript:alert('mj2')\">mj2</mj-button>",
    "<mj-image src=\"x\" onerror=\"alert('mj3')\" />",
    "</mj-title><mj-raw><img src=x onerror=alert('mj4')></mj-raw>",
    # Markdown link, image, HTML, autolink and entity injection
    "[md1](javascript:alert('md1'))",
    "![md2](javascript:alert('md2'))",
    "<javascript:alert('md3')>",
    "[md4](  jAvAsCrIpT:alert('md4') \"t\")",
    "[md5][r] [r]: javascript:alert('md5')",
    "&lt;script&gt;alert('md6')&lt;/script&gt;",
    "&#60;img src=x onerror=alert('md7')&#62;",
    "<https://ok.example/\"onmouseover=\"alert('md8')>",
    "[md9](https://ok.example/ \"a\" onmouseover=\"alert('md9')\")",
    "**b** _e_ `c` ~~s~~ | a | b | $x$ ^sup^ &copy; &amp;",
    "# h1 - li 1. ol > quote --- === : dd",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg== javascript:alert('t1') vbscript:msgbox('t2')",
    # YAML front matter breakers
    "--- title: pwned",
    "... key: value # comment",
    "'single' \"double\" &anchor *alias !!python/object/apply:os.system ['id']",
    "{ json: [1, 2] } | > @reserved %directive",
    # template syntax
    "{{ 7*7 }} {% raw %}x{% endraw %} ${7*7} #{7*7} <%= 7*7 %> {{ config.__class__ }}",
    # look-alikes and invisible characters
    "＜script＞alert('fw1')＜/script＞ \u202egnp.exe \u200bzw\ufeff",
)

# URLs taken from content or feeds (a source's address, an image's src, a feed entry's link).
URL_PAYLOADS: tuple[str, ...] = (
    "javascript:alert('u1')",
    " JaVaScRiPt:alert('u2')",
    "java\tscript:alert('u3')",
    "\x01javascript:alert('u4')",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox('u6')",
    "&#106;avascript:alert('u7')",
    "javascript&colon;alert('u8')",
    "https://ok.example/\"onmouseover=\"alert('u9')",
    "https://ok.example/a'><script>alert('u10')</script>",
    "https://ok.example/)](javascript:alert('u11'))",
    "https://ok.example/<img src=x onerror=alert('u12')>",
    "https://ok.example/plain",
)


def is_script_url(value: str) -> bool:
    """Whether a browser would read `value` (an attribute value, entities decoded) as a script or data URL."""
    url = value.strip("".join(map(chr, range(0x21)))).replace("\t", "").replace("\n", "").replace("\r", "").lower()
    return url.startswith(SCRIPT_SCHEMES)


@lru_cache(maxsize=16)  # each document is checked for scripts, text and attributes: parse it once (read only)
def parse(document: str) -> Element:
    return html5lib.parse(document, treebuilder="etree", namespaceHTMLElements=False)


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1].lower() if isinstance(name, str) else ""


def _attribute_name(name: str) -> str:
    return "xlink:href" if name == XLINK + "href" else _local(name)


@dataclass(frozen=True)
class Allowed:
    """What a page may legitimately contain: its own scripts — inline ones by how their text starts (and, for the
    preview, this response's nonce), external ones by the end of their src — and the preview's sandboxed email
    frames. Nothing a payload contains matches these."""

    nonce: str = ""
    script_starts: tuple[str, ...] = ()
    script_sources: tuple[str, ...] = ()
    frames: bool = False


# A site MkDocs builds with its default theme: its own scripts, on every page.
MKDOCS_THEME = Allowed(
    script_starts=("hljs.highlightAll();", 'var base_url = "'),
    script_sources=("/highlight.min.js", "js/bootstrap.bundle.min.js", "js/base.js", "search/main.js"),
)


def findings(document: str, where: str, allowed: Allowed | None = None) -> list[str]:
    """Every live script in `document`, each as one line naming `where` and the element."""
    allowed = allowed or Allowed()
    found: list[str] = []
    for element in parse(document).iter():
        tag = _local(element.tag)
        if not tag:
            continue
        attributes = {_attribute_name(k): v for k, v in element.attrib.items()}
        described = f"{where}: <{tag} {attributes}>"
        if tag == "script" and not _allowed_script(element, attributes, allowed):
            found.append(f"{described} {''.join(element.itertext())[:80]!r}")
        if tag in EMBEDDING and not _allowed_frame(tag, attributes, allowed):
            found.append(described)
        if tag == "meta" and attributes.get("http-equiv", "").lower() == "refresh":
            target = attributes.get("content", "").partition("=")[2]
            if is_script_url(target):
                found.append(described)
        for name, value in attributes.items():
            if name.startswith("on") or name == "srcdoc" or (name in URL_ATTRIBUTES and _has_script_url(name, value)):
                found.append(f"{described} [{name}]")
            elif name == "style" and re.search(r"javascript:|expression\s*\(", value, re.IGNORECASE):
                found.append(f"{described} [style]")
    return found


def _has_script_url(name: str, value: str) -> bool:
    if name in ("srcset", "values"):  # several URLs: "a.png 1x, b.png 2x"; an SVG animation's "a;b;c"
        return any(is_script_url(part) for part in re.split(r"[,;]\s*", value))
    return is_script_url(value)


def _allowed_script(element: Element, attributes: dict[str, str], allowed: Allowed) -> bool:
    text = "".join(element.itertext()).strip()
    if allowed.nonce and attributes.get("nonce") != allowed.nonce:
        return False
    if "src" in attributes:
        return not text and attributes["src"].endswith(allowed.script_sources) if allowed.script_sources else False
    return bool(allowed.script_starts) and text.startswith(allowed.script_starts)


def _allowed_frame(tag: str, attributes: dict[str, str], allowed: Allowed) -> bool:
    return (
        allowed.frames
        and tag == "iframe"
        and attributes.get("sandbox") == ""
        and attributes.get("src", "").startswith("/email/")
        and "srcdoc" not in attributes
    )


def visible_text(document: str) -> str:
    """The text a reader sees (title and body, without script and style), whitespace removed: see `bare`."""
    root = parse(document)
    parts: list[str] = []

    def walk(element: Element) -> None:
        tag = _local(element.tag)
        if tag not in ("script", "style", "template") and element.text:
            parts.append(element.text)
        if tag not in ("script", "style", "template"):
            for child in element:
                walk(child)
        if element.tail:
            parts.append(element.tail)

    walk(root)
    return bare("".join(parts))


def attribute_values(document: str, name: str) -> list[str]:
    return [v for element in parse(document).iter() for k, v in element.attrib.items() if _attribute_name(k) == name]


def bare(text: str) -> str:
    """`text` without any whitespace or zero-width space: wrapping and the text part's defanged schemes aside,
    the characters a reader gets, in order."""
    return "".join(text.split()).replace(ZERO_WIDTH_SPACE, "")


def missing(values: Iterable[str], shown: str) -> list[str]:
    """The values whose text (see `bare`) does not appear in `shown` (already bare)."""
    return [value for value in values if bare(value) and bare(value) not in shown]


COMMONMARK_WITH_HTML = MarkdownIt("commonmark", {"html": True})


def markdown_to_html(markdown: str) -> str:
    """Markdown as a chat tool or site generator that passes raw HTML through would show it."""
    return COMMONMARK_WITH_HTML.render(markdown)


# --- hostile briefings ---------------------------------------------------------------------------------------

TEXT_FIELDS: tuple[str, ...] = (
    "verdict",
    "judgement",
    "point1.lead",
    "point1.explanation",
    "point2.lead",
    "point2.explanation",
    "prompt1",
    "prompt2",
    "source.title",
    "source.site",
    "source.author",
    "tag",
    "text.source",
    "text.translation",
    "heading.source",
    "heading.translation",
    "image.alt",
    "image.caption",
    "image.translation",
    "footnote.source",
    "footnote.translation",
    "discussion.author",
    "discussion.text",
    *(f"note.{audience}.{part}" for audience in ("atou", "neta", "uota", "investors") for part in ("means", "next")),
)
URL_FIELDS = ("source.url", "image.src")


def _note_audiences() -> tuple[str, ...]:
    return ("atou", "neta", "uota", "investors")


def hostile_briefing(slug: str, values: dict[str, str], urls: dict[str, str], status: str = "ready") -> Briefing:
    """A briefing whose every text field is `values[field]` (prefixed with the field's name, so no payload starts a
    line of a briefing file) and whose URL fields are `urls[field]`."""

    def text(name: str) -> str:
        return f"{name.replace('.', '-')}: {values[name]}"

    notes = tuple(
        AudienceNote(audience=a, meaning=text(f"note.{a}.means"), next_step=text(f"note.{a}.next"))
        for a in _note_audiences()
    )
    aligned = (
        AlignedParagraph(
            id="p01-aaaaaaaa", kind=ParagraphKind.TEXT, source=text("text.source"), translation=text("text.translation")
        ),
        AlignedParagraph(
            id="h02-bbbbbbbb",
            kind=ParagraphKind.HEADING,
            source=text("heading.source"),
            translation=text("heading.translation"),
        ),
        AlignedParagraph(
            id="img03-cccccccc",
            kind=ParagraphKind.IMAGE,
            source=text("image.caption"),
            translation=text("image.translation"),
            image_src=urls["image.src"],
            image_alt=text("image.alt"),
        ),
        AlignedParagraph(
            id="p04-dddddddd",
            kind=ParagraphKind.TEXT,
            source="See the note [1].",
            translation="见注释 [1]。",
        ),
        AlignedParagraph(
            id="fn05-eeeeeeee",
            kind=ParagraphKind.FOOTNOTE,
            source=text("footnote.source"),
            translation=text("footnote.translation"),
        ),
    )
    return Briefing(
        slug=slug,
        status=status,  # type: ignore[arg-type]
        date=date(2026, 6, 10),
        source=Source(
            url=urls["source.url"],
            title=text("source.title"),
            site=text("source.site"),
            author=text("source.author"),
        ),
        tags=(text("tag"),),
        verdict=text("verdict"),
        judgement=text("judgement"),
        core_points=(
            CorePoint(lead=text("point1.lead"), explanation=text("point1.explanation")),
            CorePoint(lead=text("point2.lead"), explanation=text("point2.explanation")),
        ),
        notes=notes,
        prompts=(text("prompt1"), text("prompt2")),
        aligned=aligned,
        discussion=(
            DiscussionEntry(date=date(2026, 6, 11), author=text("discussion.author"), text=text("discussion.text")),
        ),
        path=f"{slug}.md",
    )


def rotated_briefings(prefix: str = "xss") -> Iterator[Briefing]:
    """One briefing per payload; briefing i carries payload i+j in text field j and URL payload i+j in URL field j,
    so every payload reaches every field exactly once."""
    n, m = len(PAYLOADS), len(URL_PAYLOADS)
    for i in range(n):
        values = {name: PAYLOADS[(i + j) % n] for j, name in enumerate(TEXT_FIELDS)}
        urls = {name: URL_PAYLOADS[(i + j) % m] for j, name in enumerate(URL_FIELDS)}
        yield hostile_briefing(f"{prefix}-{i:03d}", values, urls)


# An HTML comment in a briefing file is an editor's note the parser drops (docs/content-format.md): these payloads
# reach the outputs only through the model and the feed routes, not through a file an editor wrote.
FILE_PAYLOADS = tuple(p for p in PAYLOADS if "<!--" not in p)


def packed_briefings(groups: int, prefix: str = "packed", payloads: tuple[str, ...] = PAYLOADS) -> Iterator[Briefing]:
    """`groups` briefings whose fields carry several payloads each: payload p is in group p % groups, and
    briefing g's field j carries group (g + j) % groups, so every payload still reaches every field."""
    payload_groups = [" ".join(payloads[g::groups]) for g in range(groups)]
    url_groups = [URL_PAYLOADS[g::groups] for g in range(groups)]
    for g in range(groups):
        values = {name: payload_groups[(g + j) % groups] for j, name in enumerate(TEXT_FIELDS)}
        urls = {name: url_groups[(g + j) % groups][0] for j, name in enumerate(URL_FIELDS)}
        yield hostile_briefing(f"{prefix}-{g:02d}", values, urls)


def briefing_file(briefing: Briefing) -> str:
    """`briefing` in the file format of docs/content-format.md (the fields are one line each)."""
    meta = {
        "slug": briefing.slug,
        "status": briefing.status,
        "date": briefing.date.isoformat(),
        "source": {k: v for k, v in briefing.source.model_dump(mode="json").items() if v},
        "tags": list(briefing.tags),
    }
    lines = [dump_front_matter(meta), "## Verdict", "", briefing.verdict, "", "## Judgement", "", briefing.judgement]
    lines += ["", "## Core points", ""]
    lines += [f"- **{p.lead}** {p.explanation}" for p in briefing.core_points]
    lines += ["", "## Audience notes", ""]
    for note in briefing.notes:
        lines += [f"### {note.audience}", f"Means: {note.meaning}", f"Next: {note.next_step}", ""]
    lines += ["## Discussion prompts", ""]
    lines += [f"{n}. {prompt}" for n, prompt in enumerate(briefing.prompts, start=1)]
    lines += ["", "## Translation", ""]
    for block in briefing.aligned:
        lines.append(f"### {block.id}")
        if block.kind is ParagraphKind.IMAGE:
            lines.append(f"> ![{block.image_alt}]({block.image_src})")
        lines += [f"> {block.source}", "", block.translation, ""]
    lines += ["## Discussion archive", ""]
    for entry in briefing.discussion:
        lines += [f"### {entry.date.isoformat()} · {entry.author}", entry.text, ""]
    return "\n".join(lines)

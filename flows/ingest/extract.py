"""Turn untrusted article HTML into sanitised HTML and aligned paragraphs with stable ids."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from urllib.parse import urljoin

import lxml.html
import nh3
from lxml.etree import ParserError

from flows.core.models import Paragraph, ParagraphKind, make_paragraphs, normalise_text

logger = logging.getLogger(__name__)

SAFE_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "caption",
    "cite",
    "code",
    "dd",
    "del",
    "dl",
    "dt",
    "em",
    "figcaption",
    "figure",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "ins",
    "li",
    "ol",
    "p",
    "pre",
    "q",
    "s",
    "section",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "u",
    "ul",
}
SAFE_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "section": {"class"},
    "ol": {"class", "start"},
    "li": {"id"},
    "sup": {"id"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
}
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
FOOTNOTE_CONTAINER = re.compile(r"footnote", re.IGNORECASE)


# One cleaner for every call: `nh3.clean` with these options builds a new one each time, which costs three
# times the cleaning of a typical feed entry.
_CLEANER = nh3.Cleaner(
    tags=SAFE_TAGS,
    attributes=SAFE_ATTRIBUTES,
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)


def sanitise_html(html: str) -> str:
    """Allow-list sanitising: no script/style, no event handlers, no javascript: or data: links."""
    return _CLEANER.clean(html)


# Matched against the lower-cased HTML. The spaces and the quote are possessive (`*+`, `?+`): with plain
# quantifiers the engine gave the quote (or a space) back and the lookahead then saw `"` instead of the
# scheme, so every quoted absolute link counted as relative and sent the entry through a full lxml parse and
# serialisation (≈ 0.2 ms an entry). Fragment-only links do not count: they are never rewritten.
SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:")
RELATIVE_URL = re.compile(r"""(?:href|src)\s*+=\s*+["']?+(?!""" + SCHEME.pattern + "|#)")


def has_relative_url(html: str) -> bool:
    """Whether some href or src attribute holds a relative URL (a cheap test: most entries have none)."""
    lowered = html.lower()
    return ("href" in lowered or "src" in lowered) and RELATIVE_URL.search(lowered) is not None


def make_urls_absolute(html: str, base: str) -> str:
    """Resolve relative href/src against `base`; HTML without relative links is returned untouched (fast).

    Fragment-only links (`#fn1`) are left as they are, with or without other relative links beside them: they
    point at footnotes inside the same entry, whose ids the sanitiser keeps. A `<base href>` inside the
    entry is not followed (the sanitiser drops it): links resolve against `base`, the entry's own."""
    if not base or not has_relative_url(html):
        return html
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
        root.rewrite_links(partial(_absolute_link, base), resolve_base_href=False)
    except (ParserError, ValueError) as exc:
        logger.debug("could not resolve links against %s: %s", base, exc)
        return html
    return (root.text or "") + "".join(lxml.html.tostring(child, encoding="unicode") for child in root)


def _absolute_link(base: str, link: str) -> str | None:
    """`link` resolved against `base`; None (the attribute dropped) when it cannot be, as lxml's "discard".

    Links the fast path counts as absolute or in-page (a scheme, or a fragment only) are left as they are
    here too, so that a link is stored the same whatever other links share its entry: urljoin would turn
    a malformed same-scheme `https:/page` into `https://site/page`."""
    if link.startswith("#") or SCHEME.match(link.lower()):
        return link
    try:
        return urljoin(base, link)
    except ValueError:
        return None


def _text(element: lxml.html.HtmlElement) -> str:
    return normalise_text(element.text_content())


def _in_footnotes(element: lxml.html.HtmlElement) -> bool:
    for ancestor in element.iterancestors():
        if FOOTNOTE_CONTAINER.search(ancestor.get("class") or "") or FOOTNOTE_CONTAINER.search(
            ancestor.get("id") or ""
        ):
            return True
    return False


def html_to_paragraphs(html: str, *, sanitised: bool = False) -> tuple[Paragraph, ...]:
    """Paragraphs, headings, images (alt + caption) and footnotes, in document order.

    Pass `sanitised=True` only for the output of `sanitise_html` (saves a second pass on large feeds).
    """
    if not html.strip():
        return ()
    try:
        root = lxml.html.fragment_fromstring(html if sanitised else sanitise_html(html), create_parent="div")
    except (ParserError, ValueError) as exc:
        logger.warning("could not parse article HTML: %s", exc)
        return ()
    _wrap_loose_text(root)
    for sup in root.iter("sup"):
        marker = normalise_text(sup.text_content())
        if marker and len(marker) <= 4:
            for child in list(sup):
                sup.remove(child)
            sup.text = f"[{marker.strip('[]')}]"
    items: list[tuple[ParagraphKind, str, str, str]] = []
    for element in root.iter("p", "li", "figure", "img", "blockquote", "pre", *HEADINGS):
        items.extend(_items_for(element))
    return make_paragraphs(items)


BLOCK_TAGS = {"p", "li", "ul", "ol", "dl", "figure", "img", "blockquote", "pre", "table", "section", "hr", *HEADINGS}


def _wrap_loose_text(root: lxml.html.HtmlElement) -> None:
    """Text and inline elements directly under the root (bare-text entries, stripped divs) become paragraphs."""
    nodes: list[str | lxml.html.HtmlElement] = []
    if root.text:
        nodes.append(root.text)
        root.text = None
    for child in list(root):
        root.remove(child)
        tail, child.tail = child.tail, None
        nodes.append(child)
        if tail:
            nodes.append(tail)
    run: list[str | lxml.html.HtmlElement] = []
    for node in nodes:
        if isinstance(node, str) or node.tag not in BLOCK_TAGS:
            run.append(node)
            continue
        _flush_run(root, run)
        root.append(node)
    _flush_run(root, run)


def _flush_run(root: lxml.html.HtmlElement, run: list[str | lxml.html.HtmlElement]) -> None:
    if all(isinstance(n, str) and not n.strip() for n in run):
        run.clear()
        return
    paragraph = lxml.html.Element("p")
    last: lxml.html.HtmlElement | None = None
    for node in run:
        if isinstance(node, str):
            if last is None:
                paragraph.text = (paragraph.text or "") + node
            else:
                last.tail = (last.tail or "") + node
        else:
            paragraph.append(node)
            last = node
    run.clear()
    root.append(paragraph)


def _items_for(element: lxml.html.HtmlElement) -> list[tuple[ParagraphKind, str, str, str]]:
    tag = element.tag
    if tag == "figure":
        img = element.find(".//img")
        caption = element.find(".//figcaption")
        if img is None or not img.get("src"):
            return []
        alt = normalise_text(img.get("alt") or "")
        text = _text(caption) if caption is not None else alt
        return [(ParagraphKind.IMAGE, text, img.get("src") or "", alt)]
    if tag == "img":
        if not element.get("src") or any(a.tag == "figure" for a in element.iterancestors()):
            return []
        alt = normalise_text(element.get("alt") or "")
        return [(ParagraphKind.IMAGE, alt, element.get("src") or "", alt)]
    # A block nested in another block we already take (p in li, p in blockquote) is taken once, by the outer one.
    if any(a.tag in {"p", "li", "blockquote", "pre"} for a in element.iterancestors()):
        return []
    text = _text(element)
    if not text:
        return []
    if tag in HEADINGS:
        return [(ParagraphKind.HEADING, text, "", "")]
    if tag in {"li", "p"} and _in_footnotes(element):
        return [(ParagraphKind.FOOTNOTE, _strip_backref(text), "", "")]
    return [(ParagraphKind.TEXT, text, "", "")]


def _strip_backref(text: str) -> str:
    return re.sub(r"\s*[↩︎↑]+\s*$", "", text)


def text_to_paragraphs(text: str) -> tuple[Paragraph, ...]:
    """Plain text (e.g. from trafilatura) split on blank lines or newlines into text paragraphs."""
    chunks = [normalise_text(c) for c in re.split(r"\n\s*\n|\n", text)]
    return make_paragraphs([(ParagraphKind.TEXT, c, "") for c in chunks if c])


@dataclass
class ExtractedPage:
    """The main content of an article page: metadata, sanitised HTML and aligned paragraphs."""

    title: str = ""
    author: str = ""
    published: datetime | None = None
    site: str = ""
    html: str = ""
    paragraphs: tuple[Paragraph, ...] = field(default_factory=tuple)

    @property
    def text(self) -> str:
        return " ".join(p.text for p in self.paragraphs)


def extract_article(page: str | bytes, url: str) -> ExtractedPage:
    """Main text, title, author, date and images (alt + caption) of an article page, via trafilatura.

    Trafilatura's HTML output keeps paragraphs, headings, lists and images but drops figure captions; they
    are put back from the original page by image address. Returns an empty page when nothing is found.
    """
    # Imported here, not at the top: the parser processes import this module for `html_to_paragraphs` and
    # never extract a page, and importing trafilatura (with courlan and urllib3) takes ≈ 0.2 s.
    import trafilatura

    extracted = trafilatura.extract(
        page,
        url=url or None,
        output_format="html",
        include_images=True,
        include_formatting=True,
        include_links=True,
        include_tables=True,
        with_metadata=True,
    )
    if not extracted:
        return ExtractedPage()
    try:
        document = lxml.html.document_fromstring(extracted)
    except (ParserError, ValueError) as exc:
        logger.warning("%s: could not read the extracted text: %s", url, exc)
        return ExtractedPage()
    meta = {m.get("name"): m.get("content") or "" for m in document.iter("meta")}
    body = document.find("body")
    if body is None:
        return ExtractedPage()
    _restore_captions(body, _captions_by_src(page))
    inner = "".join(lxml.html.tostring(child, encoding="unicode") for child in body)
    html = sanitise_html(inner)
    return ExtractedPage(
        title=" ".join(meta.get("title", "").split()),
        author=" ".join(meta.get("author", "").split()),
        published=_parse_date(meta.get("date", "")),
        site=" ".join(meta.get("sitename", "").split()),
        html=html,
        paragraphs=html_to_paragraphs(html, sanitised=True),
    )


def _captions_by_src(page: str | bytes) -> dict[str, str]:
    try:
        root = lxml.html.document_fromstring(page)
    except (ParserError, ValueError):
        return {}
    captions: dict[str, str] = {}
    for figure in root.iter("figure"):
        img, caption = figure.find(".//img"), figure.find(".//figcaption")
        src = img.get("src") if img is not None else None
        if src and caption is not None:
            captions[src] = normalise_text(caption.text_content())
    return captions


def _restore_captions(body: lxml.html.HtmlElement, captions: dict[str, str]) -> None:
    for img in list(body.iter("img")):
        caption = captions.get(img.get("src") or "")
        parent = img.getparent()
        if not caption or parent is None or parent.tag == "figure":
            continue
        figure = lxml.html.Element("figure")
        parent.replace(img, figure)
        figure.tail, img.tail = img.tail, None
        figure.append(img)
        figcaption = lxml.html.Element("figcaption")
        figcaption.text = caption
        figure.append(figcaption)


def _parse_date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

"""Turn untrusted article HTML into sanitised HTML and aligned paragraphs with stable ids."""

from __future__ import annotations

import logging
import re

import lxml.html
import nh3
from lxml.etree import ParserError

from flows.models import Paragraph, ParagraphKind, make_paragraphs, normalise_text

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


def sanitise_html(html: str) -> str:
    """Allow-list sanitising: no script/style, no event handlers, no javascript: or data: links."""
    return nh3.clean(
        html,
        tags=SAFE_TAGS,
        attributes=SAFE_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def _text(element: lxml.html.HtmlElement) -> str:
    return normalise_text(element.text_content())


def _in_footnotes(element: lxml.html.HtmlElement) -> bool:
    for ancestor in element.iterancestors():
        if FOOTNOTE_CONTAINER.search(ancestor.get("class") or "") or FOOTNOTE_CONTAINER.search(
            ancestor.get("id") or ""
        ):
            return True
    return False


def html_to_paragraphs(html: str) -> tuple[Paragraph, ...]:
    """Paragraphs, headings, images (alt + caption) and footnotes, in document order."""
    if not html.strip():
        return ()
    try:
        root = lxml.html.fragment_fromstring(sanitise_html(html), create_parent="div")
    except (ParserError, ValueError) as exc:
        logger.warning("could not parse article HTML: %s", exc)
        return ()
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


def _items_for(element: lxml.html.HtmlElement) -> list[tuple[ParagraphKind, str, str, str]]:
    tag = element.tag
    if tag == "figure":
        img = element.find(".//img")
        caption = element.find(".//figcaption")
        if img is None:
            return []
        alt = normalise_text(img.get("alt") or "")
        text = _text(caption) if caption is not None else alt
        return [(ParagraphKind.IMAGE, text, img.get("src") or "", alt)]
    if tag == "img":
        if any(a.tag == "figure" for a in element.iterancestors()):
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

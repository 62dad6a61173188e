"""A reader's reply as a discussion entry: the new text only (quotes and signature removed), and sanitised HTML.

Quotes and signatures are stripped by mail-parser-reply (English and Chinese quote headers: `On … wrote:`,
Outlook's `From:/Sent:` and `发件人:/发送时间:` blocks, `-----Original Message-----`, `--` signatures, "Sent from
my …"). Two more cuts are made here: mail-parser-reply 1.36's Chinese `写道：` pattern can never match (its
negative look-ahead excludes the very line it looks for), so Gmail's and Apple Mail's `… 写道：` header is cut
here, with QQ/Foxmail's `---- 原始邮件 ----` separator; and a trailing block of `>` lines is dropped.

HTML-only replies are turned into text (block elements become line breaks) after their quoted parts
(blockquote, Gmail's and Yahoo's quote containers, Outlook's reply header) are removed; the HTML kept for
the editor is sanitised with nh3 to a few inline and block tags, links with http(s)/mailto only.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import lxml.html
import nh3
from lxml import etree
from mailparser_reply import EmailReplyParser

logger = logging.getLogger(__name__)

ALLOWED_TAGS = {"p", "br", "a", "strong", "em", "b", "i", "u", "ul", "ol", "li", "blockquote", "code", "pre", "div"}
ALLOWED_ATTRIBUTES = {"a": {"href"}}
QUOTE_CONTAINERS = (
    "//blockquote",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_signature ')]",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' yahoo_quoted ')]",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' moz-cite-prefix ')]",
    "//*[contains(concat(' ', normalize-space(@class), ' '), ' moz-signature ')]",
    "//*[@id='appendonsend']",
    "//*[@id='divRplyFwdMsg']",
    "//*[@id='mail-editor-reference-message-container']",
    "//*[@name='quote']",
)
BLOCK_TAGS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "section", "article"}
CHINESE_WROTE = re.compile(r"^[^\n]{0,200}写道[：:]\s*$", re.MULTILINE)
SEPARATORS = re.compile(
    r"^[\s>]*-{2,}\s*(原始邮件|Original Message|Forwarded message|转发的邮件)\s*-{2,}\s*$", re.IGNORECASE | re.MULTILINE
)
TRAILING_QUOTE = re.compile(r"(?:\n[ \t]*>[^\n]*)+\s*\Z")
_PARSER = EmailReplyParser(languages=["zh", "en"])


@dataclass(frozen=True)
class ReplyText:
    text: str
    html: str


def html_to_text(html: str) -> str:
    """Visible text of an HTML fragment, with line breaks where blocks end."""
    root = _html_root(html)
    if root is None:
        return ""
    for element in root.iter():
        if isinstance(element.tag, str) and element.tag.lower() in BLOCK_TAGS:
            element.tail = "\n" + (element.tail or "")
    text = root.text_content()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.strip() for line in text.splitlines())).strip()


def _html_root(html: str) -> lxml.html.HtmlElement | None:
    if not html.strip():
        return None
    try:
        root = lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return None
    for bad in root.xpath("//script|//style|//head|//title"):
        bad.drop_tree()
    return root


def strip_html_quotes(html: str) -> str:
    """The HTML without quoted parts (the whole quoted briefing in a reply)."""
    root = _html_root(html)
    if root is None:
        return ""
    for path in QUOTE_CONTAINERS:
        for element in root.xpath(path):
            if element.getparent() is not None:
                element.drop_tree()
    body = root.find("body")
    target = body if body is not None else root
    return "".join(
        [target.text or ""] + [lxml.html.tostring(child, encoding="unicode") for child in target.iterchildren()]
    )


def sanitise_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer",
    ).strip()


def strip_quotes(text: str) -> str:
    """Only what the sender wrote this time: no quoted earlier messages, no signature."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for pattern in (CHINESE_WROTE, SEPARATORS):
        match = pattern.search(text)
        if match:
            text = text[: match.start()]
    try:
        replies = _PARSER.read(text).replies
        latest = replies[0].body if replies else text
    except Exception:  # a regex library bug must not lose the reply: keep the text with our own cuts
        logger.warning("mail-parser-reply failed; keeping the text with only the built-in cuts", exc_info=True)
        latest = text
    latest = TRAILING_QUOTE.sub("", "\n" + latest).strip()
    return re.sub(r"\n{3,}", "\n\n", latest)


def extract_reply(plain: str, html: str, max_chars: int) -> ReplyText:
    """The reply's new text (from the plain part, else from the HTML) and its sanitised HTML."""
    own_html = strip_html_quotes(html) if html else ""
    source = plain if plain.strip() else html_to_text(own_html)
    text = strip_quotes(source)
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return ReplyText(text=text, html=sanitise_html(own_html) if own_html else "")

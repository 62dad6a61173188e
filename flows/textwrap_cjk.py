"""Wrap mixed Chinese/Latin text for plain-text email: Latin words stay whole, CJK breaks between characters.

Rules: widths are display columns (CJK and emoji count 2, combining marks and joiners 0); a Latin word, number
or URL is never split unless it is longer than the hard limit of a mail line (998 octets, RFC 5322); an emoji
sequence (ZWJ, skin tone, variation selector, flag) is one unit; closing punctuation never starts a line and
opening punctuation never ends one (a small kinsoku rule set).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from functools import cache

logger = logging.getLogger(__name__)

NO_LINE_START = frozenset("，。、；：！？）》」』】〕”’…—,.;:!?)]}%")
NO_LINE_END = frozenset("（《「『【〔“‘([{")
# Marks that extend the previous character into one grapheme: combining marks, ZWJ + next char, variation
# selectors, emoji skin tones, keycap, tag characters.
_EXTEND = (
    r"(?:\u200d.|[\u0300-\u036f\u1ab0-\u1aff\u20d0-\u20ff\ufe00-\ufe0f\U0001F3FB-\U0001F3FF\U000E0020-\U000E007F])"
)
_LATIN = r"[A-Za-z0-9\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff'’\-_/:.@?=&#%+~]"
TOKEN = re.compile(
    rf"\s+|(?:{_LATIN}{_EXTEND}*)+|[\U0001F1E6-\U0001F1FF]{{2}}|.{_EXTEND}*",
    re.DOTALL,
)


@cache
def char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf") or "\ufe00" <= ch <= "\ufe0f":
        return 0
    if "\U0001f3fb" <= ch <= "\U0001f3ff":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def display_width(text: str) -> int:
    """Columns `text` takes in a monospaced terminal or mail reader."""
    if "\u200d" not in text:
        return sum(map(char_width, text))
    width = 0
    for index, ch in enumerate(text):
        # After a ZWJ the next emoji joins the previous glyph and takes no extra columns.
        if index and text[index - 1] == "\u200d":
            continue
        width += char_width(ch)
    return width


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    in_quote = False  # straight double quotes alternate: opening ones bind forward, closing ones backward
    glue_next = False
    for token in TOKEN.findall(text):
        if token.isspace():
            tokens.append(token)
            glue_next = False
            continue
        closing_quote = token[0] == '"' and in_quote
        if token[0] == '"':
            in_quote = not in_quote
        joins = bool(tokens) and not tokens[-1].isspace()
        if joins and (glue_next or closing_quote or token[0] in NO_LINE_START or tokens[-1][-1] in NO_LINE_END):
            tokens[-1] += token
        else:
            tokens.append(token)
        glue_next = token == '"' and in_quote
    return tokens


def wrap(text: str, width: int = 78, indent: str = "", hard_limit: int = 998) -> str:
    """Wrap each line of `text` to `width` display columns; continuation lines get `indent`.

    No output line is longer than `hard_limit` UTF-8 octets; a longer unbroken token is split at that limit.
    """
    out_lines: list[str] = []
    for paragraph in str(text).split("\n"):
        out_lines.extend(_wrap_paragraph(paragraph.strip(), width, indent, hard_limit))
    return "\n".join(out_lines)


def _wrap_paragraph(paragraph: str, width: int, indent: str, hard_limit: int) -> list[str]:
    if not paragraph:
        return [""]
    lines: list[str] = []
    current, used = "", 0  # the line being built (without a pending space) and its display width
    pending_space = False
    indent_width = display_width(indent)
    for token in _tokens(paragraph):
        if token.isspace():
            pending_space = bool(current.strip())
            continue
        token_width = display_width(token)
        gap = 1 if pending_space else 0
        if current.strip() and used + gap + token_width > width:
            lines.append(current)
            current, used = indent + token, indent_width + token_width
        else:
            current, used = current + " " * gap + token, used + gap + token_width
        pending_space = False
        if len(current) * 4 > hard_limit and len(current.encode("utf-8")) > hard_limit:
            while len(current.encode("utf-8")) > hard_limit:  # an unbroken token longer than a mail line may be
                head, current = _split_octets(current, hard_limit)
                lines.append(head)
                current = indent + current
            used = display_width(current)
    if current.strip():
        lines.append(current.rstrip())
    return lines


def _split_octets(line: str, limit: int) -> tuple[str, str]:
    """Split `line` so the head is at most `limit` UTF-8 octets, never inside a character or emoji sequence."""
    size = 0
    cut = 0
    for match in re.finditer(rf".{_EXTEND}*", line, re.DOTALL):
        unit = len(match.group().encode("utf-8"))
        if size + unit > limit:
            break
        size += unit
        cut = match.end()
    cut = cut or 1
    return line[:cut], line[cut:]

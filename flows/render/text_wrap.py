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
from bisect import bisect_right
from collections.abc import Iterator
from functools import cache, lru_cache
from itertools import accumulate

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
_LATIN_CHAR = re.compile(_LATIN)
# Characters only the token-by-token path handles: grapheme extenders (they join the previous character) and
# flag halves (they pair up); straight double quotes need state (which one opens) and go there too.
_NEEDS_TOKENS = re.compile(
    r'["\u200d\u0300-\u036f\u1ab0-\u1aff\u20d0-\u20ff\ufe00-\ufe0f\U0001F1E6-\U0001F1FF\U0001F3FB-\U0001F3FF'
    r"\U000E0020-\U000E007F]"
)


MAX_CODE_POINT_OCTETS = 4


@cache
def char_width(ch: str) -> int:
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf") or "\ufe00" <= ch <= "\ufe0f":
        return 0
    if "\U0001f3fb" <= ch <= "\U0001f3ff":
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def display_width(text: str) -> int:
    """Columns `text` takes in a monospaced terminal or mail reader."""
    if text.isascii():
        return len(text)
    if "\u200d" not in text:
        return sum(map(char_width, text))
    width = 0
    for index, ch in enumerate(text):
        # After a ZWJ the next emoji joins the previous glyph and takes no extra columns.
        if index and text[index - 1] == "\u200d":
            continue
        width += char_width(ch)
    return width


# Most tokens are single CJK characters or common words: cache their widths (bounded, for a long-running server).
_unit_width = lru_cache(maxsize=8192)(display_width)


def wrap(text: str, width: int = 78, indent: str = "", hard_limit: int = 998) -> str:
    """Wrap each line of `text` to `width` display columns; continuation lines get `indent`.

    No output line is longer than `hard_limit` UTF-8 octets; a longer unbroken token is split at that limit.
    """
    if len(indent.encode("utf-8")) + MAX_CODE_POINT_OCTETS > hard_limit:
        # a continuation line needs room for at least one code point after its indent, or splitting an
        # over-long token would never shorten the line
        raise ValueError(f"indent of {len(indent.encode('utf-8'))} octets leaves no room within {hard_limit}")
    out_lines: list[str] = []
    for paragraph in str(text).split("\n"):
        out_lines.extend(_wrap_paragraph(paragraph.strip(), width, indent, hard_limit))
    return "\n".join(out_lines)


def _units(text: str) -> Iterator[tuple[str, bool]]:
    """The unbreakable units of `text` in order, each with whether whitespace came before it.

    A unit is a token (TOKEN) plus whatever must not be separated from it: closing punctuation after it,
    the token after opening punctuation, and the word a straight double quote encloses.
    """
    unit = ""  # the unit being built; "" right after whitespace or at the start
    space_before = False
    in_quote = False  # straight double quotes alternate: opening ones bind forward, closing ones backward
    glue_next = False
    for token in TOKEN.findall(text):
        first = token[0]
        if first.isspace():
            if unit:
                yield unit, space_before
                unit = ""
            space_before = True
            glue_next = False
            continue
        closing_quote = first == '"' and in_quote
        if first == '"':
            in_quote = not in_quote
        if unit and (glue_next or closing_quote or first in NO_LINE_START or unit[-1] in NO_LINE_END):
            unit += token
        else:
            if unit:
                yield unit, space_before
                space_before = False
            unit = token
        glue_next = token == '"' and in_quote
    if unit:
        yield unit, space_before


def _wrap_paragraph(paragraph: str, width: int, indent: str, hard_limit: int) -> list[str]:
    if not paragraph:
        return [""]
    if _NEEDS_TOKENS.search(paragraph) is None:
        lines = _fill(" ".join(paragraph.split()), width, indent)
        if all(len(line) * 4 <= hard_limit for line in lines):
            return lines
    return _wrap_units(paragraph, width, indent, hard_limit)


def _fill(text: str, width: int, indent: str) -> list[str]:
    """The lines `_wrap_units` makes for `text` (single spaces, no grapheme extenders, flags or straight quotes)
    when none is near the hard limit, found per line from prefix sums of character widths instead of per token:
    a line ends at the last place it may break (`_may_break`) within the width, or after its first unit."""
    ends = [0, *accumulate(map(char_width, text))] if not text.isascii() else range(len(text) + 1)
    lines: list[str] = []
    start, size, lead, room = 0, len(text), "", width
    while start < size:
        stop = bisect_right(ends, ends[start] + room, start + 1) - 1  # the most that fits, maybe mid-unit
        cut = next((k for k in range(stop, start, -1) if _may_break(text, k)), 0)
        if not cut:  # the first unit alone is wider than the line: it goes on the line whole
            cut = next(k for k in range(start + 1, size + 1) if _may_break(text, k))
        lines.append(lead + text[start:cut])
        start = cut + 1 if cut < size and text[cut] == " " else cut
        lead, room = indent, width - display_width(indent)
    return lines


def _may_break(text: str, k: int) -> bool:
    """A line may end before text[k]: at the end, at a space, or between tokens the kinsoku rules do not glue."""
    if k == len(text) or text[k] == " ":
        return True
    before, after = text[k - 1], text[k]
    if before == " " or after in NO_LINE_START or before in NO_LINE_END:
        return False
    return not (_LATIN_CHAR.match(before) and _LATIN_CHAR.match(after))


def _wrap_units(paragraph: str, width: int, indent: str, hard_limit: int) -> list[str]:
    lines: list[str] = []
    current, used = "", 0  # the line being built (without a pending space) and its display width
    started = False  # `current` holds a unit (not just the indent)
    indent_width = display_width(indent)
    for unit, space_before in _units(paragraph):
        unit_width = len(unit) if unit.isascii() else _unit_width(unit)
        if started and used + space_before + unit_width > width:
            lines.append(current)
            current, used = indent + unit, indent_width + unit_width
        elif started and space_before:
            current, used = f"{current} {unit}", used + 1 + unit_width
        else:
            current, used = current + unit, used + unit_width
        started = True
        if len(current) * 4 > hard_limit and len(current.encode("utf-8")) > hard_limit:
            while len(current.encode("utf-8")) > hard_limit:  # an unbroken token longer than a mail line may be
                head, current = _split_octets(current, hard_limit, keep=len(indent))
                lines.append(head)
                current = indent + current
            used = display_width(current)
    if started:
        lines.append(current.rstrip())
    return lines


def _split_octets(line: str, limit: int, keep: int = 0) -> tuple[str, str]:
    """Split `line` so the head is at most `limit` UTF-8 octets and longer than its first `keep` characters (the
    indent), never inside a character or emoji sequence unless one sequence alone would not fit."""
    size = 0
    cut = 0
    for match in re.finditer(rf".{_EXTEND}*", line, re.DOTALL):
        unit = len(match.group().encode("utf-8"))
        if size + unit > limit:
            break
        size += unit
        cut = match.end()
    if cut <= keep:  # one grapheme (a letter with hundreds of combining marks) is longer than the room left
        cut, size = 0, 0
        for cut, ch in enumerate(line, start=1):
            size += len(ch.encode("utf-8"))
            if size > limit:
                cut -= 1
                break
    cut = max(cut, keep + 1)
    return line[:cut], line[cut:]

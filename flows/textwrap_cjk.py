"""Wrap mixed Chinese/Latin text for plain-text email: Latin words stay whole, CJK breaks between characters."""

from __future__ import annotations

import re
import unicodedata

# Closing punctuation never starts a line; opening punctuation never ends one (a small kinsoku rule set).
NO_LINE_START = set("，。、；：！？）》」』】〕”’…—,.;:!?)]}%")
NO_LINE_END = set("（《「『【〔“‘([{")
TOKEN = re.compile(r"\s+|[A-Za-z0-9\u00c0-\u024f'’\-_/:.@?=&#%+~]+|.", re.DOTALL)


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    for token in TOKEN.findall(text):
        if (tokens and token in NO_LINE_START) or (
            tokens and tokens[-1] and tokens[-1][-1] in NO_LINE_END and not token.isspace()
        ):
            tokens[-1] += token
        else:
            tokens.append(token)
    return tokens


def wrap(text: str, width: int = 78, indent: str = "", hard_limit: int = 998) -> str:
    """Wrap each paragraph of `text` to `width` display columns; continuation lines get `indent`."""
    out_lines: list[str] = []
    for paragraph in text.split("\n"):
        out_lines.extend(_wrap_paragraph(paragraph.strip(), width, indent, hard_limit))
    return "\n".join(out_lines)


def _wrap_paragraph(paragraph: str, width: int, indent: str, hard_limit: int) -> list[str]:
    if not paragraph:
        return [""]
    lines: list[str] = []
    current = ""
    for token in _tokens(paragraph):
        if token.isspace():
            if current:
                current += " "
            continue
        candidate = current + token
        if current.strip() and display_width(candidate.rstrip()) > width:
            lines.append(current.rstrip())
            current = indent + token
        else:
            current = candidate
        while len(current) > hard_limit:  # an unbroken token longer than any mail line may be
            lines.append(current[:hard_limit])
            current = indent + current[hard_limit:]
    if current.strip():
        lines.append(current.rstrip())
    return lines

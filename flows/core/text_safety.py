"""Characters that must not reach an email, a header or the archive, and where they are in a text.

`briefing check` reports them with file, line and field; the send and publish paths hold back what has them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

# Characters that end a header line somewhere (SMTP, the email package's splitlines, or a mail client).
LINE_BREAKS = ("\r", "\n", "\x00", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")

# C0 controls except tab and newline, DEL, the C1 controls, and the Unicode line and paragraph separators:
# XML (the Atom feed, the archive) refuses most of them, MJML cannot parse some, and in a subject or a name
# they break the header. Line ends (CRLF, CR or LF) are not characters of a line.
_FORBIDDEN = {chr(c) for c in range(0x20) if chr(c) not in "\t\n"} | {"\x7f"} | {chr(c) for c in range(0x80, 0xA0)}
_FORBIDDEN |= {"\u2028", "\u2029"}


def describe(char: str) -> str:
    """`U+0000 (NUL)`-style name of a character, for messages an editor can act on."""
    name = unicodedata.name(char, "") or _CONTROL_NAMES.get(char, "control character")
    return f"U+{ord(char):04X} ({name})"


_CONTROL_NAMES = {"\x00": "NUL", "\x08": "BACKSPACE", "\x0b": "VERTICAL TAB", "\x0c": "FORM FEED", "\x1b": "ESCAPE"}
_CONTROL_NAMES.update({"\x7f": "DELETE", "\x85": "NEXT LINE"})


LINE_END = re.compile(r"\r\n|\r|\n")  # as CommonMark and the briefing parser count lines


def forbidden_characters(text: str) -> Iterator[tuple[int, int, str]]:
    """(line number from 1, column from 1, character) of every forbidden character in `text`."""
    for number, line in enumerate(LINE_END.split(text), start=1):
        for column, char in enumerate(line, start=1):
            if char in _FORBIDDEN:
                yield number, column, char


def first_forbidden(text: str) -> str | None:
    """The first forbidden character of a one-line value (a name, a subject prefix), or None."""
    return next((char for char in text if char in _FORBIDDEN or char in LINE_BREAKS), None)

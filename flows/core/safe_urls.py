"""Which URLs from content or feeds may become links: absolute http(s) addresses only, read as browsers read a URL.

Browsers strip C0 control characters and spaces from both ends of a URL and remove tabs and newlines anywhere
before they look at its scheme, so `" JaVa\tScRiPt:alert(1)"` is a `javascript:` URL to them; these functions
read it the same way. Light on purpose: the feed parser processes import it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

URL_STRIPPED = "".join(map(chr, range(0x21)))  # C0 controls and space
SCRIPT_SCHEMES = ("javascript:", "vbscript:", "data:")


def browser_form(url: Any) -> str:
    """`url` as a browser reads it before parsing: ends stripped, tabs and newlines removed."""
    return str(url).strip(URL_STRIPPED).replace("\t", "").replace("\n", "").replace("\r", "")


def web_url(value: Any, fallback: str = "#") -> str:
    """`value` (as a browser reads it) when it is an absolute http(s) address, else `fallback`. A URL from content
    or a feed becomes an href or src only through this, so `javascript:`, `data:`, `vbscript:` or `file:` never
    does, however it is obfuscated."""
    text = browser_form(value)
    try:
        parts = urlsplit(text)
    except ValueError:  # "http://[oops": no address at all
        return fallback
    return text if parts.scheme in ("http", "https") and parts.netloc else fallback


def has_script_scheme(url: str) -> bool:
    """Whether a browser would run or render `url` itself (javascript:, vbscript:, data:)."""
    return browser_form(url)[:11].lower().startswith(SCRIPT_SCHEMES)

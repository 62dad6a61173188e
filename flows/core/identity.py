"""Article identity: canonical links, stable ids and content fingerprints."""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flows.core.models import normalise_text

TRACKING_PARAMS = re.compile(
    r"^(utm_[a-z_]+|fbclid|gclid|dclid|msclkid|mc_cid|mc_eid|igshid|yclid|_hsenc|_hsmi|ref|ref_src|source|"
    r"cmpid|spm|share|s_cid|mkt_tok)$",
    re.IGNORECASE,
)


@lru_cache(maxsize=8192)
def canonical_url(url: str) -> str:
    """Lower-case scheme and host, drop default ports, fragments and tracking parameters, sort the query.

    Cached: reading one entry asks for the same link's canonical form up to three times."""
    if not url:
        return ""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    query = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not TRACKING_PARAMS.match(k))
    path = parts.path or "/"
    if path != "/" and path.endswith("/"):
        path = path.rstrip("/")
    return urlunsplit((scheme, host, path, urlencode(query), ""))


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:16]


def fingerprint(title: str, text: str) -> str:
    """Content fingerprint: the same article under a new GUID or URL is recognised by it."""
    return short_hash(normalise_text(title).lower(), normalise_text(text)[:2000].lower())


def looks_trustworthy_guid(guid: str, link: str) -> bool:
    """A GUID is trusted when it is not empty, not just a timestamp or counter and not a tracking-laden link."""
    if not guid or len(guid) < 6 or guid.isdigit():
        return False
    if guid.startswith(("http://", "https://")):
        return canonical_url(guid) == canonical_url(link) or not link
    return True


def derive_article_id(guid: str, link: str, title: str, published: str, *, link_is_unique: bool = True) -> str:
    """A stable id: the canonical link when it names one article, else a trustworthy GUID, else title + date.

    The link comes first because feeds regenerate GUIDs far more often than they move articles; a link
    shared by several entries of one feed (a homepage, a category page) identifies none of them.
    """
    if link and link_is_unique:
        return short_hash("link", canonical_url(link))
    if looks_trustworthy_guid(guid, link):
        return short_hash("guid", guid.strip())
    return short_hash("title", normalise_text(title).lower(), published)


def is_meaningful_fingerprint_text(title: str, text: str) -> bool:
    """Fingerprints of near-empty entries ("Untitled", no text) would merge unrelated articles."""
    return len(normalise_text(title)) + len(normalise_text(text)) >= 40

"""Identity rules and small fetch helpers, as plain functions."""

from __future__ import annotations

import pytest

from flows.core.backoff import backoff_delay
from flows.core.identity import canonical_url, derive_article_id, looks_trustworthy_guid


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://Example.org:443/a/?utm_source=x&id=2#frag", "https://example.org/a?id=2"),
        ("http://example.org/a?b=2&a=1&fbclid=z", "http://example.org/a?a=1&b=2"),
        ("HTTP://EXAMPLE.org", "http://example.org/"),
    ],
)
def test_canonical_url_removes_noise(a: str, b: str) -> None:
    assert canonical_url(a) == canonical_url(b)


def test_canonical_url_keeps_what_identifies_the_page() -> None:
    assert canonical_url("https://example.org/a?id=2") != canonical_url("https://example.org/a?id=3")
    assert canonical_url("https://example.org:8443/a") != canonical_url("https://example.org/a")


def test_article_id_prefers_a_unique_link_then_a_trustworthy_guid() -> None:
    by_link = derive_article_id("guid-one-123", "https://example.org/a?utm_medium=rss", "T", "")
    assert by_link == derive_article_id("guid-two-456", "https://example.org/a", "Other", "")
    shared = derive_article_id("guid-one-123", "https://example.org/", "T", "", link_is_unique=False)
    assert shared != derive_article_id("guid-two-456", "https://example.org/", "T", "", link_is_unique=False)
    assert derive_article_id("", "", "Title", "2026-01-01") != derive_article_id("", "", "Title", "2026-01-02")


@pytest.mark.parametrize(
    ("guid", "link", "trusted"),
    [
        ("", "https://e.org/a", False),
        ("12345", "https://e.org/a", False),
        ("tag:e.org,2026:post-1", "https://e.org/a", True),
        ("https://e.org/a?utm_source=x", "https://e.org/a", True),
        ("https://e.org/other", "https://e.org/a", False),
    ],
)
def test_guid_trust(guid: str, link: str, trusted: bool) -> None:
    assert looks_trustworthy_guid(guid, link) is trusted


def test_backoff_grows_exponentially_with_jitter() -> None:
    for retry in range(4):
        delays = {backoff_delay(0.5, retry) for _ in range(50)}
        assert all(0.5 * 0.5 * 2**retry <= d < 0.5 * 1.5 * 2**retry for d in delays)
        assert len(delays) > 1  # jittered, not a fixed schedule

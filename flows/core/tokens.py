"""HMAC-signed unsubscribe tokens: they carry audience and address and cannot be forged or moved to another address."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from urllib.parse import parse_qs, urlparse

from flows.core.errors import TokenError

logger = logging.getLogger(__name__)

MAX_TOKEN_LENGTH = 2048


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), b"unsubscribe:" + payload.encode("ascii"), hashlib.sha256).digest()
    return _b64(digest)


def make_token(secret: str, audience: str, email: str) -> str:
    if not secret:
        raise ValueError("refusing to sign with an empty key: anyone could forge the link")
    payload = _b64(json.dumps({"a": audience, "e": email.lower()}, separators=(",", ":")).encode("utf-8"))
    return f"{payload}.{_signature(secret, payload)}"


def verify_token(secrets: str | Sequence[str], token: str) -> tuple[str, str]:
    """Return (audience, email) of a token signed with any of the keys (the current one first, then earlier ones
    kept for a grace period after a rotation); raise TokenError otherwise. An empty key never verifies anything."""
    keys = [key for key in ([secrets] if isinstance(secrets, str) else secrets) if key]
    if not keys:
        raise TokenError("no key to verify unsubscribe links with", hint="set BRIEFING_SECRET")
    token = token.strip()
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise TokenError("malformed unsubscribe token", hint="use the whole link from the email")
    try:
        payload, signature = token.split(".", 1)
    except ValueError:
        raise TokenError("malformed unsubscribe token", hint="use the whole link from the email") from None
    if not any(hmac.compare_digest(signature.encode("ascii"), _signature(k, payload).encode("ascii")) for k in keys):
        raise TokenError(
            "unsubscribe token signature does not match", hint="the link was altered or is from another installation"
        )
    try:
        data = json.loads(_unb64(payload))
        return str(data["a"]), str(data["e"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise TokenError("unsubscribe token payload is unreadable") from None


def token_from(value: str) -> str:
    """Accept the bare token or the whole link from an email (`https://…/unsubscribe?t=TOKEN`)."""
    value = value.strip()
    if value.startswith(("http://", "https://")):
        return parse_qs(urlparse(value).query).get("t", [""])[0]
    return value

"""DKIM signatures (RFC 6376) made with OpenSSL through `cryptography`: rsa-sha256, and ed25519-sha256 (RFC 8463).

Canonicalisation is relaxed/relaxed, computed here on bytes (RFC 6376 §3.4.2 for headers, §3.4.4 for the
body); the header hash is signed with RSASSA-PKCS1-v1_5/SHA-256 or, for Ed25519, its SHA-256 digest is signed
with PureEdDSA. A signature costs about a quarter of a millisecond where dkimpy's pure-Python RSA cost eight.

Every header of DKIM_HEADERS is over-signed: listed in `h=` once more than it occurs (once when it is absent).
A verifier then fails the signature when anyone adds an instance after signing, so a second From, Subject,
To or Reply-To shown by a mail client, a second List-Unsubscribe (-Post) used for one-click unsubscribe, or a
second Content-Type changing how the body is read cannot ride on our signature. The relays a sender uses add
Received, Return-Path and their own signatures, none of these headers; a mailing list that forwards the email
rewrites Subject and body anyway, which breaks the signature with or without over-signing.

Two signatures at once (RSA next to Ed25519, as RFC 8463 expects while receivers learn Ed25519): the key of
BRIEFING_DKIM_KEY_PATH (RSA or Ed25519; the algorithm follows the key) under BRIEFING_DKIM_SELECTOR, plus the
Ed25519 key of BRIEFING_DKIM_ED25519_KEY_PATH under BRIEFING_DKIM_ED25519_SELECTOR.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from flows.core.errors import DeliveryError
from flows.core.settings import Settings

logger = logging.getLogger(__name__)

DKIM_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
)
RSA_MIN_BITS = 1024  # RFC 8301 §3.2: verifiers must not accept smaller keys
RSA_ADVISED_BITS = 2048  # RFC 8301: signers SHOULD use at least 2048 bits
RSA_MAX_VERIFIED_BITS = 4096  # RFC 8301: verifiers must handle up to 4096; larger may not verify
LINE_WIDTH = 76
KEY_HINT = "create one with `openssl genrsa -out dkim.pem 2048` (or `openssl genpkey -algorithm ed25519`)"

_WSP_RUN = re.compile(rb"[ \t]+")
DNS_NAME = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9_-]{1,63}(?<!-))*")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    """One key and the selector its public half is published under."""

    selector: str
    key: PrivateKey

    @property
    def algorithm(self) -> str:
        return "rsa-sha256" if isinstance(self.key, rsa.RSAPrivateKey) else "ed25519-sha256"

    def sign(self, header_data: bytes) -> bytes:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(header_data, padding.PKCS1v15(), hashes.SHA256())
        return self.key.sign(hashlib.sha256(header_data).digest())  # RFC 8463 §3: Ed25519 over the SHA-256 hash


class DkimSigner:
    """Adds one DKIM-Signature per key (relaxed/relaxed, over-signed DKIM_HEADERS) to finished messages."""

    def __init__(self, keys: Sequence[SigningKey], domain: str) -> None:
        if not keys:
            raise ValueError("a DkimSigner needs at least one key")
        self.keys = tuple(keys)
        self.domain = domain

    def sign(self, data: bytes, *, timestamp: int | None = None) -> bytes:
        """The message with its DKIM-Signature header field(s) in front.

        `data` is the message as it goes on the wire: lines end in CRLF (RFC 5322), as PreparedMessage builds
        them; a bare LF is an ordinary character to DKIM, so it is not treated as a line end here either."""
        fields, body = split_message(data)
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode("ascii")
        names = signed_header_names(fields)
        header_data = b"".join(relaxed_header(name, value) for name, value in select_headers(fields, names))
        when = int(time.time()) if timestamp is None else timestamp
        signatures = b"".join(
            self._signature(key, names, body_hash, header_data, when) for key in self.keys
        )
        return signatures + data

    def _signature(self, key: SigningKey, names: list[bytes], body_hash: str, header_data: bytes, when: int) -> bytes:
        tags = [
            "v=1",
            f"a={key.algorithm}",
            "c=relaxed/relaxed",
            f"d={self.domain}",
            f"s={key.selector}",
            f"t={when}",
            "h=" + ":".join(name.decode("ascii") for name in names),
            f"bh={body_hash}",
        ]
        unsigned = fold_tags("DKIM-Signature:", tags) + b";\r\n b="
        name, value = unsigned.split(b":", 1)
        # the signature header itself is hashed last, with b= empty and without its CRLF (RFC 6376 §3.7)
        signed_part = relaxed_header(name, value)[:-2]
        signature = base64.b64encode(key.sign(header_data + signed_part))
        return unsigned + fold_base64(signature, len(b" b=")) + b"\r\n"


# --- canonicalisation (RFC 6376 §3.4) -----------------------------------------------------------------------


def split_message(data: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(name, raw value) per header field, in order, folding CRLFs kept; and the body after the empty line."""
    if data.startswith(b"\r\n"):
        return [], data[2:]
    end = data.find(b"\r\n\r\n")
    head, body = (data, b"") if end < 0 else (data[: end + 2], data[end + 4 :])
    lines = head.split(b"\r\n")
    if head.endswith(b"\r\n"):
        lines.pop()
    fields: list[tuple[bytes, bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise DeliveryError(
                f"cannot DKIM-sign: the header line {line[:60]!r} is not `Name: value`",
                hint="this is a bug in the message builder; please report it",
            )
        fields.append((name, value))
    return fields, body


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """§3.4.2: name lowercased; value unfolded, WSP runs made one SP, WSP around it removed; CRLF ended."""
    value = value.replace(b"\r\n", b"")
    if b"\t" in value or b"  " in value:
        value = _WSP_RUN.sub(b" ", value)
    return name.rstrip(b" \t").lower() + b":" + value.strip(b" ") + b"\r\n"


def relaxed_body(body: bytes) -> bytes:
    """§3.4.4: WSP at line ends removed, other WSP runs made one SP, empty lines at the end removed.

    A body without a final CRLF is read as if it had one (the SMTP transport adds it). Only the lines that hold a
    space or a tab are looked at, found with memchr-speed searches: a base64 body has a handful (MIME headers)."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    if b" " in body or b"\t" in body:
        body = _reduce_whitespace(body)
    end = len(body)
    while body.endswith(b"\r\n", 0, end):
        end -= 2
    return body[: end + 2] if end else b""


def _reduce_whitespace(body: bytes) -> bytes:
    pieces: list[bytes] = []
    done = 0  # body[:done] is in `pieces`
    line_end = 0  # lines before this are handled
    next_space, next_tab = body.find(b" "), body.find(b"\t")
    while next_space >= 0 or next_tab >= 0:
        hit = next_tab if next_space < 0 or 0 <= next_tab < next_space else next_space
        line_start = body.rfind(b"\r\n", line_end, hit)
        line_start = line_start + 2 if line_start >= 0 else line_end
        line_end = body.find(b"\r\n", hit)  # always found: the body ends in CRLF
        line = body[line_start:line_end]
        canonical = _WSP_RUN.sub(b" ", line).rstrip(b" ")
        if canonical != line:
            pieces += [body[done:line_start], canonical]
            done = line_end
        if 0 <= next_space < line_end:
            next_space = body.find(b" ", line_end)
        if 0 <= next_tab < line_end:
            next_tab = body.find(b"\t", line_end)
    if not pieces:
        return body
    pieces.append(body[done:])
    return b"".join(pieces)


def signed_header_names(fields: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Each name of DKIM_HEADERS as many times as it occurs, plus once (over-signing, RFC 6376 §5.4.2)."""
    present = Counter(name.rstrip(b" \t").lower() for name, _ in fields)
    return [name for name in DKIM_HEADERS for _ in range(present[name] + 1)]


def select_headers(fields: list[tuple[bytes, bytes]], names: list[bytes]) -> list[tuple[bytes, bytes]]:
    """The instances `h=` names, each name taking its instances from the bottom up (§5.4.2); a name listed more
    often than it occurs contributes nothing for the extra listings."""
    by_name: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for name, value in fields:
        by_name.setdefault(name.rstrip(b" \t").lower(), []).append((name, value))
    selected = []
    for name in names:
        instances = by_name.get(name)
        if instances:
            selected.append(instances.pop())
    return selected


def fold_tags(prefix: str, tags: list[str]) -> bytes:
    """`prefix tag; tag; …` folded at tag boundaries, and after a `:` of a long h=, to LINE_WIDTH columns."""
    lines = [prefix]
    for index, tag in enumerate(tags):
        piece = tag + (";" if index < len(tags) - 1 else "")
        for number, part in enumerate(re.split(r"(?<=:)", piece)):
            glue = " " if number == 0 else ""
            if len(lines[-1]) + len(glue) + len(part) > LINE_WIDTH:
                lines.append(" " + part)
            else:
                lines[-1] += glue + part
    return "\r\n".join(lines).encode("ascii")


def fold_base64(value: bytes, first_line_used: int) -> bytes:
    """base64 in LINE_WIDTH-column lines (FWS inside b= is allowed, §3.5, and ignored by verifiers)."""
    width = LINE_WIDTH - first_line_used
    chunks = [value[:width]]
    chunks += [value[i : i + LINE_WIDTH - 1] for i in range(width, len(value), LINE_WIDTH - 1)]
    return b"\r\n ".join(chunks)


# --- keys ---------------------------------------------------------------------------------------------------


def make_dkim_signer(settings: Settings, default_domain: str) -> DkimSigner | None:
    """The signer the settings ask for, or None when BRIEFING_DKIM_KEY_PATH is empty."""
    if not settings.dkim_key_path:
        if settings.dkim_ed25519_key_path:
            raise DeliveryError(
                "BRIEFING_DKIM_ED25519_KEY_PATH is set but BRIEFING_DKIM_KEY_PATH is empty",
                hint="the Ed25519 signature goes next to the RSA one of BRIEFING_DKIM_KEY_PATH (many receivers "
                "verify only RSA); to sign with Ed25519 alone, put its key in BRIEFING_DKIM_KEY_PATH",
            )
        return None
    selector = dns_name(settings.dkim_selector, "BRIEFING_DKIM_SELECTOR")
    keys = [SigningKey(selector, load_key(settings.dkim_key_path, "BRIEFING_DKIM_KEY_PATH"))]
    if settings.dkim_ed25519_key_path:
        keys.append(_second_key(settings, keys[0]))
    setting = "BRIEFING_DKIM_DOMAIN" if settings.dkim_domain else "BRIEFING_FROM_ADDRESS"
    return DkimSigner(keys, dns_name(settings.dkim_domain or default_domain, setting))


def dns_name(value: str, setting: str) -> str:
    """A selector or domain as it goes in s= or d=: dot-separated letters, digits and hyphens (an
    internationalised domain in its xn-- form). Anything else could not be looked up, or would break the tag list."""
    try:
        name = value.strip().rstrip(".").encode("idna").decode("ascii").lower()
    except UnicodeError:
        name = ""
    if not DNS_NAME.fullmatch(name):
        raise DeliveryError(
            f"{setting} {value!r} is not a DNS name usable in a DKIM signature",
            hint="use letters, digits, hyphens and dots only, e.g. briefing2026 or news.example.org",
        )
    return name


def _second_key(settings: Settings, first: SigningKey) -> SigningKey:
    path = settings.dkim_ed25519_key_path
    assert path is not None
    key = load_key(path, "BRIEFING_DKIM_ED25519_KEY_PATH")
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise DeliveryError(
            "BRIEFING_DKIM_ED25519_KEY_PATH must hold an Ed25519 key (the RSA key goes in BRIEFING_DKIM_KEY_PATH)",
            where=str(path),
            hint="create one with `openssl genpkey -algorithm ed25519 -out dkim-ed25519.pem`",
        )
    if not isinstance(first.key, rsa.RSAPrivateKey):
        raise DeliveryError(
            "both DKIM keys are Ed25519: BRIEFING_DKIM_KEY_PATH should hold the RSA key that receivers without "
            "Ed25519 support verify",
            where=str(settings.dkim_key_path),
            hint="put an RSA key in BRIEFING_DKIM_KEY_PATH, or leave BRIEFING_DKIM_ED25519_KEY_PATH empty",
        )
    selector = dns_name(settings.dkim_ed25519_selector, "BRIEFING_DKIM_ED25519_SELECTOR")
    if selector == first.selector:
        raise DeliveryError(
            f"BRIEFING_DKIM_ED25519_SELECTOR is {first.selector!r}, the same as BRIEFING_DKIM_SELECTOR",
            hint="each key is published under its own selector: give the Ed25519 key another one",
        )
    return SigningKey(selector, key)


def load_key(path: Path, setting: str) -> PrivateKey:
    """A PEM private key (PKCS#1 or PKCS#8 RSA ≥ 1024 bits, or PKCS#8 Ed25519), read once per file version."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise DeliveryError(
            f"cannot read the DKIM key: {exc.strerror}", where=str(path), hint=f"fix {setting}"
        ) from None
    return _load_key(path, stat.st_mtime_ns, stat.st_size, setting)


@functools.lru_cache(maxsize=8)
def _load_key(path: Path, mtime_ns: int, size: int, setting: str) -> PrivateKey:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise DeliveryError(
            f"cannot read the DKIM key: {exc.strerror}", where=str(path), hint=f"fix {setting}"
        ) from None
    key = _parse_pem(pem, path, setting)
    if isinstance(key, rsa.RSAPrivateKey):
        _check_rsa_size(key.key_size, path, setting)
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise DeliveryError(
        f"{setting} holds a {_key_kind(key)} key; DKIM signs with RSA (rsa-sha256) or Ed25519 (ed25519-sha256)",
        where=str(path),
        hint=KEY_HINT,
    )


def _parse_pem(pem: bytes, path: Path, setting: str) -> object:
    if b"-----BEGIN" not in pem:
        raise DeliveryError(
            f"{setting} is not a PEM file (no -----BEGIN line)", where=str(path), hint=KEY_HINT
        )
    if b"PRIVATE KEY-----" not in pem:
        found = re.search(rb"-----BEGIN ([A-Z0-9 ]+)-----", pem)
        what = found.group(1).decode("ascii").lower() if found else "something else"
        raise DeliveryError(
            f"{setting} holds a {what}, not a private key",
            where=str(path),
            hint="point it at the private key; the public key goes in the DNS TXT record",
        )
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise DeliveryError(
            f"the DKIM key of {setting} is encrypted with a passphrase",
            where=str(path),
            hint="store it unencrypted, readable only by the sending user: "
            "`openssl pkey -in encrypted.pem -out dkim.pem && chmod 600 dkim.pem`",
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise DeliveryError(
            f"{setting} is not a readable PEM private key: {exc}", where=str(path), hint=KEY_HINT
        ) from None


def _check_rsa_size(bits: int, path: Path, setting: str) -> None:
    if bits < RSA_MIN_BITS:
        raise DeliveryError(
            f"the RSA key of {setting} has {bits} bits; receivers reject DKIM keys under {RSA_MIN_BITS} bits "
            "(RFC 8301)",
            where=str(path),
            hint="create a 2048-bit key with `openssl genrsa -out dkim.pem 2048` and publish its public key",
        )
    if bits < RSA_ADVISED_BITS:
        logger.warning(
            "%s: the DKIM key (%s) has %d bits; receivers accept it, but 2048 bits is the advised minimum "
            "(RFC 8301) and some providers score shorter keys down",
            path,
            setting,
            bits,
        )
    elif bits > RSA_MAX_VERIFIED_BITS:
        logger.warning(
            "%s: the DKIM key (%s) has %d bits; verifiers are only required to handle up to %d (RFC 8301), "
            "so some receivers may not verify it",
            path,
            setting,
            bits,
            RSA_MAX_VERIFIED_BITS,
        )


def _key_kind(key: object) -> str:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, x448, x25519

    if isinstance(key, ec.EllipticCurvePrivateKey):
        return f"elliptic-curve ({key.curve.name})"
    kinds = {dsa.DSAPrivateKey: "DSA", ed448.Ed448PrivateKey: "Ed448", x25519.X25519PrivateKey: "X25519"}
    kinds[x448.X448PrivateKey] = "X448"
    return next((label for kind, label in kinds.items() if isinstance(key, kind)), type(key).__name__)

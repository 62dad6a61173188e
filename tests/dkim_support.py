"""Helpers for the DKIM tests: keys and their DNS records, and the two independent verifiers.

- dkimpy's `dkim.verify`, given the TXT records through its `dnsfunc`;
- OpenDKIM's `opendkim-testmsg` (Debian's opendkim-tools), the C library that Postfix and Sendmail milters
  use. It has no option for a key file: it resolves `selector._domainkey.domain` through the C library like a
  receiving server. So it runs inside the test's network namespace, where /etc/resolv.conf is bind-mounted to
  name a DNS server that tests/dns_txt_server.py runs on that namespace's 127.0.0.1:53, serving the records
  the test publishes (nothing leaves the namespace).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.tool_support import require_executable

DNS_SERVER_SCRIPT = Path(__file__).resolve().parent / "dns_txt_server.py"
OPENDKIM_TESTMSG = "/usr/sbin/opendkim-testmsg"
OPENDKIM_HOW = "install Debian's `opendkim-tools` package (scripts/test.sh does, as root)"
SIGNATURE_FIELD = re.compile(rb"^DKIM-Signature:.*?\r\n(?=[^ \t])", re.DOTALL | re.MULTILINE | re.IGNORECASE)


# --- keys ---------------------------------------------------------------------------------------------------


def write_rsa_key(path: Path, bits: int = 2048, *, pkcs8: bool = False, password: bytes = b"") -> str:
    """A new RSA key in PEM (PKCS#1 `BEGIN RSA PRIVATE KEY`, or PKCS#8); returns its DNS TXT record."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits) if bits >= 1024 else _small_rsa_key(bits)
    return _write(path, key, pkcs8=pkcs8, password=password)


def write_ed25519_key(path: Path) -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    _write(path, key, pkcs8=True)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "v=DKIM1; k=ed25519; p=" + base64.b64encode(raw).decode("ascii")


def _write(path: Path, key: Any, *, pkcs8: bool, password: bytes = b"") -> str:
    form = serialization.PrivateFormat.PKCS8 if pkcs8 else serialization.PrivateFormat.TraditionalOpenSSL
    encryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, form, encryption))
    if not isinstance(key, rsa.RSAPrivateKey):
        return ""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii")


def _small_rsa_key(bits: int) -> rsa.RSAPrivateKey:
    """An RSA key shorter than `cryptography` will generate (it refuses < 1024 bits), for the refusal test."""
    e = 65537
    while True:
        p, q = _prime(bits // 2), _prime(bits - bits // 2)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e and (p * q).bit_length() == bits:
            break
    d = pow(e, -1, phi)
    public = rsa.RSAPublicNumbers(e, p * q)
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), rsa.rsa_crt_iqmp(p, q), public
    )
    return numbers.private_key()


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if _probably_prime(candidate):
            return candidate


def _probably_prime(n: int, rounds: int = 32) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(secrets.randbelow(n - 3) + 2, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


# --- reading signatures ---------------------------------------------------------------------------------


def signature_fields(data: bytes) -> list[bytes]:
    """The DKIM-Signature header fields of a message, top to bottom, each with its folded lines."""
    head = data[: data.find(b"\r\n\r\n") + 3]  # the lookahead of SIGNATURE_FIELD sees the empty line
    return SIGNATURE_FIELD.findall(head)


def tags(field: bytes) -> dict[str, str]:
    """The tag=value pairs of one DKIM-Signature field, whitespace removed."""
    value = re.sub(rb"\s+", b"", field.split(b":", 1)[1]).decode("ascii")
    return dict(part.split("=", 1) for part in value.split(";") if part)


def each_signature_alone(data: bytes) -> list[bytes]:
    """One copy of the message per DKIM-Signature, holding only that one (a verifier that reports "some
    signature verified" is then asked about each of them)."""
    fields = signature_fields(data)
    bare = data
    for field in fields:
        bare = bare.replace(field, b"", 1)
    return [field + bare for field in fields]


# --- the verifiers --------------------------------------------------------------------------------------


def dkimpy_verify(data: bytes, records: dict[str, str]) -> list[bool]:
    """dkimpy's verdict on each DKIM-Signature of the message (index 0 = the topmost)."""

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name.decode("ascii").rstrip(".").lower(), "").encode("ascii")

    def verdict(index: int) -> bool:
        try:
            return bool(dkim.DKIM(data).verify(idx=index, dnsfunc=dns))
        except dkim.DKIMException:  # what dkim.verify() turns into False for the first signature
            return False

    return [verdict(index) for index in range(len(signature_fields(data)))]


class OpenDkim:
    """`opendkim-testmsg` in `internet` (tests/netns_support.NetworkNamespace), keys served by a DNS server there."""

    def __init__(self, internet: Any, folder: Path) -> None:
        self.executable = shutil.which("opendkim-testmsg") or OPENDKIM_TESTMSG
        require_executable(self.executable, OPENDKIM_HOW)
        self.internet = internet
        self.spec = folder / "dns.json"
        self.log = folder / "dns-queries.jsonl"
        self.records: dict[str, str] = {}
        self.publish({})
        resolv = folder / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\noptions attempts:2 timeout:2\n", encoding="ascii")
        mounted = internet.run(["mount", "--bind", str(resolv), "/etc/resolv.conf"])
        assert mounted.returncode == 0, f"cannot mount resolv.conf in the namespace: {mounted.stderr}"
        self.server = internet.start(
            [sys.executable, str(DNS_SERVER_SCRIPT), str(self.spec)], wait_for=[("127.0.0.1", 53)]
        )

    def publish(self, records: dict[str, str]) -> None:
        """Serve these TXT records (name → value) from now on (the server reads the file on every query)."""
        self.records = dict(records)
        spec = {"listen": "127.0.0.1", "port": 53, "log": str(self.log), "txt": {k: [v] for k, v in records.items()}}
        self.spec.write_text(json.dumps(spec), encoding="utf-8")

    def check(self, data: bytes) -> subprocess.CompletedProcess[bytes]:
        """Exit 0 when a signature of the message verifies (OpenDKIM's dkim_eom() returned DKIM_STAT_OK)."""
        return subprocess.run(
            self.internet.command([self.executable]), input=data, capture_output=True, timeout=60, check=False
        )

    def verify(self, data: bytes) -> list[bool]:
        """OpenDKIM's verdict on each DKIM-Signature, each checked in a copy holding only that one."""
        return [self.check(alone).returncode == 0 for alone in each_signature_alone(data)]

    def queried(self) -> list[str]:
        if not self.log.exists():
            return []
        return [json.loads(line)["name"] for line in self.log.read_text(encoding="utf-8").splitlines()]

    def stop(self) -> None:
        self.server.stop()

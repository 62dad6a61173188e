"""Which addresses the fetcher may connect to: pure functions, no I/O, tested on their own.

The rule is an allow rule: an address is public when it is globally reachable, and everything else is
refused. A list of ranges to deny can miss one (the old check missed none of the usual suspects but crashed
on every public IPv4 address); an allow rule fails closed on anything it does not know.

- IPv4: `is_global` and not multicast, minus two ranges some Python versions still call global.
- IPv6: inside 2000::/3, the only block IANA allocates for global unicast, and `is_global` (minus the
  documentation block 3fff::/20, which older Pythons call global). The 2000::/3 test alone refuses
  loopback, `::`, ULA fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast ff00::/8,
  IPv4-compatible ::/96, local-use NAT64 64:ff9b:1::/48 and every unassigned block, whatever the Python.
- An IPv6 address that carries an IPv4 address the network would deliver to (IPv4-mapped ::ffff:0:0/96,
  NAT64 64:ff9b::/96, 6to4 2002::/16) is judged by that IPv4 address: ::ffff:127.0.0.1 is loopback.
- Teredo (2001::/32) is refused outright: it reaches a host through a relay and a tunnel, and no feed is
  served from one.

`parse_host_address` reads a URL's host as an address the way the C resolver and browsers do, so
`2130706433`, `0177.0.0.1` and `0x7f.1` are all 127.0.0.1 and are checked (and connected to) as such.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
TEREDO = ipaddress.IPv6Network("2001::/32")

# Not globally reachable (IANA special-purpose registries), yet `is_global` on Python before 3.11.10 /
# 3.12.4 says they are. Listed so the answer does not depend on the Python version.
NOT_GLOBAL_DESPITE_PYTHON: tuple[IPNetwork, ...] = (
    ipaddress.IPv4Network("192.0.0.0/24"),  # IETF protocol assignments (RFC 6890)
    ipaddress.IPv4Network("192.88.99.0/24"),  # the deprecated 6to4 relay anycast (RFC 7526)
    ipaddress.IPv6Network("3fff::/20"),  # documentation (RFC 9637)
)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address a packet to this IPv6 address is delivered to, if any (mapped, NAT64, 6to4)."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour  # None outside 2002::/16


def is_public_address(address: IPAddress) -> bool:
    """True only for a globally reachable unicast address; see the module's docstring for the rule."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return _is_public_ipv4(inner)
    if isinstance(address, ipaddress.IPv4Address):
        return _is_public_ipv4(address)
    if address in TEREDO or address not in IPV6_GLOBAL_UNICAST:
        return False
    return address.is_global and not _in_any(address, NOT_GLOBAL_DESPITE_PYTHON)


def _is_public_ipv4(address: ipaddress.IPv4Address) -> bool:
    # multicast (224/4) is "global" to Python: reachable by many, a server to none
    return address.is_global and not address.is_multicast and not _in_any(address, NOT_GLOBAL_DESPITE_PYTHON)


def _in_any(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in networks if network.version == address.version)


def describe(address: IPAddress) -> str:
    """The address as an error message should name it: `::ffff:7f00:1 (IPv4 127.0.0.1)`."""
    inner = embedded_ipv4(address)
    return f"{address} (IPv4 {inner})" if inner is not None else str(address)


@dataclass(frozen=True)
class AddressPolicy:
    """The fetcher's decision per address: public addresses always; others only when the settings say so."""

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, allow_private: bool, allowed_networks: Iterable[str]) -> AddressPolicy:
        networks = tuple(ipaddress.ip_network(network, strict=False) for network in allowed_networks)
        return cls(allow_private=allow_private, allowed_networks=networks)

    def allows(self, address: IPAddress) -> bool:
        if self.allow_private or is_public_address(address):
            return True
        inner = embedded_ipv4(address)
        candidates = [address] if inner is None else [address, inner]
        return any(_in_any(candidate, self.allowed_networks) for candidate in candidates)


def parse_host_address(host: str) -> IPAddress | None:
    """The address a URL's host spells, or None for a host name.

    Besides the usual forms this reads the numeric spellings `inet_aton` (and so getaddrinfo) and browsers
    accept: one to four parts, each decimal, octal with a leading 0 or hexadecimal with 0x, the last part
    filling the remaining bytes (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`), and a trailing dot."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    parts = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _ipv4_part(part)
        if number is None:
            return None
        numbers.append(number)
    *leading, last = numbers
    if any(n > 0xFF for n in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for position, number in enumerate(leading):
        value += number << (8 * (3 - position))
    return ipaddress.IPv4Address(value)


def _ipv4_part(part: str) -> int | None:
    lowered = part.lower()
    if lowered.startswith("0x"):
        digits, base = lowered[2:], 16
        if not digits:
            return 0
    elif len(lowered) > 1 and lowered.startswith("0"):
        digits, base = lowered[1:], 8
    else:
        digits, base = lowered, 10
    if not digits or not all(c in "0123456789abcdef"[:base] for c in digits):
        return None
    return int(digits, base)

"""The fetcher's address policy on its own (flows/ingest/address_policy.py), and the numeric host spellings through
the real fetcher against a loopback server."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from pathlib import Path

import pytest

from flows.core.errors import UnsafeURLError
from flows.core.settings import Settings, load_settings
from flows.ingest.address_policy import AddressPolicy, describe, embedded_ipv4, is_public_address, parse_host_address
from flows.ingest.fetch import Fetcher
from tests.ingest_support import LoopbackServer, Reply

PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",  # just below 172.16/12
    "172.32.0.0",  # just above it
    "192.167.255.255",
    "198.17.255.255",  # just below the benchmarking 198.18/15
    "198.20.0.0",  # just above it
    "223.255.255.254",  # the last unicast block before multicast
    "2606:4700:10::6",
    "2001:4860:4860::8888",
    "2a00:1450:4001:80b::200e",
    "::ffff:93.184.216.34",  # IPv4-mapped, judged by the IPv4 address
    "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34
    "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
]

NOT_PUBLIC = {
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "10.0.0.1": "RFC 1918",
    "172.16.0.1": "RFC 1918",
    "172.31.255.255": "RFC 1918",
    "192.168.1.1": "RFC 1918",
    "100.64.0.1": "CGNAT 100.64/10",
    "100.127.255.254": "CGNAT 100.64/10",
    "169.254.169.254": "link-local (cloud metadata)",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast (SSDP)",
    "0.0.0.0": "unspecified",
    "0.1.2.3": "this network 0/8",
    "192.0.2.1": "documentation TEST-NET-1",
    "198.51.100.7": "documentation TEST-NET-2",
    "203.0.113.9": "documentation TEST-NET-3",
    "198.18.0.1": "benchmarking 198.18/15",
    "198.19.255.254": "benchmarking 198.18/15",
    "240.0.0.1": "reserved 240/4",
    "255.255.255.255": "limited broadcast",
    "192.0.0.8": "IETF protocol assignments 192.0.0/24",
    "192.88.99.1": "deprecated 6to4 relay anycast",
    "::": "unspecified",
    "::1": "loopback",
    "fe80::1": "link-local",
    "fec0::1": "site-local fec0::/10",
    "feff::1": "site-local fec0::/10",
    "fc00::1": "ULA fc00::/7",
    "fd12:3456:789a::1": "ULA fc00::/7",
    "ff02::1": "multicast",
    "ff0e::1": "global-scope multicast",
    "2001:db8::1": "documentation 2001:db8::/32",
    "3fff::1": "documentation 3fff::/20",
    "::ffff:127.0.0.1": "IPv4-mapped loopback",
    "::ffff:10.0.0.1": "IPv4-mapped RFC 1918",
    "::ffff:169.254.169.254": "IPv4-mapped link-local",
    "::ffff:0.0.0.0": "IPv4-mapped unspecified",
    "64:ff9b::7f00:1": "NAT64 of loopback",
    "64:ff9b::a00:1": "NAT64 of 10.0.0.1",
    "64:ff9b::a9fe:a9fe": "NAT64 of the metadata address",
    "64:ff9b:1::5db8:d822": "local-use NAT64 64:ff9b:1::/48",
    "2002:7f00:1::1": "6to4 of loopback",
    "2002:a00:1::1": "6to4 of 10.0.0.1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo",
    "::7f00:1": "IPv4-compatible (deprecated)",
    "100::1": "discard-only 100::/64",
    "5f00::1": "SRv6 SIDs, outside 2000::/3",
    "4000::1": "unassigned, outside 2000::/3",
}


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_are_allowed(text: str) -> None:
    address = ipaddress.ip_address(text)
    assert is_public_address(address)
    assert AddressPolicy().allows(address)


@pytest.mark.parametrize(("text", "why"), NOT_PUBLIC.items())
def test_non_public_addresses_are_refused_by_default(text: str, why: str) -> None:
    address = ipaddress.ip_address(text)
    assert not is_public_address(address), why
    assert not AddressPolicy().allows(address), why


@pytest.mark.parametrize("text", NOT_PUBLIC)
def test_allow_private_allows_everything(text: str) -> None:
    assert AddressPolicy(allow_private=True).allows(ipaddress.ip_address(text))


def test_allowed_networks_open_exactly_those_networks() -> None:
    policy = AddressPolicy.from_settings(False, ["127.0.0.1/32", "10.1.0.0/16", "fd00::/8"])
    allowed = ["127.0.0.1", "10.1.2.3", "fd00::5", "::ffff:127.0.0.1", "64:ff9b::a01:203"]
    refused = ["127.0.0.2", "10.2.0.1", "fc00::1", "::1", "169.254.169.254", "::ffff:10.2.0.1"]
    assert [policy.allows(ipaddress.ip_address(a)) for a in allowed] == [True] * len(allowed)
    assert [policy.allows(ipaddress.ip_address(a)) for a in refused] == [False] * len(refused)


def test_the_policy_is_built_from_the_settings(project: Path) -> None:
    fetcher = Fetcher(load_settings(fetch_allowed_networks=["192.168.0.0/16"]))
    assert fetcher.address_policy == AddressPolicy(False, (ipaddress.ip_network("192.168.0.0/16"),))
    assert Fetcher(load_settings(allow_private_addresses=True)).address_policy.allow_private
    assert Fetcher(load_settings()).address_policy == AddressPolicy()


def test_embedded_ipv4_and_how_errors_name_an_address() -> None:
    v4 = ipaddress.IPv4Address
    assert embedded_ipv4(ipaddress.ip_address("::ffff:127.0.0.1")) == v4("127.0.0.1")
    assert embedded_ipv4(ipaddress.ip_address("64:ff9b::a00:1")) == v4("10.0.0.1")
    assert embedded_ipv4(ipaddress.ip_address("2002:a00:1::1")) == v4("10.0.0.1")
    assert embedded_ipv4(ipaddress.ip_address("2606:4700:10::6")) is None
    assert embedded_ipv4(v4("127.0.0.1")) is None
    assert describe(ipaddress.ip_address("::ffff:127.0.0.1")) == "::ffff:7f00:1 (IPv4 127.0.0.1)"
    assert describe(v4("10.0.0.1")) == "10.0.0.1"


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("10.0.1", "10.0.0.1"),
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("1572395042", "93.184.216.34"),
        ("::1", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ],
)
def test_numeric_host_spellings_are_read_as_addresses(host: str, address: str) -> None:
    assert parse_host_address(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "host",
    ["example.org", "feeds.frontier-news.com", "1.2.3.09", "4294967296", "256.0.0.1", "1.2.3.4.5", "1..2", "1e3"],
)
def test_host_names_and_invalid_numbers_are_not_addresses(host: str) -> None:
    assert parse_host_address(host) is None


# through the fetcher --------------------------------------------------------------------------------------


def fetch(settings: Settings, url: str) -> int:
    async def run() -> int:
        async with Fetcher(settings) as fetcher:
            return (await fetcher.fetch(url)).status

    return asyncio.run(run())


@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "127.1", "[::ffff:127.0.0.1]"])
def test_every_spelling_of_loopback_is_refused_by_default_and_reaches_it_when_allowed(
    server: LoopbackServer, project: Path, host: str
) -> None:
    """The dotted form and every other spelling get the same answer: refused before connecting by default,
    fetched from 127.0.0.1 when the network is allowed."""
    server.static("/feed.xml", "<rss/>")
    url = f"http://{host}:{server.port}/feed.xml"
    with pytest.raises(UnsafeURLError, match=r"non-public address (127\.0\.0\.1|::ffff:7f00:1 \(IPv4 127\.0\.0\.1\))"):
        fetch(load_settings(fetch_retries=0), url)
    assert server.hits["/feed.xml"] == 0
    assert fetch(load_settings(fetch_retries=0, fetch_allowed_networks=["127.0.0.1/32"]), url) == 200
    assert server.hits["/feed.xml"] == 1


@pytest.mark.parametrize(
    ("target", "address"),
    [
        ("http://2130706434/x", "127.0.0.2"),
        ("http://0x7f.2/x", "127.0.0.2"),
        ("http://0177.0.0.2/x", "127.0.0.2"),
        ("http://10.1/x", "10.0.0.1"),
    ],
)
def test_a_redirect_to_a_numeric_spelling_is_refused(
    server: LoopbackServer, project: Path, target: str, address: str
) -> None:
    server.route("/jump", lambda r: Reply(302, {"Location": target}))
    settings = load_settings(fetch_retries=0, fetch_allowed_networks=["127.0.0.1/32"])
    with pytest.raises(UnsafeURLError, match=rf"non-public address {re.escape(address)} \(redirected to {target}"):
        fetch(settings, server.url("/jump"))
    assert server.hits["/jump"] == 1

"""The SSRF guard on its own: address classes, every literal IPv4 spelling, resolution, and fuzzed hosts.

No test here touches the network: names go through a StaticResolver, under loopback_only().
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aidetect.settings import Settings
from fetch.errors import FetchError
from fetch.netguard import check_host, is_public_address, normalize_host
from tests.httpserver.network import StaticResolver, loopback_only

DEFAULT = Settings(allow_private_networks=False, allowed_networks=[])
RESOLVER = StaticResolver({"public.test": ["93.184.216.34", "2606:2800:220:1::1"], "private.test": ["10.0.0.1"],
                           "mixed.test": ["93.184.216.34", "192.168.1.10"], "mapped.test": ["::ffff:10.1.2.3"],
                           "garbage.test": ["not-an-ip"], "empty.test": []})


@pytest.fixture(autouse=True)
def no_network() -> Iterator[None]:
    with loopback_only():
        yield


@pytest.mark.parametrize("ip", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111",
                                "2a00:1450:4001:80b::200e", "2002:808:808::1", "::ffff:8.8.8.8",
                                "64:ff9b::808:808"])
def test_public_addresses(ip: str) -> None:
    assert is_public_address(ip)
    assert is_public_address(ipaddress.ip_address(ip))


@pytest.mark.parametrize("ip", [
    "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "127.0.0.1", "127.255.255.254", "169.254.169.254",
    "100.64.0.1", "100.127.255.254", "0.0.0.0", "0.1.2.3", "224.0.0.1", "239.255.255.250", "240.0.0.1",
    "255.255.255.255", "198.18.0.1", "192.0.0.170", "192.0.2.1", "198.51.100.1", "203.0.113.1", "192.88.99.1",
    "::1", "::", "fe80::1", "fe80::1%1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "ff0e::1",
    "::ffff:10.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:0.0.0.0", "::127.0.0.1",
    "2002:a00:1::1", "2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "64:ff9b::a00:1",
    "64:ff9b::7f00:1", "64:ff9b:1::808:808", "2001:db8::1", "100::1",
])
def test_non_public_addresses(ip: str) -> None:
    assert not is_public_address(ip)


@pytest.mark.parametrize(("host", "address"), [
    ("127.0.0.1", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
    ("0x7f.0.0.1", "127.0.0.1"), ("0x7F.0X0.0.1", "127.0.0.1"), ("127.1", "127.0.0.1"), ("127.0.1", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"), ("017700000001", "127.0.0.1"), ("127.0.0.1.", "127.0.0.1"), ("0", "0.0.0.0"),
    ("0x", "0.0.0.0"), ("[::1]", "::1"), ("[::ffff:127.0.0.1]", "127.0.0.1"), ("[::ffff:7f00:1]", "127.0.0.1"),
    ("167772161", "10.0.0.1"), ("012.0.0.1", "10.0.0.1"), ("10.1", "10.0.0.1"), ("0xa9fea9fe", "169.254.169.254"),
    ("１２７.０.０.１", "127.0.0.1"),  # full-width digits, mapped by IDNA (UTS 46)
])
def test_every_literal_spelling_is_recognised_and_refused(host: str, address: str) -> None:
    resolver = StaticResolver()
    with pytest.raises(FetchError) as info:
        check_host(host, resolver, DEFAULT)
    assert info.value.code == "blocked_address"
    assert info.value.detail.endswith(f"-> {address} is not a public address")
    assert resolver.calls == []  # a literal is never sent to DNS


def test_allowed_networks_and_private_mode_let_addresses_through() -> None:
    local = Settings(allowed_networks=["127.0.0.0/8", "10.0.0.0/8"], allow_private_networks=False)
    assert check_host("0x7f.1", RESOLVER, local) == [ipaddress.ip_address("127.0.0.1")]
    assert check_host("[::ffff:127.0.0.1]", RESOLVER, local) == [ipaddress.ip_address("127.0.0.1")]
    assert check_host("private.test", RESOLVER, local) == [ipaddress.ip_address("10.0.0.1")]
    with pytest.raises(FetchError, match="192.168.1.10"):
        check_host("mixed.test", RESOLVER, local)
    anything = Settings(allow_private_networks=True, allowed_networks=[])
    assert len(check_host("mixed.test", RESOLVER, anything)) == 2


@pytest.mark.parametrize("host", ["private.test", "mixed.test", "mapped.test", "PRIVATE.TEST.", "[fe80::1]"])
def test_names_with_any_private_address_are_refused(host: str) -> None:
    with pytest.raises(FetchError) as info:
        check_host(host, RESOLVER, DEFAULT)
    assert (info.value.code, info.value.transient) == ("blocked_address", False)


def test_public_names_pass_with_all_their_addresses() -> None:
    assert [str(ip) for ip in check_host("Public.Test", RESOLVER, DEFAULT)] == ["93.184.216.34",
                                                                                 "2606:2800:220:1::1"]


@pytest.mark.parametrize("host", ["nowhere.test", "garbage.test", "empty.test"])
def test_resolution_failures_are_transient_dns_errors(host: str) -> None:
    with pytest.raises(FetchError) as info:
        check_host(host, RESOLVER, DEFAULT)
    assert (info.value.code, info.value.transient) == ("dns_error", True)


def test_a_resolver_that_raises_is_a_dns_error() -> None:
    def broken(host: str) -> list[str]:
        raise TimeoutError("timed out")

    with pytest.raises(FetchError) as info:
        check_host("public.test", broken, DEFAULT)
    assert info.value.code == "dns_error"


@pytest.mark.parametrize(("host", "normal"), [
    ("Example.COM", "example.com"), ("example.com.", "example.com"), ("bücher.example", "xn--bcher-kva.example"),
    ("ÄÖÜ.test", "xn--4ca0bs.test"), ("[::1]", "::1"), ("[0:0:0:0:0:0:0:1]", "::1"),
    ("0x7f.1", "127.0.0.1"), ("under_score.test", "under_score.test"),
])
def test_normalize_host(host: str, normal: str) -> None:
    assert normalize_host(host) == normal


@pytest.mark.parametrize("host", ["", ".", "a..b", "-a.test", "a-.test", "a b.test", "a/b", "a\x00b", "a" * 64,
                                  ("a" * 60 + ".") * 5, "[::1", "1.2.3.4.5", "256.1.1.1", "1.256.1.1", "09.1.1.1",
                                  "4294967296", "0x100000000", "x.123", "::1::", "[::g]", "xn--.test", "\u200b"])
def test_malformed_hosts_are_bad_urls(host: str) -> None:
    with pytest.raises(FetchError) as info:
        check_host(host, RESOLVER, DEFAULT)
    assert info.value.code == "bad_url"


SPELLINGS = {"dec": str, "oct": lambda n: f"0{n:o}", "hex": hex, "HEX": lambda n: f"0X{n:X}"}
PART = st.one_of(
    st.builds(lambda n, how: SPELLINGS[how](n), st.integers(0, 2**32 + 1) | st.integers(0, 256),
              st.sampled_from(sorted(SPELLINGS))),
    st.sampled_from(["0x", "08", "09", "00", "0x0", "", "1e2"]),
)
NUMERIC = st.lists(PART, min_size=1, max_size=5).map(".".join)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(NUMERIC)
def test_every_inet_aton_form_is_parsed_like_inet_aton(host: str) -> None:
    """Whatever the C library would take for an IPv4 address, the guard takes for the same address."""
    try:
        expected = ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        expected = None
    try:
        addresses = check_host(host, RESOLVER, Settings(allow_private_networks=True, allowed_networks=[]))
    except FetchError as exc:
        assert exc.code in {"bad_url", "dns_error"} and expected is None, (host, expected)  # dns_error: a name
    else:
        assert expected is None or addresses == [expected], (host, expected, addresses)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=300), st.from_regex(r"\A[0-9a-fx.\[\]:%]{0,40}\Z"),
                 st.ip_addresses().map(str), st.ip_addresses(v=6).map(lambda ip: f"[{ip}]")))
def test_check_host_raises_nothing_but_fetch_errors(host: str) -> None:
    try:
        addresses = check_host(host, RESOLVER, DEFAULT)
    except FetchError as exc:
        assert exc.code in {"bad_url", "blocked_address", "dns_error"}
    else:
        assert addresses and all(is_public_address(ip) for ip in addresses)


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses())
def test_is_public_address_is_total_and_agrees_with_mapped_forms(ip: ipaddress.IPv4Address | ipaddress.IPv6Address
                                                                 ) -> None:
    public = is_public_address(ip)
    if isinstance(ip, ipaddress.IPv4Address):
        assert is_public_address(ipaddress.IPv6Address(f"::ffff:{ip}")) == public
        assert not public or ip.is_global

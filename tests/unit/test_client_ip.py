"""The client address: the TCP peer, or X-Forwarded-For walked from the right when (and
only when) the peer is a trusted proxy; strict parsing, nothing else believed."""

from __future__ import annotations

import ipaddress

import pytest

from sluicegate.api.asgi import Request
from sluicegate.policy.client_ip import client_address, client_ip
from sluicegate.settings import settings_from_mapping
from sluicegate.settings_auth import parse_networks

LB = parse_networks(["127.0.0.1/32"])
CHAIN = parse_networks(["127.0.0.1/32", "10.9.0.0/16", "2001:db8:ffff::/48"])


def request(peer: str | None, **headers: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/v1/messages",
            "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
            "client": (peer, 50000) if peer is not None else None,
        }
    )


def test_without_trusted_proxies_the_peer_is_the_client_and_no_header_counts() -> None:
    spoof = request("127.0.0.1", x_forwarded_for="10.1.2.3", x_real_ip="10.1.2.4")
    assert client_address(spoof, ()) == "127.0.0.1"
    assert client_address(request("192.0.2.7"), ()) == "192.0.2.7"


def test_an_untrusted_peer_cannot_claim_another_address() -> None:
    assert client_address(request("192.0.2.7", x_forwarded_for="10.1.2.3"), LB) == "192.0.2.7"


def test_a_trusted_peer_forwards_the_client() -> None:
    assert client_address(request("127.0.0.1", x_forwarded_for="10.1.2.3"), LB) == "10.1.2.3"


@pytest.mark.parametrize(
    ("header", "client"),
    [
        # The client prepended a lie; the trusted proxies appended what they saw.
        ("6.6.6.6, 10.1.2.3", "10.1.2.3"),
        ("6.6.6.6, 10.1.2.3, 10.9.0.4", "10.1.2.3"),  # 10.9.0.4 is a trusted inner proxy
        ("10.9.0.5, 10.9.0.4", "10.9.0.5"),  # all trusted: the leftmost
        ("6.6.6.6,10.1.2.3 ,  10.9.0.4", "10.1.2.3"),  # spacing is tolerated
        ("2001:db8::5, 2001:db8:ffff::1", "2001:db8::5"),
        ("::ffff:10.1.2.3", "10.1.2.3"),  # IPv4-mapped IPv6 counts as IPv4
    ],
)
def test_the_chain_is_walked_from_the_right(header: str, client: str) -> None:
    assert client_address(request("127.0.0.1", x_forwarded_for=header), CHAIN) == client


def test_repeated_forwarded_for_headers_are_one_list_in_order() -> None:
    scope_headers = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"10.1.2.3")]
    req = Request(
        {"method": "GET", "path": "/", "headers": scope_headers, "client": ("127.0.0.1", 1)}
    )
    assert client_address(req, LB) == "10.1.2.3"


@pytest.mark.parametrize(
    "header",
    [
        "10.1.2.3:443",  # a port
        "[2001:db8::5]",  # brackets
        "unknown",
        "10.1.2.3,, 10.1.2.4",  # an empty hop
        "10.1.2.3, _hidden",
        "fe80::1%eth0",  # a scoped address
        ",".join(["10.1.2.3"] * 33),  # longer than any real chain
    ],
)
def test_a_malformed_header_leaves_the_peer(header: str) -> None:
    assert client_address(request("127.0.0.1", x_forwarded_for=header), LB) == "127.0.0.1"


def test_other_forwarding_headers_and_host_are_never_read() -> None:
    req = request("127.0.0.1", forwarded="for=10.1.2.3", x_real_ip="10.1.2.3", host="10.1.2.3")
    assert client_address(req, LB) == "127.0.0.1"


def test_an_ipv6_peer_and_an_unknown_peer() -> None:
    assert client_ip(request("::1"), ()) == ipaddress.ip_address("::1")
    assert client_address(request("::ffff:127.0.0.1"), ()) == "127.0.0.1"
    assert client_address(request(None, x_forwarded_for="10.1.2.3"), LB) is None
    assert client_address(request("not-an-ip"), ()) is None


def test_trusted_proxies_setting_is_parsed_strictly() -> None:
    settings = settings_from_mapping({"auth": {"trusted_proxies": ["127.0.0.1/32", "fd00::/8"]}})
    assert settings.auth.trusted_proxies == parse_networks(["127.0.0.1/32", "fd00::/8"])
    for bad in (["10.0.0.5/8"], ["nope"], "127.0.0.1/32"):
        with pytest.raises(Exception, match="trusted_proxies"):
            settings_from_mapping({"auth": {"trusted_proxies": bad}})

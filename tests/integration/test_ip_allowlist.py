"""IP allow-lists per key and per partner against running gateways: the TCP peer when no
proxy is trusted (forwarding headers then count for nothing), X-Forwarded-For walked from
the right behind a trusted proxy, IPv4 and IPv6 networks.

The tests all come from loopback, so they use it cleverly: a list of 10.0.0.0/8 refuses
127.0.0.1; behind ``trusted_proxies: [127.0.0.1/32]`` an ``X-Forwarded-For: 10.1.2.3``
is admitted. The direct gateway listens on every interface (``host: ""``: an IPv4 and an
IPv6 socket), so the same process sees 127.0.0.1 and ::1 peers.

A refused address gets the same 401 as a wrong key and never reaches the upstream.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from sluicegate.crypto.envelope import generate_master_key
from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import Gateway, start_gateway
from tests.integration.auth_support import (
    MESSAGE,
    admin_ok,
    auth_reasons,
    new_signing_key,
    signed_post,
    wrong_key_answer,
)
from tests.integration.test_anthropic_support import JSON_BODY_HEADERS, RawResponse, raw_request

SERVER = {"key_sync_interval": 0.5, "max_body_size": "1MiB", "log_level": "info"}
NOT_ALLOWED = "client address not allowed"


@pytest.fixture(scope="module")
def direct(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(
        tmp_path_factory.mktemp("ip-direct"),
        upstream,
        extra_config={"server": {**SERVER, "host": ""}},
    )
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def proxied(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(
        tmp_path_factory.mktemp("ip-proxied"),
        upstream,
        extra_config={
            "auth": {"trusted_proxies": ["127.0.0.1/32"], "hmac": {"enabled": True}},
            "secrets": {"master_key": "os.environ/TEST_MASTER_KEY"},
        },
        env={"TEST_MASTER_KEY": generate_master_key()},
    )
    yield gateway
    gateway.stop()


def new_key(gateway: Gateway, name: str, **fields: Any) -> str:
    made = admin_ok(gateway, "POST", "/key/generate", {"key_alias": name, **fields})
    key: str = made["key"]
    gateway.keys[name] = key
    return key


def ask(
    gateway: Gateway, key: str, headers: dict[str, str] | None = None, *, ipv6: bool = False
) -> RawResponse:
    base = gateway.url.replace("127.0.0.1", "[::1]") if ipv6 else gateway.url
    sent = {**JSON_BODY_HEADERS, "x-api-key": key, **(headers or {})}
    return raw_request(base, "POST", "/v1/messages", MESSAGE, sent)


def assert_refused(gateway: Gateway, answer: RawResponse) -> None:
    assert (answer.status, answer.body) == (401, wrong_key_answer(gateway).body)
    assert auth_reasons(gateway)[-2] == NOT_ALLOWED  # [-1]: the wrong key just sent


# -- no trusted proxy: the TCP peer is the client ---------------------------------------


def test_key_list_refuses_other_addresses(direct: Gateway, fake: FakeUpstream) -> None:
    key = new_key(direct, "ten-only", allowed_ips=["10.0.0.0/8"])
    assert_refused(direct, ask(direct, key))
    assert_refused(direct, ask(direct, key, ipv6=True))
    assert fake.call_count() == 0


def test_forwarding_headers_from_an_untrusted_peer_are_ignored(
    direct: Gateway, fake: FakeUpstream
) -> None:
    key = new_key(direct, "spoof-target", allowed_ips=["10.0.0.0/8"])
    for headers in (
        {"x-forwarded-for": "10.1.2.3"},
        {"forwarded": "for=10.1.2.3"},
        {"x-real-ip": "10.1.2.3"},
        {"host": "10.1.2.3"},
    ):
        assert_refused(direct, ask(direct, key, headers))
    assert fake.call_count() == 0


def test_loopback_v4_and_v6_lists(direct: Gateway, fake: FakeUpstream) -> None:
    v4 = new_key(direct, "loopback-v4", allowed_ips=["127.0.0.0/8"])
    v6 = new_key(direct, "loopback-v6", allowed_ips=["::1/128"])
    doc = new_key(direct, "documentation-v6", allowed_ips=["2001:db8::/32"])
    both = new_key(direct, "both-families", allowed_ips=["10.0.0.0/8", "::1/128"])
    assert ask(direct, v4).status == 200
    assert_refused(direct, ask(direct, v4, ipv6=True))
    assert ask(direct, v6, ipv6=True).status == 200
    assert_refused(direct, ask(direct, v6))
    assert_refused(direct, ask(direct, doc, ipv6=True))
    assert ask(direct, both, ipv6=True).status == 200
    assert fake.call_count() == 3


def test_partner_list_and_key_list_must_both_admit(direct: Gateway, fake: FakeUpstream) -> None:
    admin_ok(direct, "POST", "/partner/new", {"name": "remote-team", "allowed_ips": ["10.0.0.0/8"]})
    admin_ok(direct, "POST", "/partner/new", {"name": "local-team", "allowed_ips": ["127.0.0.0/8"]})
    remote_member = new_key(direct, "remote-member", partner="remote-team")
    narrower = new_key(direct, "narrower", partner="local-team", allowed_ips=["127.0.0.1/32"])
    disjoint = new_key(direct, "disjoint", partner="local-team", allowed_ips=["10.0.0.0/8"])
    assert_refused(direct, ask(direct, remote_member))  # the partner's list alone refuses
    assert ask(direct, narrower).status == 200
    assert_refused(direct, ask(direct, disjoint))  # the key's list refuses
    assert fake.call_count() == 1
    # A change to the partner's list applies to its keys at once.
    admin_ok(direct, "POST", "/partner/update", {"partner": "remote-team", "allowed_ips": []})
    assert ask(direct, remote_member).status == 200
    admin_ok(
        direct, "POST", "/partner/update", {"partner": "local-team", "allowed_ips": ["::1/128"]}
    )
    assert_refused(direct, ask(direct, narrower))
    assert fake.call_count() == 2


def test_a_list_cleared_admits_anywhere(direct: Gateway, fake: FakeUpstream) -> None:
    key = new_key(direct, "cleared-later", allowed_ips=["10.0.0.0/8"])
    assert_refused(direct, ask(direct, key))
    admin_ok(direct, "POST", "/key/update", {"key_alias": "cleared-later", "allowed_ips": []})
    assert ask(direct, key).status == 200
    assert fake.call_count() == 1


# -- behind a trusted proxy (127.0.0.1): X-Forwarded-For names the client -----------------


@pytest.mark.parametrize(
    ("forwarded_for", "admitted"),
    [
        ("10.1.2.3", True),
        ("6.6.6.6, 10.1.2.3", True),  # the client's own prefix is not believed
        (None, False),  # the proxy itself (127.0.0.1) is not in the list
        ("6.6.6.6", False),
        ("10.1.2.3, 6.6.6.6", False),  # the hop the proxy saw is 6.6.6.6
        ("10.1.2.3:8080", False),  # malformed: the peer counts
        ("10.1.2.3,,", False),
    ],
)
def test_forwarded_for_through_a_trusted_proxy(
    proxied: Gateway, fake: FakeUpstream, forwarded_for: str | None, admitted: bool
) -> None:
    key = proxied.keys.get("behind-proxy") or new_key(
        proxied, "behind-proxy", allowed_ips=["10.0.0.0/8"]
    )
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for is not None else {}
    answer = ask(proxied, key, headers)
    if admitted:
        assert answer.status == 200, answer.body
        assert fake.call_count() == 1
    else:
        assert_refused(proxied, answer)
        assert fake.call_count() == 0


def test_ipv6_network_through_a_trusted_proxy(proxied: Gateway, fake: FakeUpstream) -> None:
    key = new_key(proxied, "v6-client", allowed_ips=["2001:db8::/32"])
    assert ask(proxied, key, {"x-forwarded-for": "2001:db8::5"}).status == 200
    assert_refused(proxied, ask(proxied, key, {"x-forwarded-for": "2001:db9::5"}))
    assert_refused(proxied, ask(proxied, key, {"x-forwarded-for": "10.1.2.3"}))
    assert fake.call_count() == 1


def test_partner_list_through_a_trusted_proxy(proxied: Gateway, fake: FakeUpstream) -> None:
    admin_ok(proxied, "POST", "/partner/new", {"name": "office", "allowed_ips": ["10.8.0.0/16"]})
    key = new_key(proxied, "office-app", partner="office")
    assert ask(proxied, key, {"x-forwarded-for": "10.8.1.1"}).status == 200
    assert_refused(proxied, ask(proxied, key, {"x-forwarded-for": "10.9.1.1"}))
    assert fake.call_count() == 1


def test_signed_requests_honour_the_allow_list(proxied: Gateway, fake: FakeUpstream) -> None:
    new_key(proxied, "signing-office", allowed_ips=["10.0.0.0/8"])
    signing = new_signing_key(proxied, "signing-office")
    assert signed_post(proxied, signing, headers={"x-forwarded-for": "10.1.2.3"}).status == 200
    refused = signed_post(proxied, signing)
    assert (refused.status, refused.body) == (401, wrong_key_answer(proxied).body)
    assert auth_reasons(proxied)[-2] == NOT_ALLOWED
    assert fake.call_count() == 1


def test_the_log_names_the_client_address(proxied: Gateway, fake: FakeUpstream) -> None:
    key = new_key(proxied, "logged-client", allowed_ips=["10.0.0.0/8"])
    ask(proxied, key, {"x-forwarded-for": "192.0.2.44"})
    deadline = time.monotonic() + 5
    while '"client":"192.0.2.44"' not in proxied.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"client":"192.0.2.44"' in proxied.log_text()
    assert key not in proxied.log_text()

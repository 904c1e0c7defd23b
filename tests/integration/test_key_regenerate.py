"""Regenerating, blocking and unblocking keys, and key/partner IP allow-lists, with real SDK
calls against a real gateway: through the admin API (effective before the answer) and the
CLI (effective within ``server.key_sync_interval``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import ADMIN_TOKEN, Gateway, start_gateway
from tests.integration.admin_http import send

GRACE = 3


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(tmp_path_factory.mktemp("regenerate"), upstream)
    yield gateway
    gateway.stop()


def admin(gateway: Gateway, path: str, body: Any) -> tuple[int, Any]:
    status, answer, _ = send(gateway.url, "POST", path, body, token=ADMIN_TOKEN)
    return status, answer


def info(gateway: Gateway, alias: str) -> dict[str, Any]:
    status, answer, _ = send(
        gateway.url, "GET", f"/admin/key/info?key_alias={alias}", token=ADMIN_TOKEN
    )
    assert status == 200
    result: dict[str, Any] = answer
    return result


def works(gateway: Gateway, key: str) -> bool:
    """One real Messages call: True when answered, False when the key is refused (401)."""
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    try:
        message = client.messages.create(
            model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    except anthropic.AuthenticationError as error:
        assert error.status_code == 401
        return False
    assert "You said: hi" in message.content[0].text  # type: ignore[union-attr]
    return True


def eventually(check: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the sync interval"
        time.sleep(0.2)


def test_regenerate_with_a_grace_period(gw: Gateway, fake: FakeUpstream) -> None:
    status, made = admin(gw, "/admin/key/generate", {"key_alias": "rolling", "rpm_limit": 50})
    assert status == 200
    old = made["key"]
    assert works(gw, old)
    status, renewed = admin(gw, "/admin/key/regenerate", {"key": old, "grace_period": GRACE})
    assert status == 200
    new = renewed["key"]
    assert new != old and renewed["key_id"] == made["key_id"] and renewed["rpm_limit"] == 50
    assert renewed["key_hint"] != made["key_hint"]
    assert renewed["previous_key_expires_at"] is not None
    assert works(gw, new) and works(gw, old)  # both, at once: no sync wait
    # The old key still names the key while its grace lasts.
    status, by_old, _ = send(gw.url, "GET", "/admin/key/info?" + f"key={old}", token=ADMIN_TOKEN)
    assert status == 200 and by_old["key_id"] == made["key_id"]
    time.sleep(GRACE + 0.5)
    calls = fake.call_count()
    assert not works(gw, old)
    assert fake.call_count() == calls  # refused before any upstream call
    assert works(gw, new)
    assert info(gw, "rolling")["previous_key_expires_at"] is None


def test_regenerate_without_grace_stops_the_old_key_at_once(gw: Gateway) -> None:
    _, made = admin(gw, "/admin/key/generate", {"key_alias": "abrupt"})
    _, renewed = admin(gw, "/admin/key/regenerate", {"key_alias": "abrupt"})
    assert renewed["previous_key_expires_at"] is None
    assert not works(gw, made["key"]) and works(gw, renewed["key"])


def test_block_and_unblock(gw: Gateway, fake: FakeUpstream) -> None:
    _, made = admin(gw, "/admin/key/generate", {"key_alias": "blockable"})
    key = made["key"]
    status, blocked = admin(gw, "/admin/key/block", {"key": key})
    assert status == 200 and blocked["status"] == "blocked" and blocked["blocked"] is True
    calls = fake.call_count()
    assert not works(gw, key)
    chat = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        chat.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    assert fake.call_count() == calls
    assert info(gw, "blockable")["status"] == "blocked"
    status, unblocked = admin(gw, "/admin/key/unblock", {"key_alias": "blockable"})
    assert status == 200 and unblocked["status"] == "active"
    assert works(gw, key)
    # Revocation is final: no regeneration, blocking or unblocking after it.
    assert admin(gw, "/admin/key/delete", {"key_aliases": ["blockable"]})[0] == 200
    for path in ("/admin/key/regenerate", "/admin/key/block", "/admin/key/unblock"):
        status, answer = admin(gw, path, {"key_alias": "blockable"})
        assert status == 409 and "revoked" in answer["error"]["message"], path
    status, answer = admin(gw, "/admin/key/block", {"key_alias": "no-such-key"})
    assert status == 404 and answer["error"]["type"] == "not_found_error"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"key_alias": "x", "grace_period": -1}, "grace_period"),
        ({"key_alias": "x", "grace_period": 7 * 86400 + 1}, "grace_period"),
        ({"key_alias": "x", "grace_period": "60"}, "grace_period"),
        ({}, "name the key"),
    ],
)
def test_regenerate_refuses_bad_input(gw: Gateway, body: Any, fragment: str) -> None:
    status, answer = admin(gw, "/admin/key/regenerate", body)
    assert status == 400 and fragment in answer["error"]["message"]


def test_allowed_ips_on_keys_and_partners(gw: Gateway) -> None:
    _, fenced = admin(
        gw, "/admin/key/generate", {"key_alias": "fenced", "allowed_ips": ["10.0.0.0/8"]}
    )
    assert fenced["allowed_ips"] == ["10.0.0.0/8"]
    assert not works(gw, fenced["key"])  # the tests connect from 127.0.0.1
    status, opened = admin(
        gw, "/admin/key/update", {"key_alias": "fenced", "allowed_ips": ["127.0.0.0/8", "::1"]}
    )
    assert status == 200 and opened["allowed_ips"] == ["127.0.0.0/8", "::1/128"]
    assert works(gw, fenced["key"])

    walled = {"name": "walled", "allowed_ips": ["192.0.2.0/24"]}
    status, partner = admin(gw, "/admin/partner/new", walled)
    assert status == 200 and partner["allowed_ips"] == ["192.0.2.0/24"]
    _, member = admin(gw, "/admin/key/generate", {"key_alias": "member", "partner": "walled"})
    assert not works(gw, member["key"])  # the partner's list applies to its keys
    status, cleared = admin(gw, "/admin/partner/update", {"partner": "walled", "allowed_ips": None})
    assert status == 200 and cleared["allowed_ips"] == []
    assert works(gw, member["key"])

    for bad in (["10.0.0.1/8"], ["nonsense"], "10.0.0.0/8", [f"10.{n}.0.0/16" for n in range(101)]):
        status, answer = admin(gw, "/admin/key/update", {"key_alias": "fenced", "allowed_ips": bad})
        assert status == 400 and "allowed_ips" in answer["error"]["message"], bad


def test_cli_regenerate_block_unblock_reach_the_running_gateway(gw: Gateway) -> None:
    old = gw.create_key("cli-rolling")
    assert works(gw, old)
    done = gw.cli("keys", "regenerate", "cli-rolling", "--config", str(gw.config), "--grace", "60")
    new = done.stdout.strip()
    assert new.startswith("sk-sg-") and new != old and new not in done.stderr
    assert "the old key works until" in done.stderr
    eventually(lambda: works(gw, new))
    assert works(gw, old)  # in its grace
    gw.cli("keys", "block", "cli-rolling", "--config", str(gw.config))
    eventually(lambda: not works(gw, new))
    assert not works(gw, old)  # a blocked key is refused under its old secret too
    gw.cli("keys", "unblock", "cli-rolling", "--config", str(gw.config))
    eventually(lambda: works(gw, new))
    done = gw.cli("keys", "regenerate", "cli-rolling", "--config", str(gw.config))
    assert "the old key no longer works" in done.stderr
    eventually(lambda: not works(gw, new))

"""The minimal admin API: keys made and revoked on a running instance take effect at once."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import anthropic
import pytest

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import ADMIN_TOKEN, Gateway


def call(
    gateway: Gateway, method: str, path: str, body: Any = None, token: str | None = ADMIN_TOKEN
) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(gateway.url + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    if token is not None:
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def ask(gateway: Gateway, key: str) -> str:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    message = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    return message.content[0].text  # type: ignore[union-attr]


def test_generate_use_list_delete(gateway: Gateway, fake: FakeUpstream) -> None:
    status, made, headers = call(
        gateway, "POST", "/key/generate", {"key_alias": "admin-made", "models": ["claude-*"]}
    )
    assert status == 200 and made["key"].startswith("sk-sg-")
    assert made["key_alias"] == "admin-made" and made["models"] == ["claude-*"]
    assert headers["request-id"].startswith("req_")
    assert "You said: hi" in ask(gateway, made["key"])

    status, listed, _ = call(gateway, "GET", "/key/list")
    assert status == 200
    entry = next(k for k in listed["keys"] if k["key_alias"] == "admin-made")
    assert entry["status"] == "active" and made["key"] not in json.dumps(listed)

    status, deleted, _ = call(gateway, "POST", "/key/delete", {"key_aliases": ["admin-made"]})
    assert status == 200 and deleted["deleted_keys"] == [made["key_id"]]
    # Revoked on this instance before the answer: refused at once, no sync wait.
    calls_before = fake.call_count()
    with pytest.raises(anthropic.AuthenticationError):
        ask(gateway, made["key"])
    assert fake.call_count() == calls_before
    _, listed, _ = call(gateway, "GET", "/key/list")
    assert next(k for k in listed["keys"] if k["key_alias"] == "admin-made")["status"] == "revoked"


def test_delete_by_key_value(gateway: Gateway) -> None:
    _, made, _ = call(gateway, "POST", "/key/generate", {"key_alias": "by-value"})
    status, deleted, _ = call(gateway, "POST", "/key/delete", {"keys": [made["key"]]})
    assert status == 200 and deleted["deleted_keys"] == [made["key_id"]]
    status, body, _ = call(gateway, "POST", "/key/delete", {"keys": ["sk-sg-not-a-real-key"]})
    assert status == 404 and body["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("token", [None, "wrong-token", ADMIN_TOKEN + "x"])
def test_admin_token_required(gateway: Gateway, token: str | None) -> None:
    status, body, headers = call(gateway, "GET", "/key/list", token=token)
    assert status == 401
    assert body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Invalid or missing admin token."},
    }
    assert headers["x-should-retry"] == "false"


def test_gateway_keys_are_not_admin_tokens(gateway: Gateway) -> None:
    status, _, _ = call(gateway, "GET", "/key/list", token=gateway.keys["full"])
    assert status == 401


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "key_alias"),
        ({"key_alias": "x", "models": "claude-*"}, "models"),
        ({"key_alias": "x", "duration": "forever"}, "duration"),
        ({"key_alias": "x", "key": "sk-1234"}, "key:"),
        ({"key_alias": "full"}, "name"),
    ],
)
def test_generate_rejects_bad_input(gateway: Gateway, body: Any, fragment: str) -> None:
    status, answer, _ = call(gateway, "POST", "/key/generate", body)
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"
    assert fragment in answer["error"]["message"]


def test_imported_key_works(gateway: Gateway) -> None:
    value = "imported-" + "Zq8rT2vL0pX5mN7bC4kD9sW1"
    status, made, _ = call(gateway, "POST", "/key/generate", {"key_alias": "imp", "key": value})
    assert status == 200 and made["key"] == value
    assert "You said: hi" in ask(gateway, value)


def test_admin_api_off_without_a_token(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from tests.gateway_harness import start_gateway

    gw = start_gateway(
        tmp_path_factory.mktemp("noadmin"), upstream, extra_config={"admin_token": None}
    )
    try:
        status, body, _ = call(gw, "GET", "/key/list")
        assert status == 403 and body["error"]["type"] == "permission_error"
        assert "admin_token" in body["error"]["message"]
    finally:
        gw.stop()

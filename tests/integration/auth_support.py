"""Helpers shared by the authentication suites (HMAC signing, IP allow-lists): admin calls,
signed requests and the reference refusal. Holds no tests."""

from __future__ import annotations

import json
import secrets
from typing import Any

from sluicegate.policy.hmac_auth import sign_request
from tests.gateway_harness import Gateway
from tests.integration.admin_http import admin
from tests.integration.test_anthropic_support import (
    JSON_BODY_HEADERS,
    RawResponse,
    assert_gateway_error,
    message_body,
    raw_request,
)

MESSAGE = json.dumps(message_body(text="signed")).encode()
CHAT = json.dumps(
    {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}
).encode()


def fresh_message() -> bytes:
    """A body no earlier request had: two signed requests with one body, path and second
    have one signature, and the second is a replay."""
    return json.dumps(message_body(text=f"signed {secrets.token_hex(8)}")).encode()


def fresh_chat() -> bytes:
    content = f"signed {secrets.token_hex(8)}"
    return json.dumps(
        {"model": "claude-sonnet-4-6", "max_tokens": 16,
         "messages": [{"role": "user", "content": content}]}
    ).encode()  # fmt: skip


def admin_ok(gateway: Gateway, method: str, path: str, body: Any = None) -> Any:
    status, answer = admin(gateway, method, path, body)
    assert status == 200, (path, status, answer)
    return answer


def new_signing_key(gateway: Gateway, key_alias: str) -> tuple[str, str]:
    """(signing key id, secret) for gateway key ``key_alias``, through the admin API."""
    made = admin_ok(gateway, "POST", "/key/signing_key/new", {"key_alias": key_alias})
    return made["signing_key_id"], made["secret"]


def signed_post(
    gateway: Gateway,
    signing: tuple[str, str],
    *,
    path: str = "/v1/messages",
    body: bytes | None = None,
    sent_path: str | None = None,
    sent_body: bytes | None = None,
    timestamp: int | None = None,
    headers: dict[str, str] | None = None,
) -> RawResponse:
    """POST ``body`` (default: a fresh message) signed for ``path``; ``sent_*`` send
    something else than was signed."""
    if body is None:
        body = fresh_chat() if path.startswith("/v1/chat") else fresh_message()
    signature = sign_request(signing[0], signing[1], "POST", path, body, timestamp)
    content_type = {"content-type": "application/json"}
    extra = JSON_BODY_HEADERS if not path.startswith("/v1/chat") else content_type
    return raw_request(
        gateway.url,
        "POST",
        sent_path or path,
        body if sent_body is None else sent_body,
        {**extra, **signature, **(headers or {})},
    )


def wrong_key_answer(gateway: Gateway, path: str = "/v1/messages") -> RawResponse:
    """What any refused credential gets on ``path`` (the reference answer)."""
    wrong = "sk-sg-" + secrets.token_urlsafe(32)
    if path.startswith("/v1/chat"):
        headers = {"content-type": "application/json", "authorization": f"Bearer {wrong}"}
        answer = raw_request(gateway.url, "POST", path, CHAT, headers)
        assert answer.status == 401 and answer.json()["error"]["code"] == "invalid_api_key"
        return answer
    answer = raw_request(
        gateway.url, "POST", path, MESSAGE, {**JSON_BODY_HEADERS, "x-api-key": wrong}
    )
    assert_gateway_error(answer, 401, "authentication_error")
    return answer


def auth_reasons(gateway: Gateway) -> list[str]:
    """The refusal reasons the gateway logged, in order."""
    reasons = []
    for line in gateway.log_text().splitlines():
        if '"sluicegate.auth"' in line and line.startswith("{"):
            reason = json.loads(line).get("reason")
            if reason:
                reasons.append(reason)
    return reasons

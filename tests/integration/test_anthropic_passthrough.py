"""Anthropic -> Anthropic passthrough: bodies, headers, credentials, routes and the log line.

When the model alias equals the upstream model id the body must reach the provider byte for
byte (unknown fields, ``system`` array order and ``cache_control``, signed thinking blocks,
number spellings, escapes); with an alias only ``model`` may change.
"""

from __future__ import annotations

import json
import re
import secrets

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from sluicegate.fake_upstream.common import estimate_input_tokens
from tests.gateway_harness import UPSTREAM_KEY, Gateway
from tests.integration.test_anthropic_support import (
    JSON_BODY_HEADERS,
    message_body,
    post_messages,
    post_to_fake,
    raw_request,
    sdk,
    wait_for_log,
)

MESSAGE_ID = re.compile(rb'"id":"msg_01[A-Za-z0-9]+"')


def claude_code_like_body(model: str) -> bytes:
    """A request as a real agent sends it, spelled in ways a re-encoder would change:
    odd spacing and key order, ``1.50``/``1e3`` numbers, raw UTF-8 and ``\\u`` escapes."""
    text = (
        '{"stream":false,  "max_tokens" : 2048,\n'
        f'  "model":"{model}",\n'
        '  "an_unknown_field": {"z": 1, "a": [true, null, 1e3, 1.50]},\n'
        '  "system": [\n'
        '    {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.3"},\n'
        '    {"text": "You are a terse assistant. \u2603 \U0001f680 caf\u00e9",'
        ' "type": "text", "cache_control": {"type": "ephemeral", "ttl": "1h"}},\n'
        '    {"type": "text", "text": "escaped \\ud83d\\ude00 \\u00e9 \\"q\\" \\n"}\n'
        "  ],\n"
        '  "thinking": {"type": "enabled", "budget_tokens": 1024},\n'
        '  "metadata": {"user_id": "user_abc_account__session_7f1c"},\n'
        '  "messages": [\n'
        '    {"role": "user", "content": [{"type": "text", "text": "What is 6\u00d77? \U0001f914",'
        ' "cache_control": {"type": "ephemeral"}}]},\n'
        '    {"role": "assistant", "content": [\n'
        '      {"type": "thinking", "thinking": "Multiply.",'
        ' "signature": "EqQBCkYIBRgCKkDsig=="},\n'
        '      {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},\n'
        '      {"type": "tool_use", "id": "toolu_01A", "name": "calc",'
        ' "input": {"expr": "6*7", "precision": 0}}\n'
        "    ]},\n"
        '    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_01A",'
        ' "content": "42"}]}\n'
        "  ],\n"
        '  "tools": [{"name": "calc", "description": "Evaluate", "input_schema":'
        ' {"type": "object", "properties": {"expr": {"type": "string"}}}}],\n'
        '  "temperature": 1.0\n'
        "}"
    )
    return text.encode("utf-8")


def test_body_reaches_upstream_byte_identical(gateway: Gateway, fake: FakeUpstream) -> None:
    raw = claude_code_like_body("claude-sonnet-4-6")
    response = post_messages(gateway, raw, path="/v1/messages?beta=true")

    assert response.status == 200, response.body
    assert fake.call_count() == 1
    sent = fake.calls[0]
    assert sent.route == "messages"
    assert sent.method == "POST"
    assert sent.body == raw
    # The answer is the provider's, unchanged: compare with a direct call (ids differ).
    reference = post_to_fake(fake, raw)
    assert MESSAGE_ID.sub(b"", response.body) == MESSAGE_ID.sub(b"", reference.body)
    assert response.json()["type"] == "message"


def test_alias_rewrites_only_the_model(gateway: Gateway, fake: FakeUpstream) -> None:
    raw = claude_code_like_body("team-alias")
    response = post_messages(gateway, raw)

    assert response.status == 200, response.body
    assert fake.call_count() == 1
    original = json.loads(raw)
    upstream = json.loads(fake.calls[0].body)
    assert upstream["model"] == "claude-opus-4-7"
    assert list(upstream) == list(original)  # same keys, same order, model in its place
    upstream["model"] = original["model"]
    assert upstream == original
    # Order-sensitive comparison of every nested object (json.dumps keeps dict order).
    assert json.dumps(upstream) == json.dumps(original)
    assert response.json()["model"] == "claude-opus-4-7"


def test_anthropic_headers_forwarded_unchanged(gateway: Gateway, fake: FakeUpstream) -> None:
    betas = "interleaved-thinking-2025-05-14,context-1m-2025-08-07, some-unknown-beta-2099-01-01"
    response = post_messages(
        gateway,
        message_body(),
        headers={"anthropic-version": "2024-10-22", "anthropic-beta": betas},
    )

    assert response.status == 200, response.body
    headers = fake.calls[0].headers
    assert headers["anthropic-version"] == "2024-10-22"
    assert headers["anthropic-beta"] == betas


def test_anthropic_version_defaults_when_the_client_sends_none(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    body = json.dumps(message_body()).encode()
    headers = {"content-type": "application/json", "x-api-key": gateway.keys["full"]}
    response = raw_request(gateway.url, "POST", "/v1/messages", body, headers)

    assert response.status == 200, response.body
    assert fake.calls[0].headers["anthropic-version"] == "2023-06-01"
    assert "anthropic-beta" not in fake.calls[0].headers


def test_sdk_beta_messages_keep_their_beta_header(gateway: Gateway, fake: FakeUpstream) -> None:
    client = sdk(gateway)
    message = client.beta.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=32,
        messages=[{"role": "user", "content": "beta ping"}],
        betas=["interleaved-thinking-2025-05-14", "not-a-real-beta-2030-01-01"],
    )

    assert "beta ping" in message.content[0].text  # type: ignore[union-attr]
    assert fake.call_count() == 1
    sent = fake.calls[0]
    assert sent.headers["anthropic-beta"] == (
        "interleaved-thinking-2025-05-14,not-a-real-beta-2030-01-01"
    )
    assert sent.json["messages"] == [{"role": "user", "content": "beta ping"}]


def _assert_no_client_credential(headers: dict[str, str], *secrets_sent: str) -> None:
    assert headers["x-api-key"] == UPSTREAM_KEY
    assert "authorization" not in headers
    for value in headers.values():
        for secret in secrets_sent:
            assert secret not in value


def test_client_credentials_never_reach_upstream(gateway: Gateway, fake: FakeUpstream) -> None:
    key = gateway.keys["full"]
    garbage = "sk-sg-garbage-" + secrets.token_hex(16)
    variants = [
        {"x-api-key": key},
        {"authorization": f"Bearer {key}"},
        {"x-api-key": key, "authorization": f"Bearer {garbage}"},
        {"x-api-key": garbage, "authorization": f"Bearer {key}"},
    ]
    body = json.dumps(message_body()).encode()
    for credentials in variants:
        fake.reset()
        response = raw_request(
            gateway.url, "POST", "/v1/messages", body, {**JSON_BODY_HEADERS, **credentials}
        )
        assert response.status == 200, (credentials, response.body)
        assert fake.call_count() == 1
        _assert_no_client_credential(fake.calls[0].headers, key, garbage)


def test_prefixed_api_base_keeps_its_path(gateway: Gateway, fake: FakeUpstream) -> None:
    response = post_messages(gateway, message_body("prefixed"))

    assert response.status == 200, response.body
    assert fake.call_count() == 1
    assert fake.calls[0].path == "/some/prefix/v1/messages"
    assert fake.calls[0].json["model"] == "prefixed"


def test_wildcard_route_sends_the_requested_model(gateway: Gateway, fake: FakeUpstream) -> None:
    raw = json.dumps(message_body("claude-haiku-4-5", "background task")).encode()
    response = post_messages(gateway, raw)

    assert response.status == 200, response.body
    assert fake.call_count() == 1
    assert fake.calls[0].body == raw
    assert fake.calls[0].path == "/v1/messages"
    line = wait_for_log(gateway, response.request_id)
    assert line["deployment"] == "claude-*"
    assert line["upstream_model"] == "claude-haiku-4-5"


def test_exact_alias_wins_over_wildcard(gateway: Gateway, fake: FakeUpstream) -> None:
    response = post_messages(gateway, message_body("claude-sonnet-4-6"))

    assert response.status == 200
    line = wait_for_log(gateway, response.request_id)
    assert line["deployment"] == "claude-sonnet-4-6"


def test_count_tokens_forwarded_via_sdk(gateway: Gateway, fake: FakeUpstream) -> None:
    client = sdk(gateway)
    result = client.messages.count_tokens(
        model="claude-sonnet-4-6",
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "How many tokens is this sentence?"}],
    )

    assert fake.call_count("count_tokens") == 1
    assert fake.call_count("messages") == 0
    sent = fake.calls[0]
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.headers["x-api-key"] == UPSTREAM_KEY
    assert result.input_tokens > 0
    assert result.input_tokens == estimate_input_tokens(sent.json)


def test_count_tokens_relays_the_upstream_number(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(route="count_tokens", usage={"input_tokens": 4242}))
    body = {"model": "team-alias", "messages": [{"role": "user", "content": "count me"}]}
    response = post_messages(gateway, body, path="/v1/messages/count_tokens")

    assert response.status == 200, response.body
    assert response.json() == {"input_tokens": 4242}
    assert response.request_id.startswith("req_")
    assert fake.call_count("count_tokens") == 1
    assert fake.calls[0].json["model"] == "claude-opus-4-7"


def test_success_has_request_id_and_log_line_without_secrets(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    upstream_id = "req_upstream" + secrets.token_hex(8)
    fake.script(Behaviour(headers={"request-id": upstream_id}))
    wrong_key = "sk-sg-wrong-" + secrets.token_hex(16)
    response = post_messages(gateway, message_body(text="log me"))
    # A few more requests with every kind of credential, right and wrong.
    post_messages(gateway, message_body(), key=gateway.keys["limited"])
    post_messages(gateway, message_body(), headers={"x-api-key": wrong_key})
    raw_request(
        gateway.url,
        "POST",
        "/v1/messages",
        json.dumps(message_body()).encode(),
        {**JSON_BODY_HEADERS, "authorization": f"Bearer {gateway.keys['full']}"},
    )

    assert response.status == 200
    assert response.request_id.startswith("req_")
    assert response.request_id != upstream_id
    line = wait_for_log(gateway, response.request_id)
    assert line["key_name"] == "full"
    assert line["upstream_request_id"] == upstream_id
    assert line["status"] == 200
    assert line["model"] == "claude-sonnet-4-6"
    assert line["input_tokens"] > 0 and line["output_tokens"] > 0
    log = gateway.log_text()
    for name, value in gateway.keys.items():
        assert value not in log, f"key {name} leaked into the log"
    assert UPSTREAM_KEY not in log
    assert wrong_key not in log

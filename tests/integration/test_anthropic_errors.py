"""Errors on the Anthropic surface: the gateway's own (Anthropic shape, right status, request
id, upstream untouched) and the upstream's (status, body and retry headers relayed as is)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import orjson
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway
from tests.integration.test_anthropic_support import (
    assert_gateway_error,
    key_headers,
    log_entries,
    message_body,
    post_messages,
    raw_request,
    sdk,
    wait_for_log,
)

MiB = 1024 * 1024

VALID = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "x"}],
}


def without(name: str) -> bytes:
    return json.dumps({k: v for k, v in VALID.items() if k != name}).encode()


def with_(**changes: Any) -> bytes:
    return json.dumps({**VALID, **changes}).encode()


INVALID_BODIES = {
    "malformed JSON": b'{"model": "claude-sonnet-4-6", "max_tokens": 16,',
    "empty body": b"",
    "JSON array": b"[]",
    "JSON array of a valid body": b"[" + with_() + b"]",
    "JSON string": b'"hello"',
    "missing model": without("model"),
    "missing max_tokens": without("max_tokens"),
    "missing messages": without("messages"),
    "max_tokens string": with_(max_tokens="100"),
    "max_tokens zero": with_(max_tokens=0),
    "max_tokens negative": with_(max_tokens=-5),
    "max_tokens true": with_(max_tokens=True),
    "max_tokens float": with_(max_tokens=16.5),
    "stream yes": with_(stream="yes"),
    "model number": with_(model=42),
    "model null": with_(model=None),
    "messages string": with_(messages="hi"),
}


@pytest.mark.parametrize("case", list(INVALID_BODIES))
def test_invalid_body_is_refused_before_upstream(
    gateway: Gateway, fake: FakeUpstream, case: str
) -> None:
    response = post_messages(gateway, INVALID_BODIES[case])

    assert_gateway_error(response, 400, "invalid_request_error")
    assert fake.call_count() == 0


def test_sdk_sees_bad_request(gateway: Gateway, fake: FakeUpstream) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        sdk(gateway).messages.create(
            model="claude-sonnet-4-6", max_tokens=0, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert fake.call_count() == 0


def test_count_tokens_needs_no_max_tokens_but_a_model(gateway: Gateway, fake: FakeUpstream) -> None:
    path = "/v1/messages/count_tokens"
    ok = post_messages(gateway, without("max_tokens"), path=path)
    assert ok.status == 200, ok.body
    assert fake.call_count("count_tokens") == 1

    fake.reset()
    for body in (without("model"), without("messages"), b"{nope"):
        assert_gateway_error(post_messages(gateway, body, path=path), 400, "invalid_request_error")
    assert fake.call_count() == 0


def test_unknown_model_is_not_found(gateway: Gateway, fake: FakeUpstream) -> None:
    for key in (gateway.keys["full"], gateway.keys["limited"]):
        response = post_messages(gateway, message_body("gpt-4o"), key=key)
        body = assert_gateway_error(response, 404, "not_found_error")
        assert "gpt-4o" in body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError):
        sdk(gateway).messages.create(
            model="gpt-4o", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert fake.call_count() == 0


def _padded_body(total: int) -> bytes:
    """A valid request of exactly ``total`` bytes (padding in an unknown field)."""
    head = (
        b'{"model":"claude-sonnet-4-6","max_tokens":8,'
        b'"messages":[{"role":"user","content":"x"}],"pad":"'
    )
    tail = b'"}'
    return head + b"a" * (total - len(head) - len(tail)) + tail


def test_body_at_the_limit_passes(gateway: Gateway, fake: FakeUpstream) -> None:
    body = _padded_body(MiB)
    response = post_messages(gateway, body)

    assert response.status == 200, response.body[:300]
    assert fake.call_count() == 1
    assert fake.calls[0].body == body


def test_body_over_the_limit_with_content_length(gateway: Gateway, fake: FakeUpstream) -> None:
    response = post_messages(gateway, _padded_body(MiB + 1))

    assert_gateway_error(response, 413, "request_too_large")
    assert fake.call_count() == 0


def test_body_over_the_limit_chunked(gateway: Gateway, fake: FakeUpstream) -> None:
    body = _padded_body(2 * MiB)

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    headers = key_headers(gateway.keys["full"])
    response = raw_request(gateway.url, "POST", "/v1/messages", chunks(), headers)

    assert_gateway_error(response, 413, "request_too_large")
    assert fake.call_count() == 0


def test_small_chunked_body_is_accepted(gateway: Gateway, fake: FakeUpstream) -> None:
    body = with_()
    pieces = iter([body[:10], body[10:30], body[30:]])
    headers = key_headers(gateway.keys["full"])
    response = raw_request(gateway.url, "POST", "/v1/messages", pieces, headers)

    assert response.status == 200, response.body
    assert fake.calls[0].body == body


RATE_LIMIT_TEXT = (
    "This request would exceed your organization's rate limit of 50,000 input tokens per minute."
)
UPSTREAM_ERRORS = {
    "overloaded": (
        529,
        {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
            "request_id": "req_011CUpstreamOverloaded",
        },
        {},
    ),
    "rate limited": (
        429,
        {"type": "error", "error": {"type": "rate_limit_error", "message": RATE_LIMIT_TEXT}},
        {"retry-after": "7"},
    ),
    "bad request": (
        400,
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "messages.1.content.0.thinking.signature: Field required \u2014 custom",
            },
        },
        {},
    ),
    "server error": (
        500,
        {"type": "error", "error": {"type": "api_error", "message": "Internal server error"}},
        {"x-should-retry": "true"},
    ),
}

SDK_ERROR_CLASSES = {
    529: anthropic.OverloadedError,
    429: anthropic.RateLimitError,
    400: anthropic.BadRequestError,
    500: anthropic.InternalServerError,
}


@pytest.mark.parametrize("case", list(UPSTREAM_ERRORS))
def test_upstream_error_relayed_unmodified(gateway: Gateway, fake: FakeUpstream, case: str) -> None:
    status, body, headers = UPSTREAM_ERRORS[case]
    fake.script(Behaviour(status=status, body=body, headers=headers))
    response = post_messages(gateway, message_body())

    assert response.status == status
    assert response.body == orjson.dumps(body)  # what the fake sent, byte for byte
    assert response.json() == body
    assert response.request_id.startswith("req_")
    for name, value in headers.items():
        assert response.headers.get(name) == value
    assert fake.call_count() == 1  # one deployment, no retry configured


@pytest.mark.parametrize("case", list(UPSTREAM_ERRORS))
def test_upstream_error_reaches_the_sdk(gateway: Gateway, fake: FakeUpstream, case: str) -> None:
    status, body, headers = UPSTREAM_ERRORS[case]
    fake.script(Behaviour(status=status, body=body, headers=headers))
    with pytest.raises(anthropic.APIStatusError) as caught:
        sdk(gateway).messages.create(
            model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )

    assert type(caught.value) is SDK_ERROR_CLASSES[status]
    assert caught.value.status_code == status
    assert caught.value.body == body
    assert fake.call_count() == 1


def test_upstream_error_before_a_stream_keeps_its_status(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    status, body, _ = UPSTREAM_ERRORS["overloaded"]
    fake.script(Behaviour(status=status, body=body))
    response = post_messages(gateway, message_body(stream=True))

    assert response.status == 529
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == body

    fake.script(Behaviour(status=status, body=body))
    client = sdk(gateway)
    with pytest.raises(anthropic.OverloadedError) as caught:  # noqa: SIM117
        with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            stream.get_final_message()
    assert caught.value.body == body


def test_unreachable_upstream_is_bad_gateway(gateway: Gateway, fake: FakeUpstream) -> None:
    started = time.monotonic()
    response = post_messages(gateway, message_body("unreachable"))

    assert_gateway_error(response, 502, "api_error")
    assert time.monotonic() - started < 5
    with pytest.raises(anthropic.InternalServerError) as caught:
        sdk(gateway).messages.create(
            model="unreachable", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 502
    # The gateway's message must not leak the upstream's address.
    assert "127.0.0.1" not in response.body.decode()


def test_upstream_silent_past_first_byte_timeout_is_gateway_timeout(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    fake.script(Behaviour(delay_before_headers=3))
    started = time.monotonic()
    response = post_messages(gateway, message_body("slow-model"))
    elapsed = time.monotonic() - started

    assert_gateway_error(response, 504, "timeout_error")
    assert elapsed < 2.5  # first_byte is 1 s; the upstream would answer after 3 s
    assert fake.call_count() == 1
    assert wait_for_log(gateway, response.request_id)["status"] == 504


def test_unknown_path_is_not_found_in_anthropic_shape(gateway: Gateway) -> None:
    for path in ("/v1/nope", "/v2/messages", "/"):
        response = raw_request(gateway.url, "GET", path, headers=key_headers(gateway.keys["full"]))
        assert_gateway_error(response, 404, "not_found_error")


def test_wrong_method_is_method_not_allowed(gateway: Gateway, fake: FakeUpstream) -> None:
    headers = key_headers(gateway.keys["full"])
    for method, path in (("GET", "/v1/messages"), ("PUT", "/v1/messages"), ("POST", "/v1/models")):
        response = raw_request(gateway.url, method, path, headers=headers)
        assert response.status == 405, (method, path)
        assert_gateway_error(response, 405, "invalid_request_error")
    assert fake.call_count() == 0


@pytest.mark.parametrize("path", ["/health/liveliness", "/health/readiness"])
def test_health_without_auth(gateway: Gateway, path: str) -> None:
    response = raw_request(gateway.url, "GET", path)

    assert response.status == 200
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json(), dict)
    # Probes aren't logged: a request made after them is, and its line is written by then.
    later = raw_request(gateway.url, "GET", "/v1/models", headers=key_headers(gateway.keys["full"]))
    wait_for_log(gateway, later.request_id)
    assert not any(path in json.dumps(e) for e in log_entries(gateway))

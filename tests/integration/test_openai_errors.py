"""Errors on the OpenAI surface: always ``{"error":{"message","type","param","code"}}`` with
the right status, whether the gateway refuses, the Anthropic upstream fails before the
answer, or the stream breaks after it started (then the SDK must raise, never end cleanly)."""

from __future__ import annotations

import json

import openai
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway
from tests.integration.test_anthropic_support import raw_request
from tests.integration.test_openai_support import (
    OPENAI_ERROR_KEYS,
    openai_client,
    parse_openai_sse,
    post_chat,
)

HELLO = [{"role": "user", "content": "hello"}]


def assert_openai_error(body: object) -> dict[str, object]:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict) and set(error) == OPENAI_ERROR_KEYS, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    return error


def test_wrong_key(gateway: Gateway, fake: FakeUpstream) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        openai_client(gateway, key="sk-not-a-gateway-key").chat.completions.create(
            model="claude-sonnet-4-6", messages=HELLO
        )

    assert caught.value.status_code == 401
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == OPENAI_ERROR_KEYS, body
    assert caught.value.code == "invalid_api_key"
    assert fake.call_count() == 0
    raw = post_chat(gateway, {"model": "claude-sonnet-4-6", "messages": HELLO}, key="sk-nope")
    assert raw.status == 401
    assert_openai_error(raw.json())


def test_unknown_model(gateway: Gateway, fake: FakeUpstream) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client(gateway).chat.completions.create(model="no-such-model", messages=HELLO)

    assert caught.value.status_code == 404
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == OPENAI_ERROR_KEYS, body
    assert "no-such-model" in str(body["message"])
    assert fake.call_count() == 0


def test_model_not_allowed_for_key(gateway: Gateway, fake: FakeUpstream) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        openai_client(gateway, key=gateway.keys["limited"]).chat.completions.create(
            model="gpt-4o-mini", messages=HELLO
        )
    assert caught.value.status_code == 403
    assert isinstance(caught.value.body, dict) and set(caught.value.body) == OPENAI_ERROR_KEYS
    assert fake.call_count() == 0


def test_n_above_one_is_refused_naming_n(gateway: Gateway, fake: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client(gateway).chat.completions.create(
            model="claude-sonnet-4-6", messages=HELLO, n=2
        )

    assert caught.value.status_code == 400
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == OPENAI_ERROR_KEYS, body
    assert body["param"] == "n"
    assert body["type"] == "invalid_request_error"
    assert fake.call_count() == 0


def test_malformed_json(gateway: Gateway, fake: FakeUpstream) -> None:
    response = post_chat(gateway, b'{"model": "claude-sonnet-4-6", "messages": [')

    assert response.status == 400
    assert response.headers["content-type"].startswith("application/json")
    error = assert_openai_error(response.json())
    assert error["type"] == "invalid_request_error"
    assert fake.call_count() == 0


def test_missing_messages(gateway: Gateway, fake: FakeUpstream) -> None:
    response = post_chat(gateway, {"model": "claude-sonnet-4-6"})
    assert response.status == 400
    assert assert_openai_error(response.json())["param"] == "messages"
    assert fake.call_count() == 0


def test_upstream_overloaded_is_relayed_in_openai_shape(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    fake.script(
        Behaviour(status=529, error_type="overloaded_error", error_message="Overloaded right now")
    )
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(gateway).chat.completions.create(model="claude-sonnet-4-6", messages=HELLO)

    assert caught.value.status_code == 529
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == OPENAI_ERROR_KEYS, body
    assert body["message"] == "Overloaded right now"  # the upstream's wording is kept
    assert fake.call_count() == 1


def test_upstream_invalid_request_keeps_message(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(
        Behaviour(
            status=400,
            error_type="invalid_request_error",
            error_message="prompt is too long: 300000 tokens > 200000 maximum",
        )
    )
    response = post_chat(gateway, {"model": "claude-sonnet-4-6", "messages": HELLO})

    assert response.status == 400
    error = assert_openai_error(response.json())
    assert error["message"] == "prompt is too long: 300000 tokens > 200000 maximum"
    assert error["type"] == "invalid_request_error"


def test_upstream_rate_limit(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(status=429, error_type="rate_limit_error", error_message="slow down"))
    with pytest.raises(openai.RateLimitError) as caught:
        openai_client(gateway).chat.completions.create(model="claude-sonnet-4-6", messages=HELLO)
    assert caught.value.status_code == 429
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["message"] == "slow down"


def test_upstream_error_on_stream_request_before_first_byte(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    fake.script(Behaviour(status=529, error_type="overloaded_error", error_message="busy"))
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(gateway).chat.completions.create(
            model="claude-sonnet-4-6", messages=HELLO, stream=True
        )
    assert caught.value.status_code == 529
    assert isinstance(caught.value.body, dict) and caught.value.body["message"] == "busy"


def test_mid_stream_upstream_error_raises(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(
        Behaviour(
            text="this answer will not finish",
            error_event_after=3,
            error_type="overloaded_error",
            error_message="Overloaded mid-stream",
        )
    )
    stream = openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    seen = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            seen.append(chunk)
    assert "Overloaded mid-stream" in caught.value.message
    assert all(c.choices[0].finish_reason is None for c in seen if c.choices)


def test_mid_stream_error_wire(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="this answer will not finish", error_event_after=4))
    response = post_chat(
        gateway,
        {"model": "claude-sonnet-4-6", "messages": HELLO, "stream": True},
    )

    assert response.status == 200
    events = parse_openai_sse(response.body)
    errors = [e for e in events if isinstance(e, dict) and "error" in e]
    assert len(errors) == 1
    assert_openai_error(errors[0])
    # Nothing after the error may look like a successful end.
    after = events[events.index(errors[0]) + 1 :]
    assert all(e == "[DONE]" for e in after), after
    finishes = [
        c["choices"][0].get("finish_reason")
        for c in events
        if isinstance(c, dict) and c.get("choices")
    ]
    assert not any(finishes)


def test_stream_cut_raises(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="this answer is cut short by the upstream", cut_after_events=4))
    stream = openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6", messages=HELLO, stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    assert fake.call_count() == 1


def test_stream_cut_wire_has_error_chunk(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="this answer is cut short by the upstream", cut_after_events=4))
    response = post_chat(gateway, {"model": "claude-sonnet-4-6", "messages": HELLO, "stream": True})
    events = parse_openai_sse(response.body)
    errors = [e for e in events if isinstance(e, dict) and "error" in e]
    assert len(errors) == 1, events
    assert_openai_error(errors[0])
    assert json.dumps(errors[0])  # serialisable, as a client would log it


def test_upstream_answer_that_is_not_json(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(body="<html>oops</html>"))
    response = post_chat(gateway, {"model": "claude-sonnet-4-6", "messages": HELLO})
    assert response.status == 502
    assert_openai_error(response.json())


def test_unsupported_parameter_names_it(gateway: Gateway, fake: FakeUpstream) -> None:
    response = post_chat(
        gateway, {"model": "claude-sonnet-4-6", "messages": HELLO, "logprobs": True}
    )
    assert response.status == 400
    assert assert_openai_error(response.json())["param"] == "logprobs"
    assert fake.call_count() == 0


def test_wrong_method_on_chat_path_answers_in_openai_shape(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    response = raw_request(
        gateway.url,
        "GET",
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {gateway.keys['full']}"},
    )
    assert response.status == 405
    assert_openai_error(response.json())

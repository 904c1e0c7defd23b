"""OpenAI SDK -> gateway -> OpenAI(-compatible) upstream: no translation. The upstream gets
the client's body (only ``model`` may change), and the client gets the upstream's answer,
JSON or stream, byte for byte."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import UPSTREAM_KEY, Gateway
from tests.integration.test_anthropic_support import wait_for_log
from tests.integration.test_openai_support import (
    WEATHER_TOOL_OPENAI,
    last_call,
    openai_client,
    parse_openai_sse,
    post_chat,
    post_chat_to_fake,
    without_ids,
)

TOOL_CONTENT: list[dict[str, Any]] = [
    {"type": "text", "text": "Checking \u2600 the weather."},
    {"type": "tool_use", "id": "call_A1", "name": "get_weather", "input": {"city": "Paris"}},
    {"type": "tool_use", "id": "call_B2", "name": "get_weather", "input": {"city": "Rome"}},
]


def client_body(model: str = "gpt-4o-mini", **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello"},
        ],
        "metadata": {"a": "b"},
        "seed": 7,
        "n": 1,
        "logit_bias": {"50256": -100},
        "some_future_field": {"nested": [1, 2.5, None, True]},
        **extra,
    }


def test_body_is_the_clients(gateway: Gateway, fake: FakeUpstream) -> None:
    body = client_body(temperature=1.7, max_completion_tokens=20)
    raw = json.dumps(body).encode()
    fake.script(Behaviour(text="as is"))
    response = post_chat(gateway, raw)

    assert response.status == 200
    assert response.json()["choices"][0]["message"]["content"] == "as is"
    call = last_call(fake)
    assert call.route == "chat_completions"
    assert call.path == "/v1/chat/completions"
    assert call.json == body
    assert call.body == raw  # same model: not even re-encoded
    assert call.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert gateway.keys["full"] not in json.dumps(call.headers)


def test_body_with_model_rewrite(gateway: Gateway, fake: FakeUpstream) -> None:
    body = client_body("quirky-local", max_tokens=20)
    response = post_chat(gateway, body)

    assert response.status == 200
    call = last_call(fake)
    assert call.json == {**body, "model": "llama-3.1-8b"}
    assert list(call.json) == list(body)  # field order kept
    assert call.headers["x-team"] == "gateway-tests"


def test_json_relayed_byte_for_byte(gateway: Gateway, fake: FakeUpstream) -> None:
    raw = json.dumps(client_body(tools=[WEATHER_TOOL_OPENAI])).encode()
    fake.script(
        Behaviour(content=TOOL_CONTENT, usage={"input_tokens": 12, "output_tokens": 9}),
        Behaviour(content=TOOL_CONTENT, usage={"input_tokens": 12, "output_tokens": 9}),
    )
    direct = post_chat_to_fake(fake, raw)
    through = post_chat(gateway, raw)

    assert through.status == direct.status == 200
    assert without_ids(through.body) == without_ids(direct.body)
    completion = openai.types.chat.ChatCompletion.model_validate(through.json())
    calls = completion.choices[0].message.tool_calls
    assert calls is not None and [c.id for c in calls] == ["call_A1", "call_B2"]


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_relayed_byte_for_byte(
    gateway: Gateway, fake: FakeUpstream, include_usage: bool
) -> None:
    """Without include_usage the gateway still asks the upstream for usage (to charge the
    request) and hides it: the client gets the bytes it would have got directly."""
    body = client_body(stream=True, stream_options={"include_usage": include_usage})
    raw = json.dumps(body).encode()
    fake.script(Behaviour(content=TOOL_CONTENT), Behaviour(content=TOOL_CONTENT))
    direct = post_chat_to_fake(fake, raw)
    through = post_chat(gateway, raw)

    assert through.status == 200
    assert through.headers["content-type"].startswith("text/event-stream")
    assert without_ids(through.body) == without_ids(direct.body)
    events = parse_openai_sse(through.body)
    assert events[-1] == "[DONE]"
    usage_chunks = [e for e in events[:-1] if e.get("usage")]
    if include_usage:
        assert len(usage_chunks) == 1 and usage_chunks[0]["choices"] == []
    else:
        assert usage_chunks == []
        assert b'"usage"' not in through.body
    assert last_call(fake).json == {**body, "stream_options": {"include_usage": True}}


def test_stream_with_sdk(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="relayed stream", usage={"input_tokens": 4, "output_tokens": 3}))
    chunks = list(
        openai_client(gateway).chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "relayed stream"
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    assert last_call(fake).json["stream_options"] == {"include_usage": True}


def test_upstream_error_relayed_unmodified(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(
        Behaviour(
            status=429,
            error_type="tokens",
            error_message="Rate limit reached for gpt-4o-mini on tokens per min (TPM).",
        )
    )
    response = post_chat(gateway, client_body())

    assert response.status == 429
    assert response.json() == {
        "error": {
            "message": "Rate limit reached for gpt-4o-mini on tokens per min (TPM).",
            "type": "tokens",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }


def test_mid_stream_upstream_error_raises(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="never finished answer", error_event_after=3))
    stream = openai_client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_stream_cut_raises(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="never finished answer", cut_after_events=2))
    stream = openai_client(gateway).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


def test_mid_stream_error_is_logged(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="never finished answer", error_event_after=3))
    response = post_chat(gateway, client_body(stream=True))
    events = parse_openai_sse(response.body)
    assert any(isinstance(e, dict) and "error" in e for e in events)
    entry = wait_for_log(gateway, response.request_id)
    assert entry.get("error_type"), entry

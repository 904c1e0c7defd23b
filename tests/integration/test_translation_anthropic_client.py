"""Anthropic SDK -> gateway -> OpenAI(-compatible) upstream: Messages requests become Chat
Completions requests (with each deployment's quirks), and answers, streams and errors come
back in Anthropic's shape."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import UPSTREAM_KEY, Gateway
from tests.integration.test_anthropic_support import (
    assert_gateway_error,
    message_body,
    parse_sse,
    post_messages,
)
from tests.integration.test_openai_support import (
    PNG_B64,
    WEATHER_TOOL_ANTHROPIC,
    anthropic_client,
    joined_text,
    last_call,
)

HELLO = [{"role": "user", "content": "hello"}]
TOOL_CONTENT: list[dict[str, Any]] = [
    {"type": "text", "text": "Let me check."},
    {"type": "tool_use", "id": "call_paris", "name": "get_weather", "input": {"city": "Paris"}},
]
PARALLEL_CONTENT: list[dict[str, Any]] = [
    *TOOL_CONTENT,
    {
        "type": "tool_use",
        "id": "call_rome",
        "name": "get_weather",
        "input": {"city": "Rome", "days": [1, 2], "detail": {"wind": True}},
    },
]


def upstream_body(fake: FakeUpstream) -> dict[str, Any]:
    call = last_call(fake)
    assert call.route == "chat_completions", call
    assert call.path == "/v1/chat/completions"
    assert isinstance(call.json, dict)
    return call.json


def tool_uses(message: anthropic.types.Message) -> list[anthropic.types.ToolUseBlock]:
    return [b for b in message.content if b.type == "tool_use"]


def drain_stream(gateway: Gateway, model: str = "gpt-4o-mini") -> None:
    with anthropic_client(gateway).messages.stream(
        model=model, max_tokens=100, messages=HELLO
    ) as stream:
        for _ in stream:
            pass


# -- plain answers ----------------------------------------------------------------------


def test_json_answer(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(
        Behaviour(
            text="Hi from GPT.",
            usage={"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 6},
        )
    )
    message = anthropic_client(gateway).messages.create(
        model="gpt-4o-mini", max_tokens=100, system="Be brief.", messages=HELLO
    )

    assert message.id.startswith("msg_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "gpt-4o-mini"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Hi from GPT."  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    # OpenAI's prompt_tokens (14) counts the 4 cached ones; Anthropic's input_tokens does not.
    assert message.usage.input_tokens == 10
    assert message.usage.cache_read_input_tokens == 4
    assert message.usage.output_tokens == 6

    assert fake.call_count() == 1
    call = last_call(fake)
    assert call.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert "x-api-key" not in call.headers
    assert gateway.keys["full"] not in json.dumps(call.headers)
    body = upstream_body(fake)
    assert body["model"] == "gpt-4o-mini"
    assert body["max_tokens"] == 100
    assert "max_completion_tokens" not in body
    assert body.get("stream") in (None, False)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert joined_text(body["messages"][0]["content"]) == "Be brief."
    assert joined_text(body["messages"][1]["content"]) == "hello"


def test_system_blocks_become_one_leading_system_message(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    anthropic_client(gateway).messages.create(
        model="gpt-4o-mini",
        max_tokens=10,
        system=[{"type": "text", "text": "First rule."}, {"type": "text", "text": "Second rule."}],
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": [{"type": "text", "text": "again"}]},
        ],
        stop_sequences=["END"],
        extra_body={"temperature": 0.3},
    )

    body = upstream_body(fake)
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    system = joined_text(body["messages"][0]["content"])
    assert system.index("First rule.") < system.index("Second rule.")
    assert [joined_text(m["content"]) for m in body["messages"][1:]] == ["hi", "hello", "again"]
    assert body["stop"] in (["END"], "END")
    assert body["temperature"] == 0.3


def test_stream(gateway: Gateway, fake: FakeUpstream) -> None:
    text = "A streamed answer from an OpenAI upstream \u2014 with unicode \U0001f680."
    fake.script(Behaviour(text=text, usage={"input_tokens": 9, "output_tokens": 11}))
    with anthropic_client(gateway).messages.stream(
        model="gpt-4o-mini", max_tokens=100, messages=HELLO
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert streamed == text
    assert final.id.startswith("msg_")
    assert final.model == "gpt-4o-mini"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 11
    assert final.usage.input_tokens == 9

    body = upstream_body(fake)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert last_call(fake).headers.get("accept") == "text/event-stream"


def test_stream_wire_events(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=TOOL_CONTENT))
    response = post_messages(
        gateway,
        message_body("gpt-4o-mini", stream=True, tools=[WEATHER_TOOL_ANTHROPIC]),
    )

    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.body)
    names = [name for name, _ in events if name != "ping"]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    for name, data in events:
        assert data["type"] == name  # Anthropic repeats the event name in the data
    starts = [d for n, d in events if n == "content_block_start"]
    stops = [d for n, d in events if n == "content_block_stop"]
    assert [s["index"] for s in starts] == [0, 1]
    assert [s["index"] for s in stops] == [0, 1]
    assert [s["content_block"]["type"] for s in starts] == ["text", "tool_use"]
    delta = next(d for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert isinstance(delta["usage"]["output_tokens"], int)


# -- tools ------------------------------------------------------------------------------


def test_tools_json(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=TOOL_CONTENT))
    message = anthropic_client(gateway).messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL_ANTHROPIC],
        tool_choice={"type": "auto"},
    )

    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use"]
    assert message.content[0].text == "Let me check."  # type: ignore[union-attr]
    (use,) = tool_uses(message)
    assert use.id == "call_paris"
    assert use.name == "get_weather"
    assert use.input == {"city": "Paris"}

    body = upstream_body(fake)
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": WEATHER_TOOL_ANTHROPIC["description"],
                "parameters": WEATHER_TOOL_ANTHROPIC["input_schema"],
            },
        }
    ]
    assert body["tool_choice"] == "auto"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "any"}, "required"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice(gateway: Gateway, fake: FakeUpstream, choice: Any, expected: Any) -> None:
    anthropic_client(gateway).messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL_ANTHROPIC],
        tool_choice=choice,
    )
    assert upstream_body(fake)["tool_choice"] == expected


def test_tools_stream(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=TOOL_CONTENT))
    with anthropic_client(gateway).messages.stream(
        model="gpt-4o-mini",
        max_tokens=100,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL_ANTHROPIC],
    ) as stream:
        final = stream.get_final_message()

    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert final.content[0].text == "Let me check."  # type: ignore[union-attr]
    (use,) = tool_uses(final)
    assert (use.id, use.name, use.input) == ("call_paris", "get_weather", {"city": "Paris"})


def test_parallel_tools_json(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=PARALLEL_CONTENT))
    message = anthropic_client(gateway).messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        messages=[{"role": "user", "content": "Paris and Rome?"}],
        tools=[WEATHER_TOOL_ANTHROPIC],
    )
    uses = tool_uses(message)
    assert [(u.id, u.input) for u in uses] == [
        ("call_paris", {"city": "Paris"}),
        ("call_rome", {"city": "Rome", "days": [1, 2], "detail": {"wind": True}}),
    ]


def test_parallel_tools_stream(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=PARALLEL_CONTENT))
    with anthropic_client(gateway).messages.stream(
        model="gpt-4o-mini",
        max_tokens=100,
        messages=[{"role": "user", "content": "Paris and Rome?"}],
        tools=[WEATHER_TOOL_ANTHROPIC],
    ) as stream:
        final = stream.get_final_message()

    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    uses = tool_uses(final)
    assert [(u.id, u.name, u.input) for u in uses] == [
        ("call_paris", "get_weather", {"city": "Paris"}),
        ("call_rome", "get_weather", {"city": "Rome", "days": [1, 2], "detail": {"wind": True}}),
    ]
    assert final.stop_reason == "tool_use"


def test_tool_results_become_tool_messages(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="Paris 18C, Rome 21C."))
    message = anthropic_client(gateway).messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        tools=[WEATHER_TOOL_ANTHROPIC],
        messages=[
            {"role": "user", "content": "Paris and Rome?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "call_paris",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "call_rome",
                        "name": "get_weather",
                        "input": {"city": "Rome"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_paris", "content": "18C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "call_rome",
                        "content": [{"type": "text", "text": "21C"}],
                    },
                ],
            },
        ],
    )
    assert message.content[0].text == "Paris 18C, Rome 21C."  # type: ignore[union-attr]

    messages = upstream_body(fake)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool"]
    assistant = messages[1]
    assert joined_text(assistant["content"]) == "Checking."
    calls = assistant["tool_calls"]
    assert [(c["id"], c["type"], c["function"]["name"]) for c in calls] == [
        ("call_paris", "function", "get_weather"),
        ("call_rome", "function", "get_weather"),
    ]
    assert all(isinstance(c["function"]["arguments"], str) for c in calls)
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        {"city": "Paris"},
        {"city": "Rome"},
    ]
    assert [m["tool_call_id"] for m in messages[2:]] == ["call_paris", "call_rome"]
    assert [joined_text(m["content"]) for m in messages[2:]] == ["18C", "21C"]


def test_images(gateway: Gateway, fake: FakeUpstream) -> None:
    anthropic_client(gateway).messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                    },
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )

    content = upstream_body(fake)["messages"][0]["content"]
    assert isinstance(content, list) and len(content) == 2
    assert content[0]["type"] == "image_url"
    assert content[0]["image_url"]["url"] == f"data:image/png;base64,{PNG_B64}"
    assert content[1] == {"type": "text", "text": "What is this?"}


# -- deployment quirks ------------------------------------------------------------------


def test_quirky_local(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="from llama"))
    with anthropic_client(gateway).messages.stream(
        model="quirky-local", max_tokens=77, messages=HELLO
    ) as stream:
        final = stream.get_final_message()

    assert final.content[0].text == "from llama"  # type: ignore[union-attr]
    assert final.model == "quirky-local"
    body = upstream_body(fake)
    assert body["model"] == "llama-3.1-8b"
    assert body["max_completion_tokens"] == 77
    assert "max_tokens" not in body
    assert body["stream"] is True
    assert "stream_options" not in body
    headers = last_call(fake).headers
    assert headers["x-team"] == "gateway-tests"
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_azure_style_auth_header(gateway: Gateway, fake: FakeUpstream) -> None:
    # The fake only accepts Bearer: it answers 401, which is fine here; the point is the
    # header the gateway sent.
    with pytest.raises(anthropic.APIStatusError) as caught:
        anthropic_client(gateway).messages.create(
            model="azure-style", max_tokens=10, messages=HELLO
        )

    headers = last_call(fake).headers
    assert headers["api-key"] == UPSTREAM_KEY
    assert "authorization" not in headers
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error", body
    assert set(body["error"]) >= {"type", "message"}


# -- refusals and failures --------------------------------------------------------------


def test_server_tool_is_refused(gateway: Gateway, fake: FakeUpstream) -> None:
    response = post_messages(
        gateway,
        message_body("gpt-4o-mini", tools=[{"type": "web_search_20250305", "name": "web_search"}]),
    )

    body = assert_gateway_error(response, 400, "invalid_request_error")
    assert "tools" in body["error"]["message"]
    assert fake.call_count() == 0


def test_server_tool_is_refused_sdk(gateway: Gateway, fake: FakeUpstream) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client(gateway).messages.create(
            model="gpt-4o-mini",
            max_tokens=10,
            messages=HELLO,
            tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}],
        )
    assert caught.value.status_code == 400
    assert fake.call_count() == 0


def test_upstream_rate_limit(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(
        Behaviour(
            status=429, route="chat_completions", error_message="Rate limit reached for requests"
        )
    )
    with pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_client(gateway).messages.create(
            model="gpt-4o-mini", max_tokens=10, messages=HELLO
        )

    assert caught.value.status_code == 429
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Rate limit reached for requests"},
    }


def test_upstream_server_error_on_stream_request(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(status=503, route="chat_completions"))
    response = post_messages(gateway, message_body("gpt-4o-mini", stream=True))

    assert response.status == 503
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] in ("overloaded_error", "api_error")
    assert body["error"]["message"] == "The server is overloaded or not ready yet."


def test_mid_stream_failure_raises(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="an answer that will fail midway", error_event_after=3))
    with pytest.raises(anthropic.APIError):
        drain_stream(gateway)


def test_mid_stream_failure_wire(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="an answer that will fail midway", error_event_after=3))
    response = post_messages(gateway, message_body("gpt-4o-mini", stream=True))

    assert response.status == 200
    events = parse_sse(response.body)
    assert events[-1][0] == "error"
    error = events[-1][1]
    assert error["type"] == "error"
    assert isinstance(error["error"]["type"], str) and error["error"]["message"]
    assert "message_stop" not in [name for name, _ in events]


def test_stream_cut_raises(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="an answer that is cut by the upstream", cut_after_events=2))
    response = post_messages(gateway, message_body("gpt-4o-mini", stream=True))
    events = parse_sse(response.body)
    assert events[-1][0] == "error"
    assert "message_stop" not in [name for name, _ in events]

    fake.script(Behaviour(text="an answer that is cut by the upstream", cut_after_events=2))
    with pytest.raises(anthropic.APIError):
        drain_stream(gateway)


def test_count_tokens_is_not_faked(gateway: Gateway, fake: FakeUpstream) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        anthropic_client(gateway).messages.count_tokens(model="gpt-4o-mini", messages=HELLO)

    assert caught.value.status_code == 404
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "not_found_error"
    assert fake.call_count() == 0


def test_tool_only_answer_has_no_empty_text_block(gateway: Gateway, fake: FakeUpstream) -> None:
    only_tool = [{"type": "tool_use", "id": "call_x", "name": "get_weather", "input": {}}]
    fake.script(Behaviour(content=only_tool), Behaviour(content=only_tool))
    client = anthropic_client(gateway)
    message = client.messages.create(
        model="gpt-4o-mini", max_tokens=50, messages=HELLO, tools=[WEATHER_TOOL_ANTHROPIC]
    )
    with client.messages.stream(
        model="gpt-4o-mini", max_tokens=50, messages=HELLO, tools=[WEATHER_TOOL_ANTHROPIC]
    ) as stream:
        final = stream.get_final_message()

    for answer in (message, final):
        assert [b.type for b in answer.content] == ["tool_use"]
        (use,) = tool_uses(answer)
        assert (use.id, use.input) == ("call_x", {})
        assert answer.stop_reason == "tool_use"


def test_length_stop_reason(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="cut", stop_reason="length"))
    message = anthropic_client(gateway).messages.create(
        model="gpt-4o-mini", max_tokens=1, messages=HELLO
    )
    assert message.stop_reason == "max_tokens"


def test_image_url_source(gateway: Gateway, fake: FakeUpstream) -> None:
    anthropic_client(gateway).messages.create(
        model="gpt-4o-mini",
        max_tokens=10,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
                ],
            }
        ],
    )
    content = upstream_body(fake)["messages"][0]["content"]
    assert content[0]["type"] == "image_url"
    assert content[0]["image_url"]["url"] == "https://example.com/a.png"


def test_upstream_error_that_is_not_json(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(status=502, body="Bad Gateway", route="chat_completions"))
    response = post_messages(gateway, message_body("gpt-4o-mini"))
    assert response.status == 502
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "api_error"
    assert "Bad Gateway" in body["error"]["message"]


def test_quirky_local_usage_without_stream_options(gateway: Gateway, fake: FakeUpstream) -> None:
    """The server sends no usage in streams: the client still gets integer counts."""
    fake.script(Behaviour(text="no usage upstream"))
    response = post_messages(gateway, message_body("quirky-local", stream=True))
    events = parse_sse(response.body)
    delta = next(d for n, d in events if n == "message_delta")
    assert isinstance(delta["usage"]["output_tokens"], int)
    assert events[-1][0] == "message_stop"


def test_claude_code_style_request_is_accepted(gateway: Gateway, fake: FakeUpstream) -> None:
    """Prompt-cache marks, metadata and beta headers mean nothing to an OpenAI upstream:
    they must not make the request fail."""
    fake.script(Behaviour(text="ok"))
    body = {
        "model": "gpt-4o-mini",
        "max_tokens": 200,
        "system": [
            {"type": "text", "text": "You are Claude Code."},
            {"type": "text", "text": "Project rules.", "cache_control": {"type": "ephemeral"}},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "list files", "cache_control": {"type": "ephemeral"}}
                ],
            }
        ],
        "tools": [{**WEATHER_TOOL_ANTHROPIC, "cache_control": {"type": "ephemeral"}}],
        "metadata": {"user_id": "user_abc_account_def_session_123"},
        "stream": True,
    }
    response = post_messages(
        gateway,
        body,
        path="/v1/messages?beta=true",
        headers={"anthropic-beta": "prompt-caching-2024-07-31,interleaved-thinking-2025-05-14"},
    )

    assert response.status == 200, response.body
    events = parse_sse(response.body)
    assert events[-1][0] == "message_stop"
    sent = upstream_body(fake)
    assert "cache_control" not in json.dumps(sent)
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]


def test_long_unicode_stream(gateway: Gateway, fake: FakeUpstream) -> None:
    text = "".join(f"{i}: \u00e9\u00e8\u4e2d\u6587\U0001f600 caf\u00e9 " for i in range(400))
    fake.script(Behaviour(text=text))
    with anthropic_client(gateway).messages.stream(
        model="gpt-4o-mini", max_tokens=4000, messages=HELLO
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == text  # type: ignore[union-attr]

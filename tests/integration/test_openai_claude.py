"""OpenAI SDK -> gateway -> Anthropic upstream: answers, streams, tools and images translated
both ways, checked on the client's side (the SDK's objects) and on the upstream's side (the
Anthropic body the fake received)."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway
from tests.integration.test_openai_support import (
    ANTHROPIC_REQUEST_FIELDS,
    PNG_B64,
    WEATHER_TOOL_OPENAI,
    block_texts,
    blocks,
    joined_text,
    last_call,
    openai_client,
    parse_openai_sse,
    post_chat,
)

USAGE = {
    "input_tokens": 10,
    "cache_read_input_tokens": 5,
    "cache_creation_input_tokens": 2,
    "output_tokens": 7,
}
TOOL_CONTENT: list[dict[str, Any]] = [
    {"type": "text", "text": "Let me check."},
    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
]
PARALLEL_CONTENT: list[dict[str, Any]] = [
    *TOOL_CONTENT,
    {
        "type": "tool_use",
        "id": "toolu_2",
        "name": "get_weather",
        "input": {"city": "Rome", "units": "celsius", "days": [1, 2]},
    },
]


def upstream_body(fake: FakeUpstream) -> dict[str, Any]:
    call = last_call(fake)
    assert call.route == "messages", call
    assert call.path.startswith("/v1/messages"), call.path
    body = call.json
    assert isinstance(body, dict)
    # The Anthropic API refuses unknown top-level fields: nothing OpenAI-only may leak.
    assert set(body) <= ANTHROPIC_REQUEST_FIELDS, set(body) - ANTHROPIC_REQUEST_FIELDS
    return body


def accumulate_tool_calls(chunks: list[Any]) -> dict[int, dict[str, str]]:
    """Streamed tool-call deltas folded by ``index``, as OpenAI clients do."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                if delta.id:
                    assert not call["id"], "a tool call id was sent twice"
                    call["id"] = delta.id
                if delta.function is not None:
                    if delta.function.name:
                        call["name"] += delta.function.name
                    if delta.function.arguments:
                        call["arguments"] += delta.function.arguments
    return calls


# -- plain answers ----------------------------------------------------------------------


def test_json_answer_and_usage(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="Bonjour, Paris!", usage=USAGE))
    completion = openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "Say hello to Paris."},
        ],
        max_tokens=50,
    )

    assert completion.id.startswith("chatcmpl-")
    assert completion.object == "chat.completion"
    assert completion.model == "claude-sonnet-4-6"
    assert isinstance(completion.created, int) and completion.created > 0
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == "Bonjour, Paris!"
    assert not choice.message.tool_calls
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 17  # input + cache read + cache write
    assert usage.completion_tokens == 7
    assert usage.total_tokens == 24
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 5

    assert fake.call_count() == 1
    body = upstream_body(fake)
    assert body["model"] == "claude-sonnet-4-6"
    assert body["max_tokens"] == 50
    assert body.get("stream") in (None, False)
    assert (
        block_texts(body["system"]) == ["Be brief.", "Answer in French."]
        or body["system"] == "Be brief.\n\nAnswer in French."
    )
    assert len(body["messages"]) == 1
    assert body["messages"][0]["role"] == "user"
    assert joined_text(body["messages"][0]["content"]) == "Say hello to Paris."
    headers = last_call(fake).headers
    assert "anthropic-version" in headers
    assert gateway.keys["full"] not in json.dumps(headers)


def test_default_max_tokens_and_alias(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="ok"))
    completion = openai_client(gateway).chat.completions.create(
        model="team-alias", messages=[{"role": "user", "content": "hi"}]
    )

    assert completion.model == "team-alias"  # the name the client asked for
    assert completion.choices[0].message.content == "ok"
    body = upstream_body(fake)
    assert body["model"] == "claude-opus-4-7"
    assert body["max_tokens"] == 4096


def test_max_completion_tokens_wins(gateway: Gateway, fake: FakeUpstream) -> None:
    openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": "hi"}],
        max_completion_tokens=33,
    )
    assert upstream_body(fake)["max_tokens"] == 33


def test_turns_alternate_and_keep_their_text(gateway: Gateway, fake: FakeUpstream) -> None:
    openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[
            {"role": "user", "content": "first"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
            {"role": "assistant", "content": "reply"},
            {"role": "system", "content": "Late system note."},
            {"role": "user", "content": "third"},
        ],
        stop=["END"],
        temperature=0.5,
    )

    body = upstream_body(fake)
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user"]
    texts = [block_texts(m["content"]) for m in body["messages"]]
    assert texts == [["first", "second"], ["reply"], ["third"]]
    assert "Late system note." in joined_text(body["system"])
    assert body["stop_sequences"] == ["END"]
    assert body["temperature"] == 0.5


# -- streams ----------------------------------------------------------------------------


def test_stream_with_usage(gateway: Gateway, fake: FakeUpstream) -> None:
    text = "Streaming across the gateway, one delta at a time: \u00e9t\u00e9 \U0001f30a."
    fake.script(Behaviour(text=text, usage=USAGE))
    stream = openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": "stream"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)  # ends cleanly: no exception

    assert len(chunks) >= 4
    assert {c.id for c in chunks} == {chunks[0].id}
    assert chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.model == "claude-sonnet-4-6" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f is not None] == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == 17
    assert last.usage.completion_tokens == 7
    assert last.usage.total_tokens == 24
    assert last.usage.prompt_tokens_details is not None
    assert last.usage.prompt_tokens_details.cached_tokens == 5
    assert all(c.usage is None for c in chunks[:-1])

    body = upstream_body(fake)
    assert body["stream"] is True
    assert last_call(fake).headers.get("accept") == "text/event-stream"


def test_stream_without_usage_has_no_usage_chunk(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="no usage please"))
    chunks = list(
        openai_client(gateway).chat.completions.create(
            model="claude-sonnet-4-6",
            messages=[{"role": "user", "content": "stream"}],
            stream=True,
        )
    )

    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "no usage please"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_wire_format(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="raw bytes"))
    response = post_chat(
        gateway,
        {
            "model": "claude-sonnet-4-6",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )

    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.request_id
    assert b"event:" not in response.body  # OpenAI streams are data-only
    events = parse_openai_sse(response.body)
    assert events[-1] == "[DONE]"
    assert events.count("[DONE]") == 1
    chunks = events[:-1]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1
    assert all("usage" in c for c in chunks)  # null except on the last one, as OpenAI does


def test_length_finish_reason(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="cut sho", stop_reason="max_tokens"))
    completion = openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}], max_tokens=3
    )
    assert completion.choices[0].finish_reason == "length"


# -- tools ------------------------------------------------------------------------------


def test_tools_json(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=TOOL_CONTENT))
    completion = openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL_OPENAI],
        tool_choice="auto",
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].type == "function"
    assert calls[0].id == "toolu_1"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}

    body = upstream_body(fake)
    function = WEATHER_TOOL_OPENAI["function"]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": function["description"],
            "input_schema": function["parameters"],
        }
    ]
    assert body["tool_choice"] == {"type": "auto"}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"type": "tool", "name": "get_weather"},
        ),
    ],
)
def test_tool_choice(gateway: Gateway, fake: FakeUpstream, choice: Any, expected: Any) -> None:
    openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL_OPENAI],
        tool_choice=choice,
    )
    assert upstream_body(fake)["tool_choice"] == expected


def test_tools_stream(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=TOOL_CONTENT))
    chunks = list(
        openai_client(gateway).chat.completions.create(
            model="claude-sonnet-4-6",
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER_TOOL_OPENAI],
            stream=True,
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Let me check."
    calls = accumulate_tool_calls(chunks)
    assert list(calls) == [0]
    assert calls[0]["id"] == "toolu_1"
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert [f for f in finishes if f is not None] == ["tool_calls"]


def test_parallel_tools_json(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=PARALLEL_CONTENT))
    completion = openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": "Paris and Rome?"}],
        tools=[WEATHER_TOOL_OPENAI],
    )

    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert [c.id for c in calls] == ["toolu_1", "toolu_2"]
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"city": "Paris"},
        {"city": "Rome", "units": "celsius", "days": [1, 2]},
    ]


def test_parallel_tools_stream(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=PARALLEL_CONTENT))
    chunks = list(
        openai_client(gateway).chat.completions.create(
            model="claude-sonnet-4-6",
            messages=[{"role": "user", "content": "Paris and Rome?"}],
            tools=[WEATHER_TOOL_OPENAI],
            stream=True,
        )
    )

    calls = accumulate_tool_calls(chunks)
    assert sorted(calls) == [0, 1]
    assert [calls[i]["id"] for i in (0, 1)] == ["toolu_1", "toolu_2"]
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_weather"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert json.loads(calls[1]["arguments"]) == {"city": "Rome", "units": "celsius", "days": [1, 2]}


def test_tool_results_become_one_user_turn(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="Paris 18C, Rome 21C."))
    completion = openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[
            {"role": "user", "content": "Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "toolu_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "21C"},
        ],
        tools=[WEATHER_TOOL_OPENAI],
    )
    assert completion.choices[0].message.content == "Paris 18C, Rome 21C."

    messages = upstream_body(fake)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    uses = blocks(messages[1]["content"])
    assert [b["type"] for b in uses] == ["tool_use", "tool_use"]
    assert [(b["id"], b["name"], b["input"]) for b in uses] == [
        ("toolu_1", "get_weather", {"city": "Paris"}),
        ("toolu_2", "get_weather", {"city": "Rome"}),
    ]
    results = blocks(messages[2]["content"])
    assert [b["type"] for b in results] == ["tool_result", "tool_result"]
    assert [b["tool_use_id"] for b in results] == ["toolu_1", "toolu_2"]
    assert [joined_text(b["content"]) for b in results] == ["18C", "21C"]


# -- images -----------------------------------------------------------------------------


def test_images(gateway: Gateway, fake: FakeUpstream) -> None:
    openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What are these?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
                    },
                ],
            }
        ],
    )

    content = blocks(upstream_body(fake)["messages"][0]["content"])
    assert content[0] == {"type": "text", "text": "What are these?"}
    assert content[1]["type"] == "image"
    assert content[1]["source"] == {"type": "base64", "media_type": "image/png", "data": PNG_B64}
    assert content[2]["type"] == "image"
    assert content[2]["source"] == {"type": "url", "url": "https://example.com/cat.jpg"}
    assert len(content) == 3


def test_raw_json_answer_shape(gateway: Gateway, fake: FakeUpstream) -> None:
    """Fields clients read without an SDK: all present, with OpenAI's types."""
    fake.script(Behaviour(text="shape"))
    response = post_chat(
        gateway, {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        **body["choices"][0]["message"],
        "role": "assistant",
        "content": "shape",
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    assert set(body["usage"]) >= {"prompt_tokens", "completion_tokens", "total_tokens"}
    assert (
        openai.types.chat.ChatCompletion.model_validate(body).choices[0].message.content == "shape"
    )


# -- content the OpenAI shape has no place for -------------------------------------------

THINKING_FIRST: list[dict[str, Any]] = [
    {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqoBCkgIAxABGAIiQL"},
    *PARALLEL_CONTENT,
]


def test_thinking_is_not_content_and_tool_indexes_start_at_zero(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    fake.script(Behaviour(content=THINKING_FIRST), Behaviour(content=THINKING_FIRST))
    client = openai_client(gateway)
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "messages": [{"role": "user", "content": "Paris and Rome?"}],
        "tools": [WEATHER_TOOL_OPENAI],
    }
    completion = client.chat.completions.create(**request)
    chunks = list(client.chat.completions.create(**request, stream=True))

    assert completion.choices[0].message.content == "Let me check."
    calls = completion.choices[0].message.tool_calls
    assert calls is not None and [c.id for c in calls] == ["toolu_1", "toolu_2"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Let me check."
    streamed = accumulate_tool_calls(chunks)
    assert sorted(streamed) == [0, 1]  # OpenAI's own numbering, not Anthropic block indexes
    assert [streamed[i]["id"] for i in (0, 1)] == ["toolu_1", "toolu_2"]


def test_tool_call_only_answer(gateway: Gateway, fake: FakeUpstream) -> None:
    only_tool = [{"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}}]
    fake.script(Behaviour(content=only_tool), Behaviour(content=only_tool))
    client = openai_client(gateway)
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [WEATHER_TOOL_OPENAI],
    }
    completion = client.chat.completions.create(**request)
    chunks = list(client.chat.completions.create(**request, stream=True))

    message = completion.choices[0].message
    assert message.content in (None, "")
    assert message.tool_calls is not None
    assert json.loads(message.tool_calls[0].function.arguments) == {}
    streamed = accumulate_tool_calls(chunks)
    assert json.loads(streamed[0]["arguments"] or "{}") == {}
    assert streamed[0]["id"] == "toolu_9"


def test_refusal_finish_reason(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="I can't help with that.", stop_reason="refusal"))
    completion = openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].finish_reason == "content_filter"


def test_user_becomes_metadata_user_id(gateway: Gateway, fake: FakeUpstream) -> None:
    openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}], user="user-42"
    )
    assert upstream_body(fake)["metadata"] == {"user_id": "user-42"}


def test_tool_message_with_content_parts(gateway: Gateway, fake: FakeUpstream) -> None:
    openai_client(gateway).chat.completions.create(
        model="claude-sonnet-4-6",
        messages=[
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "toolu_1",
                "content": [{"type": "text", "text": "sunny"}],
            },
            {"role": "user", "content": "and tomorrow?"},
        ],
        tools=[WEATHER_TOOL_OPENAI],
    )

    messages = upstream_body(fake)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert blocks(messages[1]["content"]) == [
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
    ]
    last = blocks(messages[2]["content"])
    assert [b["type"] for b in last] == ["tool_result", "text"]  # results come first
    assert joined_text(last[0]["content"]) == "sunny"
    assert last[1]["text"] == "and tomorrow?"


def test_long_unicode_stream(gateway: Gateway, fake: FakeUpstream) -> None:
    text = "".join(f"{i}: \u00e9\u00e8\u4e2d\u6587\U0001f600 caf\u00e9 " for i in range(400))
    fake.script(Behaviour(text=text))
    chunks = list(
        openai_client(gateway).chat.completions.create(
            model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text


def test_empty_messages_refused(gateway: Gateway, fake: FakeUpstream) -> None:
    response = post_chat(gateway, {"model": "claude-sonnet-4-6", "messages": []})
    assert response.status == 400
    assert response.json()["error"]["param"] == "messages"
    assert fake.call_count() == 0

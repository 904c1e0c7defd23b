"""Pure builders of the fake upstream: event order and shapes of both wire formats."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sluicegate.fake_upstream import Behaviour, anthropic_wire, openai_wire
from sluicegate.fake_upstream.common import (
    SseEvent,
    chunk_text,
    estimate_input_tokens,
    last_user_text,
)
from sluicegate.fake_upstream.reply import Reply, plan_reply
from sluicegate.fake_upstream.state import FakeState

REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 100,
    "system": [{"type": "text", "text": "be brief"}],
    "messages": [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "what's the weather?"}]},
    ],
}
MIXED: list[dict[str, Any]] = [
    {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig-1"},
    {"type": "text", "text": "Let me check that for you, one moment."},
    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Zürich"}},
]


def reply_for(**kwargs: Any) -> Reply:
    return plan_reply(Behaviour(**kwargs), REQUEST)


def names(events: list[SseEvent]) -> list[str | None]:
    return [e.event for e in events]


def deltas(events: list[SseEvent], index: int) -> list[dict[str, Any]]:
    return [
        e.data["delta"]
        for e in events
        if isinstance(e.data, dict)
        and e.data.get("type") == "content_block_delta"
        and e.data["index"] == index
    ]


def test_sse_encoding() -> None:
    assert SseEvent("ping", {"type": "ping"}).encode() == b'event: ping\ndata: {"type":"ping"}\n\n'
    assert SseEvent(None, "[DONE]").encode() == b"data: [DONE]\n\n"


def test_default_reply_echoes_last_user_text() -> None:
    reply = reply_for()
    assert reply.text == "Hello from the sluicegate fake upstream. You said: what's the weather?"
    assert reply.stop_reason == "end_turn"
    assert reply.input_tokens == estimate_input_tokens(REQUEST) > 1
    assert last_user_text([{"role": "user", "content": "x" * 500}]) == "x" * 500
    assert (
        len(plan_reply(Behaviour(), {"messages": [{"role": "user", "content": "y" * 500}]}).text)
        < 300
    )


def test_chunk_text_splits_and_rejoins() -> None:
    text = 'Hello, wörld 😀\nline two with "quotes" and more'
    pieces = chunk_text(text)
    assert len(pieces) > 2 and "".join(pieces) == text
    assert chunk_text("ab") == ["a", "b"]
    assert chunk_text("") == [""]


def test_anthropic_text_stream_order_and_usage() -> None:
    reply = reply_for(text="A reply long enough to need several chunks.")
    events = anthropic_wire.stream_events(reply, "msg_x")
    text_deltas = len(deltas(events, 0))
    assert text_deltas >= 2
    assert names(events) == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * text_deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0].data
    assert isinstance(start, dict)
    message = start["message"]
    assert message["content"] == [] and message["stop_reason"] is None
    assert message["usage"]["output_tokens"] == 1
    assert message["usage"]["input_tokens"] == reply.input_tokens
    assert "".join(d["text"] for d in deltas(events, 0)) == reply.text
    final = events[-2].data
    assert isinstance(final, dict)
    assert final["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert final["usage"]["output_tokens"] == reply.output_tokens


def test_anthropic_thinking_text_tool_blocks() -> None:
    reply = reply_for(content=MIXED)
    assert reply.stop_reason == "tool_use"
    events = anthropic_wire.stream_events(reply, "msg_x")
    starts = [e.data for e in events if e.event == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts if isinstance(s, dict)] == [
        "thinking",
        "text",
        "tool_use",
    ]
    thinking = deltas(events, 0)
    assert [d["type"] for d in thinking[:-1]] == ["thinking_delta"] * (len(thinking) - 1)
    assert "".join(d["thinking"] for d in thinking[:-1]) == "The user wants weather."
    assert thinking[-1] == {"type": "signature_delta", "signature": "sig-1"}
    tool = deltas(events, 2)
    assert tool[0] == {"type": "input_json_delta", "partial_json": ""}
    assert len(tool) > 2
    assert json.loads("".join(d["partial_json"] for d in tool)) == {"city": "Zürich"}
    tool_start = starts[2]
    assert isinstance(tool_start, dict)
    assert tool_start["content_block"] == {
        "type": "tool_use",
        "id": "toolu_1",
        "name": "get_weather",
        "input": {},
    }
    # Every block is closed, in order, before message_delta.
    stops = [
        e.data["index"]
        for e in events
        if e.event == "content_block_stop" and isinstance(e.data, dict)
    ]
    assert stops == [0, 1, 2]


def test_anthropic_message_body_and_usage_overrides() -> None:
    reply = reply_for(
        content=MIXED, usage={"cache_read_input_tokens": 50, "cache_creation_input_tokens": 7}
    )
    body = anthropic_wire.message_body(reply, "msg_1")
    assert list(body) == [
        "id",
        "type",
        "role",
        "model",
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
    ]
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["model"] == "claude-sonnet-4-6"
    assert body["content"][2]["input"] == {"city": "Zürich"}
    usage = body["usage"]
    assert usage["cache_read_input_tokens"] == 50
    assert usage["cache_creation_input_tokens"] == 7
    assert usage["cache_creation"]["ephemeral_5m_input_tokens"] == 7
    assert usage["input_tokens"] == reply.input_tokens


def test_missing_ids_and_signatures_are_filled() -> None:
    reply = reply_for(
        content=[
            {"type": "tool_use", "name": "f", "input": {}},
            {"type": "thinking", "thinking": "t"},
        ]
    )
    assert reply.content[0]["id"].startswith("toolu_")
    assert reply.content[1]["signature"]
    assert (
        plan_reply(Behaviour(content=[{"type": "tool_use", "name": "f"}]), REQUEST, "call_")
        .content[0]["id"]
        .startswith("call_")
    )


def test_anthropic_errors() -> None:
    assert anthropic_wire.default_error_type(529) == "overloaded_error"
    assert anthropic_wire.default_error_type(503) == "api_error"
    assert anthropic_wire.default_error_type(429) == "rate_limit_error"
    body = anthropic_wire.error_body("overloaded_error", None, "req_1")
    assert body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": "req_1",
    }
    event = anthropic_wire.error_event()
    assert event.encode().startswith(
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error"'
    )


def test_anthropic_models_page() -> None:
    body = anthropic_wire.models_body(["claude-a", "claude-b", "claude-c"], limit=2)
    assert [m["id"] for m in body["data"]] == ["claude-a", "claude-b"]
    assert body["data"][0]["type"] == "model" and body["data"][0]["display_name"] == "Claude A"
    assert (
        body["has_more"] is True
        and body["first_id"] == "claude-a"
        and body["last_id"] == "claude-b"
    )


def test_openai_completion_body_with_tools() -> None:
    reply = plan_reply(
        Behaviour(content=MIXED[2:], usage={"cache_read_input_tokens": 4}), REQUEST, "call_"
    )
    body = openai_wire.completion_body(reply, "chatcmpl-1", 123)
    assert body["object"] == "chat.completion"
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    call = choice["message"]["tool_calls"][0]
    assert call["id"] == "toolu_1" and call["type"] == "function"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == {"city": "Zürich"}
    usage = body["usage"]
    assert usage["prompt_tokens"] == reply.input_tokens + 4
    assert usage["prompt_tokens_details"]["cached_tokens"] == 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


@pytest.mark.parametrize("include_usage", [True, False])
def test_openai_stream_sequence(include_usage: bool) -> None:
    reply = plan_reply(Behaviour(content=MIXED[1:]), REQUEST, "call_")
    events = openai_wire.stream_events(reply, "chatcmpl-1", 123, include_usage)
    assert events[-1].data == "[DONE]"
    chunks = [e.data for e in events[:-1] if isinstance(e.data, dict)]
    assert all(e.event is None for e in events)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    if include_usage:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
        assert all(c["usage"] is None for c in chunks[:-1])
        chunks = chunks[:-1]
    else:
        assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    body = [c["choices"][0]["delta"] for c in chunks[1:-1]]
    text = "".join(d.get("content", "") for d in body)
    assert text == "Let me check that for you, one moment."
    calls = [tc for d in body for tc in d.get("tool_calls", [])]
    assert calls[0]["id"] == "toolu_1" and calls[0]["function"]["name"] == "get_weather"
    assert all("id" not in c and "name" not in c["function"] for c in calls[1:])
    assert len(calls) > 2 and {c["index"] for c in calls} == {0}
    args = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(args) == {"city": "Zürich"}


def test_openai_errors_and_finish_reasons() -> None:
    assert openai_wire.error_body(401, None, None) == {
        "error": {
            "message": "Incorrect API key provided",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert openai_wire.error_body(529, None, None)["error"]["type"] == "server_error"
    assert openai_wire.finish_reason("max_tokens") == "length"
    assert openai_wire.finish_reason("end_turn") == "stop"
    assert openai_wire.error_chunk().encode().startswith(b'data: {"error":{')


def test_behaviour_from_dict_validates() -> None:
    b = Behaviour.from_dict(
        {"status": 529, "headers": {"retry-after": "0"}, "route": "count_tokens"}
    )
    assert b.status == 529 and b.headers == {"retry-after": "0"}
    assert b.matches("count_tokens") and not b.matches("messages")
    assert Behaviour().matches("messages") and Behaviour().matches("chat_completions")
    assert not Behaviour().matches("count_tokens")
    for bad in (
        {"colour": 1},
        {"status": "500"},
        {"route": "nope"},
        {"content": [{"text": "no type"}]},
        {"chunk_delay": -1},
    ):
        with pytest.raises(ValueError):
            Behaviour.from_dict(bad)


def test_state_takes_first_matching_behaviour() -> None:
    state = FakeState(None)
    counted = Behaviour(route="count_tokens", status=404)
    first, second = Behaviour(text="one"), Behaviour(text="two")
    state.script([counted, first, second])
    assert state.take("messages") is first
    assert state.take("models") is None
    assert state.take("count_tokens") is counted
    assert state.take("chat_completions") is second
    assert state.take("messages") is None

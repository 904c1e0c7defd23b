"""Streaming ``/v1/messages``: SSE relayed intact and unbuffered; every failure after the
first byte becomes an ``event: error`` and the stream ends (never a silent or clean stop);
a client that goes away stops the upstream exchange."""

from __future__ import annotations

import http.client
import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway
from tests.integration.test_anthropic_support import (
    key_headers,
    message_body,
    parse_sse,
    post_messages,
    post_to_fake,
    sdk,
    wait_for_log,
)

MESSAGE_ID = re.compile(rb'"id":"msg_01[A-Za-z0-9]+"')
MIXED_CONTENT: list[dict[str, Any]] = [
    {
        "type": "thinking",
        "thinking": "The user wants weather.\nCheck Paris. \u2600",
        "signature": "EqoBCkgIAxABGAIiQL",
    },
    {"type": "text", "text": 'Let me look that up \U0001f326 \u2014 "quoted"\nnew line.'},
    {
        "type": "tool_use",
        "id": "toolu_01FixedId",
        "name": "get_weather",
        "input": {"city": "Paris", "units": "celsius", "days": [1, 2], "detail": {"wind": True}},
    },
]


def stream_body(model: str = "claude-sonnet-4-6", text: str = "stream please") -> dict[str, Any]:
    return message_body(model, text, stream=True)


def error_events(events: list[tuple[str | None, Any]]) -> list[Any]:
    return [data for name, data in events if name == "error"]


def assert_error_event(data: Any) -> None:
    assert set(data) == {"type", "error"}, data
    assert data["type"] == "error"
    assert isinstance(data["error"]["type"], str) and data["error"]["type"]
    assert isinstance(data["error"]["message"], str) and data["error"]["message"]


def test_stream_headers(gateway: Gateway, fake: FakeUpstream) -> None:
    response = post_messages(gateway, stream_body(), path="/v1/messages?beta=true")

    assert response.status == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.request_id.startswith("req_")
    assert "content-length" not in response.headers
    events = parse_sse(response.body)
    assert events[-1][0] == "message_stop"
    assert fake.call_count() == 1
    assert fake.calls[0].headers["accept"] == "text/event-stream"


def test_stream_bytes_equal_a_direct_call(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=MIXED_CONTENT), Behaviour(content=MIXED_CONTENT))
    raw = json.dumps(stream_body(text="weather?")).encode()
    through_gateway = post_messages(gateway, raw)
    direct = post_to_fake(fake, raw)

    assert through_gateway.status == direct.status == 200
    names = [name for name, _ in parse_sse(through_gateway.body)]
    assert names == [name for name, _ in parse_sse(direct.body)]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("content_block_start") == 3
    assert names.count("content_block_delta") > 10
    # Same data, minus the random message id.
    for (_, ours), (_, reference) in zip(
        parse_sse(through_gateway.body), parse_sse(direct.body), strict=True
    ):
        if ours["type"] == "message_start":
            ours["message"].pop("id")
            reference["message"].pop("id")
        assert ours == reference
    # Byte for byte, apart from the random message id.
    assert MESSAGE_ID.sub(b"", through_gateway.body) == MESSAGE_ID.sub(b"", direct.body)


def test_sdk_stream_text(gateway: Gateway, fake: FakeUpstream) -> None:
    text = "A longer answer, \u00e9\u00e8 \U0001f600, spread over several text deltas."
    fake.script(Behaviour(text=text))
    with sdk(gateway).messages.stream(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) > 1
    assert "".join(pieces) == text
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert fake.calls[0].json["stream"] is True


def test_sdk_stream_tool_use(gateway: Gateway, fake: FakeUpstream) -> None:
    tool = MIXED_CONTENT[2]
    fake.script(Behaviour(content=[{"type": "text", "text": "Checking."}, tool]))
    with sdk(gateway).messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=64,
        messages=[{"role": "user", "content": "weather in Paris"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
    ) as stream:
        final = stream.get_final_message()

    assert final.stop_reason == "tool_use"
    block = final.content[1]
    assert block.type == "tool_use"
    assert block.id == "toolu_01FixedId"
    assert block.name == "get_weather"
    assert block.input == tool["input"]


def test_sdk_stream_thinking_and_signature(gateway: Gateway, fake: FakeUpstream) -> None:
    thinking = MIXED_CONTENT[0]
    fake.script(Behaviour(content=[thinking, {"type": "text", "text": "Sunny."}]))
    with sdk(gateway).messages.stream(
        model="team-alias",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "weather?"}],
    ) as stream:
        final = stream.get_final_message()

    block = final.content[0]
    assert block.type == "thinking"
    assert block.thinking == thinking["thinking"]
    assert block.signature == thinking["signature"]
    assert final.content[1].text == "Sunny."  # type: ignore[union-attr]
    assert fake.calls[0].json["model"] == "claude-opus-4-7"


async def test_stream_is_not_buffered(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="x" * 48, chunk_delay=0.3))  # 10 events, 9 pauses: ~2.7 s
    arrivals: list[tuple[float, str]] = []
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            gateway.url + "/v1/messages",
            data=json.dumps(stream_body()),
            headers=key_headers(gateway.keys["full"]),
        ) as response,
    ):
        assert response.status == 200
        async for line in response.content:
            if line.startswith(b"event:"):
                arrivals.append((time.monotonic() - started, line[6:].strip().decode()))
    total = time.monotonic() - started

    assert arrivals[0][1] == "message_start"
    assert arrivals[-1][1] == "message_stop"
    assert total > 2.0
    assert arrivals[0][0] < total - 1.0, arrivals
    # Events arrive spread over the stream, not in one burst at the end.
    assert arrivals[len(arrivals) // 2][0] < total - 0.6, arrivals


def test_cut_upstream_becomes_error_event(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(cut_after_events=4))
    response = post_messages(gateway, stream_body())  # a clean chunked end, or this raises

    assert response.status == 200
    events = parse_sse(response.body)
    assert [name for name, _ in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta", "error",
    ]  # fmt: skip
    assert_error_event(events[-1][1])
    line = wait_for_log(gateway, response.request_id)
    assert line.get("error_type") == events[-1][1]["error"]["type"]


def test_cut_upstream_raises_in_the_sdk(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(cut_after_events=4))
    received: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as caught:  # noqa: SIM117
        with sdk(gateway).messages.stream(
            model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            for event in stream:
                received.append(event.type)

    assert received[0] == "message_start"
    assert "message_stop" not in received
    assert caught.value.body["type"] == "error"  # type: ignore[index]


@pytest.mark.parametrize("cut", [1, 2, 5, 7])
def test_stream_never_ends_cleanly_after_a_cut(
    gateway: Gateway, fake: FakeUpstream, cut: int
) -> None:
    # "abcdef" streams as 8 events; message_stop is the 8th, so every cut here is mid-message.
    fake.script(Behaviour(text="abcdef", cut_after_events=cut))
    response = post_messages(gateway, stream_body())
    events = parse_sse(response.body)
    names = [name for name, _ in events]

    assert len(names) == cut + 1, names
    assert "message_stop" not in names
    assert names[-1] == "error"
    assert len(error_events(events)) == 1
    assert_error_event(events[-1][1])


def test_drop_after_message_stop_keeps_the_complete_message(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    fake.script(Behaviour(text="abcdef", cut_after_events=8))
    response = post_messages(gateway, stream_body())
    names = [name for name, _ in parse_sse(response.body)]
    assert names[-1] == "message_stop", names

    fake.script(Behaviour(text="abcdef", cut_after_events=8))
    with sdk(gateway).messages.stream(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "abcdef"  # type: ignore[union-attr]


def test_upstream_error_event_is_relayed(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(
        Behaviour(error_event_after=3, error_type="overloaded_error", error_message="Overloaded!")
    )
    response = post_messages(gateway, stream_body())

    events = parse_sse(response.body)
    assert [name for name, _ in events] == ["message_start", "ping", "content_block_start", "error"]
    assert events[-1][1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded!"},
    }
    assert response.body.endswith(
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"Overloaded!"}}\n\n'
    )


def test_upstream_error_event_raises_in_the_sdk(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(error_event_after=3, error_type="overloaded_error"))
    with pytest.raises(anthropic.APIStatusError) as caught:  # noqa: SIM117
        with sdk(gateway).messages.stream(
            model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            stream.get_final_message()

    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_stalled_upstream_stream_times_out(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(stall_after_events=3, stall_seconds=3))
    started = time.monotonic()
    response = post_messages(gateway, stream_body("slow-model"))
    elapsed = time.monotonic() - started

    events = parse_sse(response.body)
    assert [name for name, _ in events] == ["message_start", "ping", "content_block_start", "error"]
    assert_error_event(events[-1][1])
    assert events[-1][1]["error"]["type"] == "timeout_error"
    assert elapsed < 2.8  # idle timeout is 1 s; the stall would end after 3 s


def upstream_connections(fake: FakeUpstream) -> set[int] | None:
    """Client ports of the fake's established TCP connections (Linux ``/proc/net/tcp``).

    The fake does not report a dropped connection, so the kernel's table is the witness.
    """
    table = Path("/proc/net/tcp")
    if not table.exists():
        return None
    ports = set()
    for row in table.read_text().splitlines()[1:]:
        fields = row.split()
        local, remote, state = fields[1], fields[2], fields[3]
        if state == "01" and int(local.rsplit(":", 1)[1], 16) == fake.port:
            ports.add(int(remote.rsplit(":", 1)[1], 16))
    return ports


def test_client_disconnect_stops_the_exchange(gateway: Gateway, fake: FakeUpstream) -> None:
    # ~60 events 0.5 s apart: about 30 s if nobody stopped it.
    fake.script(Behaviour(text="y" * 640, chunk_delay=0.5))
    conn = http.client.HTTPConnection("127.0.0.1", int(gateway.url.rsplit(":", 1)[1]), timeout=10)
    conn.request(
        "POST",
        "/v1/messages",
        body=json.dumps(stream_body()).encode(),
        headers=key_headers(gateway.keys["full"]),
    )
    response = conn.getresponse()
    request_id = response.getheader("request-id") or ""
    seen: list[bytes] = []
    while len(seen) < 2:
        line = response.readline()
        assert line, "stream ended early"
        if line.startswith(b"event:"):
            seen.append(line.strip())
    streaming = upstream_connections(fake)
    disconnected = time.monotonic()
    response.close()
    conn.close()

    assert seen == [b"event: message_start", b"event: ping"]
    # The gateway's log line: the request ends as 499 (client gone) at once, not when the
    # upstream stream would have ended.
    line = wait_for_log(gateway, request_id, timeout=3)
    assert time.monotonic() - disconnected < 3
    assert line["status"] == 499
    assert line["latency_ms"] < 5000
    assert fake.call_count() == 1
    # And the upstream connection that carried the stream is closed (not left streaming
    # into a gateway that no longer reads it, nor parked in the pool).
    if streaming is not None:
        deadline = time.monotonic() + 3
        while not streaming - (upstream_connections(fake) or set()):
            assert time.monotonic() < deadline, "no upstream connection was closed"
            time.sleep(0.05)

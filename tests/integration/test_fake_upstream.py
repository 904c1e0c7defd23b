"""The fake upstream on a real socket, driven by the official SDKs and by raw aiohttp."""

from __future__ import annotations

import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream, run_fake_upstream

KEY = "sk-fake-upstream-test"
ANTHROPIC_HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
TOOL_USE: dict[str, Any] = {
    "type": "tool_use",
    "name": "get_weather",
    "input": {"city": "Paris", "days": [1, 2]},
}
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(api_key=KEY) as server:
        yield server


def claude(fake: FakeUpstream, **kwargs: Any) -> anthropic.AsyncAnthropic:
    kwargs.setdefault("max_retries", 0)
    kwargs.setdefault("api_key", KEY)
    return anthropic.AsyncAnthropic(base_url=fake.url, **kwargs)


def gpt(fake: FakeUpstream, **kwargs: Any) -> openai.AsyncOpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=fake.url + "/v1", api_key=KEY, **kwargs)


def sse_events(raw: bytes) -> list[tuple[str | None, str]]:
    out = []
    for frame in raw.decode().split("\n\n"):
        if not frame.strip():
            continue
        event, data = None, ""
        for line in frame.split("\n"):
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
        out.append((event, data))
    return out


async def read_until_broken(response: aiohttp.ClientResponse) -> tuple[bytes, Exception | None]:
    received = b""
    try:
        async for chunk in response.content.iter_any():
            received += chunk
    except aiohttp.ClientPayloadError as exc:
        return received, exc
    return received, None


# --- Anthropic, official SDK -------------------------------------------------------------


async def test_anthropic_json_message(fake: FakeUpstream) -> None:
    raw = await claude(fake).messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES
    )
    message = await raw.parse()
    assert message.id.startswith("msg_") and message.model == "claude-sonnet-4-6"
    assert message.content[0].type == "text"
    assert message.content[0].text.endswith("You said: What is the weather in Paris?")
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 1 and message.usage.output_tokens > 1
    assert message.usage.cache_read_input_tokens == 0
    assert raw.headers["request-id"].startswith("req_")
    assert int(raw.headers["anthropic-ratelimit-requests-remaining"]) > 0
    assert raw.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
    assert fake.call_count() == fake.call_count("messages") == 1
    call = fake.calls[0]
    assert call.json is not None and call.json["messages"] == MESSAGES
    assert "anthropic-version" in call.headers and call.path == "/v1/messages"


async def test_count_tokens_is_honest_and_matches_usage(fake: FakeUpstream) -> None:
    client = claude(fake)
    fake.script(Behaviour(text="scripted"))  # count_tokens must not consume this
    counted = await client.messages.count_tokens(model="claude-sonnet-4-6", messages=MESSAGES)
    message = await client.messages.create(
        model="claude-sonnet-4-6", max_tokens=9, messages=MESSAGES
    )
    assert counted.input_tokens == message.usage.input_tokens > 0
    assert message.content[0].type == "text" and message.content[0].text == "scripted"
    assert fake.call_count("count_tokens") == 1 and fake.call_count("messages") == 1


async def test_anthropic_stream_text(fake: FakeUpstream) -> None:
    fake.script(
        Behaviour(
            text="Streaming text with émoji 😀 and\nnewlines.",
            usage={"cache_read_input_tokens": 11},
        )
    )
    names: list[str] = []
    async with claude(fake).messages.stream(
        model="claude-haiku-4-5", max_tokens=64, messages=MESSAGES
    ) as stream:
        async for event in stream:
            names.append(event.type)
        final = await stream.get_final_message()
    assert final.content[0].type == "text"
    assert final.content[0].text == "Streaming text with émoji 😀 and\nnewlines."
    assert final.usage.cache_read_input_tokens == 11 and final.usage.output_tokens > 1
    assert names[0] == "message_start" and names[-1] == "message_stop"
    assert names.count("text") >= 2  # the text arrived in several deltas


async def test_anthropic_stream_thinking_and_tool_use(fake: FakeUpstream) -> None:
    fake.script(
        Behaviour(
            content=[
                {"type": "thinking", "thinking": "Need the weather tool.", "signature": "EqQBsig"},
                {"type": "text", "text": "Checking."},
                TOOL_USE,
            ]
        )
    )
    async with claude(fake).messages.stream(
        model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES
    ) as stream:
        final = await stream.get_final_message()
    thinking, text, tool = final.content
    assert thinking.type == "thinking" and thinking.thinking == "Need the weather tool."
    assert thinking.signature == "EqQBsig"
    assert text.type == "text" and text.text == "Checking."
    assert tool.type == "tool_use" and tool.name == "get_weather"
    assert tool.input == {"city": "Paris", "days": [1, 2]} and tool.id.startswith("toolu_")
    assert final.stop_reason == "tool_use"


async def test_anthropic_json_tool_use(fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=[TOOL_USE]))
    message = await claude(fake).messages.create(model="m", max_tokens=5, messages=MESSAGES)
    assert message.stop_reason == "tool_use"
    assert message.content[0].type == "tool_use" and message.content[0].input == TOOL_USE["input"]


async def test_scripted_529_is_an_overloaded_error(fake: FakeUpstream) -> None:
    fake.script(Behaviour(status=529))
    with pytest.raises(anthropic.APIStatusError) as info:
        await claude(fake).messages.create(model="m", max_tokens=5, messages=MESSAGES)
    assert info.value.status_code == 529
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert info.value.response.headers["request-id"] == info.value.body["request_id"]
    assert fake.call_count("messages") == 1


async def test_sdk_retries_follow_script_and_headers(fake: FakeUpstream) -> None:
    fake.script(
        Behaviour(status=529, headers={"retry-after-ms": "5"}), Behaviour(text="second time lucky")
    )
    message = await claude(fake, max_retries=2).messages.create(
        model="m", max_tokens=5, messages=MESSAGES
    )
    assert message.content[0].type == "text" and message.content[0].text == "second time lucky"
    assert fake.call_count("messages") == 2
    fake.script(Behaviour(status=429, headers={"x-should-retry": "false"}))
    with pytest.raises(anthropic.RateLimitError):
        await claude(fake, max_retries=2).messages.create(
            model="m", max_tokens=5, messages=MESSAGES
        )
    assert fake.call_count("messages") == 3


async def test_wrong_key_is_401_and_keeps_the_script(fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="kept"))
    with pytest.raises(anthropic.AuthenticationError) as info:
        await claude(fake, api_key="wrong").messages.create(
            model="m", max_tokens=5, messages=MESSAGES
        )
    assert info.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": info.value.response.headers["request-id"],
    }
    message = await claude(fake).messages.create(model="m", max_tokens=5, messages=MESSAGES)
    assert message.content[0].type == "text" and message.content[0].text == "kept"


async def test_models_in_both_shapes(fake: FakeUpstream) -> None:
    page = await claude(fake).models.list()
    assert [m.id for m in page.data][:2] == ["claude-sonnet-4-6", "claude-opus-4-6"]
    assert page.data[0].type == "model" and page.data[0].display_name
    listed = [m async for m in gpt(fake).models.list()]
    assert listed[0].object == "model" and listed[0].id == "claude-sonnet-4-6"
    assert fake.call_count("models") == 2


# --- OpenAI, official SDK ----------------------------------------------------------------


async def test_openai_json_completion(fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="Bonjour", usage={"cache_read_input_tokens": 3}))
    done = await gpt(fake).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert done.id.startswith("chatcmpl-") and done.object == "chat.completion"
    assert done.choices[0].message.content == "Bonjour"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.prompt_tokens_details is not None
    assert done.usage.prompt_tokens_details.cached_tokens == 3
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    assert fake.call_count("chat_completions") == 1


async def test_openai_stream_with_usage_and_tool_calls(fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=[{"type": "text", "text": "Let me look that up."}, TOOL_USE]))
    stream = await gpt(fake).chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, args, finish, usage = "", "", None, None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                args += (call.function.arguments or "") if call.function else ""
            finish = choice.finish_reason or finish
    assert text == "Let me look that up."
    assert json.loads(args) == TOOL_USE["input"]
    assert finish == "tool_calls"
    assert usage is not None and usage.completion_tokens > 0


async def test_openai_json_tool_calls_and_errors(fake: FakeUpstream) -> None:
    fake.script(Behaviour(content=[TOOL_USE]), Behaviour(status=429, error_message="slow down"))
    client = gpt(fake)
    done = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    calls = done.choices[0].message.tool_calls
    assert calls is not None and calls[0].type == "function"
    assert (
        calls[0].id.startswith("call_")
        and json.loads(calls[0].function.arguments) == TOOL_USE["input"]
    )
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.body == {
        "message": "slow down",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(
            base_url=fake.url + "/v1", api_key="bad", max_retries=0
        ).models.list()


async def test_openai_mid_stream_error_reaches_the_sdk(fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="partial answer that will break", error_event_after=2))
    stream = await gpt(fake).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIError, match="Overloaded"):
        async for _ in stream:
            pass


# --- Raw HTTP: faults, routing, control API ----------------------------------------------


async def test_cut_stream_drops_the_connection(fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="this stream will be cut short", cut_after_events=3))
    body = {"model": "m", "max_tokens": 5, "messages": MESSAGES, "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + "/v1/messages", json=body, headers=ANTHROPIC_HEADERS) as resp,
    ):
        assert resp.status == 200
        received, error = await read_until_broken(resp)
    assert error is not None
    assert [name for name, _ in sse_events(received)] == [
        "message_start",
        "ping",
        "content_block_start",
    ]


async def test_anthropic_error_event_then_end(fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="some words here", error_event_after=4))
    body = {"model": "m", "max_tokens": 5, "messages": MESSAGES, "stream": True}
    async with (
        aiohttp.ClientSession() as session,
        session.post(fake.url + "/v1/messages", json=body, headers=ANTHROPIC_HEADERS) as resp,
    ):
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        received, error = await read_until_broken(resp)
    assert error is None
    events = sse_events(received)
    assert len(events) == 5 and events[-1][0] == "error"
    assert json.loads(events[-1][1]) == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    assert "message_stop" not in [name for name, _ in events]
    # The SDK turns the same event into an exception.
    fake.script(Behaviour(text="some words here", error_event_after=4))
    with pytest.raises(anthropic.APIStatusError, match="overloaded_error"):
        async with claude(fake).messages.stream(
            model="m", max_tokens=5, messages=MESSAGES
        ) as stream:
            await stream.get_final_message()


async def test_stall_and_delay(fake: FakeUpstream) -> None:
    fake.script(
        Behaviour(delay_before_headers=0.2, text="x"),
        Behaviour(text="stalling", stall_after_events=2, stall_seconds=0.3, chunk_delay=0.01),
    )
    client = claude(fake)
    started = time.monotonic()
    await client.messages.create(model="m", max_tokens=5, messages=MESSAGES)
    assert time.monotonic() - started >= 0.2
    arrivals: list[float] = []
    async with client.messages.stream(model="m", max_tokens=5, messages=MESSAGES) as stream:
        async for _ in stream:
            arrivals.append(time.monotonic())
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "stalling"
    assert max(b - a for a, b in itertools.pairwise(arrivals)) >= 0.25


async def test_validation_prefix_query_and_raw_key(fake: FakeUpstream) -> None:
    good = {"model": "m", "max_tokens": 5, "messages": MESSAGES}
    async with aiohttp.ClientSession() as session:
        url = fake.url + "/prefix/v1/messages?beta=true"
        async with session.post(url, json=good, headers=ANTHROPIC_HEADERS) as resp:
            assert resp.status == 200 and (await resp.json())["type"] == "message"
        async with session.post(url, json=good, headers={"x-api-key": KEY}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["type"] == "invalid_request_error"
        async with session.post(url, json={"model": "m"}, headers=ANTHROPIC_HEADERS) as resp:
            assert resp.status == 400 and "max_tokens" in (await resp.json())["error"]["message"]
        both = {**ANTHROPIC_HEADERS, "Authorization": "Bearer other-key"}
        async with session.post(url, json=good, headers=both) as resp:
            assert resp.status == 401
        fake.script(Behaviour(status=502, body="<html>bad gateway</html>"))
        async with session.post(url, json=good, headers=ANTHROPIC_HEADERS) as resp:
            assert resp.status == 502 and await resp.text() == "<html>bad gateway</html>"
    assert fake.calls[0].path == "/prefix/v1/messages?beta=true"
    assert fake.call_count("messages") == 5


async def test_control_api(fake: FakeUpstream) -> None:
    good = {"model": "gpt-4o-mini", "messages": MESSAGES}
    bearer = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession() as session:
        script = [{"text": "from control"}, {"status": 503, "error_message": "down"}]
        async with session.post(fake.url + "/_fake/script", json=script) as resp:
            assert resp.status == 200 and (await resp.json())["queued"] == 2
        async with session.post(
            fake.url + "/v1/chat/completions", json=good, headers=bearer
        ) as resp:
            assert (await resp.json())["choices"][0]["message"]["content"] == "from control"
        async with session.post(
            fake.url + "/v1/chat/completions", json=good, headers=bearer
        ) as resp:
            assert resp.status == 503 and (await resp.json())["error"]["message"] == "down"
        async with session.get(fake.url + "/_fake/calls") as resp:
            calls = await resp.json()
        assert calls["count"] == 2
        assert calls["calls"][0]["route"] == "chat_completions"
        assert calls["calls"][0]["json"] == good
        assert calls["calls"][0]["headers"]["authorization"] == f"Bearer {KEY}"
        async with session.post(fake.url + "/_fake/script", json=[{"stauts": 500}]) as resp:
            assert resp.status == 400 and "stauts" in (await resp.json())["error"]
        async with session.post(fake.url + "/_fake/reset") as resp:
            assert resp.status == 200
        async with session.get(fake.url + "/_fake/calls") as resp:
            assert (await resp.json())["count"] == 0


async def test_client_disconnect_is_quiet(
    fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    fake.script(Behaviour(text="a long answer " * 20, chunk_delay=0.01))
    body = {"model": "m", "max_tokens": 5, "messages": MESSAGES, "stream": True}
    with caplog.at_level(logging.DEBUG, logger="aiohttp"):
        async with aiohttp.ClientSession() as session:
            resp = await session.post(
                fake.url + "/v1/messages", json=body, headers=ANTHROPIC_HEADERS
            )
            await resp.content.readline()
            resp.close()  # drop the connection mid-stream
        message = await claude(fake).messages.create(model="m", max_tokens=5, messages=MESSAGES)
    assert message.content
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# --- Thread helper and the blocking entry point ------------------------------------------


def test_thread_helpers_with_sync_client() -> None:
    server = FakeUpstream(api_key=KEY)
    server.start_in_thread()
    try:
        server.script(Behaviour(text="sync hello"))
        client = anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)
        message = client.messages.create(model="m", max_tokens=5, messages=MESSAGES)
        assert message.content[0].type == "text" and message.content[0].text == "sync hello"
        assert server.call_count("messages") == 1
    finally:
        server.stop_thread()


def test_busy_port_raises_oserror() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            run_fake_upstream("127.0.0.1", taken.getsockname()[1], None)


def test_run_fake_upstream_as_subprocess() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    code = (
        "from sluicegate.fake_upstream import run_fake_upstream;"
        "run_fake_upstream('127.0.0.1', 0, 'k')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stderr=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("fake upstream listening on http://127.0.0.1:")
        url = line.split()[-1]
        client = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
        assert client.messages.count_tokens(model="m", messages=MESSAGES).input_tokens > 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0

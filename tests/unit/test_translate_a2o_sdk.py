"""The official anthropic SDK as judge: an Anthropic client served by an OpenAI upstream.

A mock transport plays gateway + upstream in process: the SDK's real request body goes
through ``anthropic_to_openai_request``, a scripted OpenAI answer comes back through
``openai_to_anthropic_response`` or the stream machine. The SDK is a test dependency only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pydantic
import pytest
from anthropic.types import message_create_params
from anthropic.types.beta import message_create_params as beta_create_params

from sluicegate.translate.a2o_request import (
    TOOL_FIELDS,
    TOP_LEVEL_FIELDS,
    anthropic_to_openai_request,
)
from sluicegate.translate.o2a_response import openai_to_anthropic_response
from sluicegate.translate.quirks import OpenAIQuirks
from sluicegate.translate.stream_o2a import OpenAIToAnthropicStream

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "translate" / "anthropic_to_openai"
Upstream = Callable[[dict[str, Any]], dict[str, Any]]


def sdk_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the SDK reads it, with every field (defaults filled) for comparison."""
    dumped: dict[str, Any] = anthropic.types.Message.model_validate(message).model_dump()
    return dumped


def client_for(answer: Callable[[httpx2.Request], httpx2.Response]) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="test",
        base_url="http://gateway.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )


def sdk_stream_message(body: bytes) -> dict[str, Any]:
    """Feed SSE bytes to ``client.messages.stream`` as the gateway's answer.

    Returns the final message (as :func:`sdk_message`), or the error body the SDK raised."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    try:
        with client_for(answer).messages.stream(
            model="claude-sonnet-4-6", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            final = stream.get_final_message()
    except anthropic.APIStatusError as error:
        assert isinstance(error.body, dict)
        return error.body
    return sdk_message(final.to_dict())


def gateway(upstream: Upstream, seen: list[dict[str, Any]]) -> anthropic.Anthropic:
    """An SDK client whose requests are translated, answered by ``upstream`` (an OpenAI
    completion for the translated body) and translated back: JSON, or SSE when streaming."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        translated = anthropic_to_openai_request(
            body, upstream_model="upstream", quirks=OpenAIQuirks()
        )
        seen.append(translated)
        completion = upstream(translated)
        if not body.get("stream"):
            message = openai_to_anthropic_response(completion, model=body["model"])
            return httpx2.Response(200, json=message)
        machine = OpenAIToAnthropicStream(model=body["model"])
        out = [event for chunk in chunks_of(completion) for event in machine.feed(chunk)]
        out += machine.finish()
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=b"".join(out)
        )

    return client_for(answer)


def chunks_of(completion: dict[str, Any], text: int = 1, args: int = 3) -> list[dict[str, Any]]:
    """The stream an OpenAI server would send for ``completion``: small pieces, tool calls in
    OpenAI's order (first fragment with id and name and empty arguments), then the finish
    chunk, then the usage chunk."""
    choice = completion["choices"][0]
    message = choice["message"]

    def chunk(delta: dict[str, Any], **extra: Any) -> dict[str, Any]:
        choices = [{"index": 0, "delta": delta, "finish_reason": None, **extra}]
        return {"id": completion["id"], "object": "chat.completion.chunk", "choices": choices}

    out = [chunk({"role": "assistant", "content": ""})]
    for field in ("reasoning_content", "reasoning", "content", "refusal"):
        value = message.get(field) or ""
        out += [chunk({field: value[i : i + text]}) for i in range(0, len(value), text)]
    for index, call in enumerate(message.get("tool_calls") or []):
        function, first = call["function"], {"index": index, "type": "function"}
        if "id" in call:
            first["id"] = call["id"]
        out.append(
            chunk(
                {"tool_calls": [{**first, "function": {"name": function["name"], "arguments": ""}}]}
            )
        )
        arguments = function["arguments"]
        out += [
            chunk(
                {
                    "tool_calls": [
                        {"index": index, "function": {"arguments": arguments[i : i + args]}}
                    ]
                }
            )
            for i in range(0, len(arguments), args)
        ]
    extra = {"stop_reason": choice["stop_reason"]} if "stop_reason" in choice else {}
    out.append(chunk({}, **{**extra, "finish_reason": choice["finish_reason"]}))
    if "usage" in completion:
        out.append({"id": completion["id"], "choices": [], "usage": completion["usage"]})
    return out


def completions() -> list[Any]:
    """Every fixture completion with a finish_reason and tool arguments that are valid JSON
    (invalid ones are streamed as the model wrote them; the JSON path makes them {})."""
    found = []
    for path in sorted(FIXTURES.glob("*/*.json")):
        fixture = json.loads(path.read_text())
        completion = fixture.get("completion") or fixture.get("openai")
        if not isinstance(completion, dict) or "error" in fixture or not completion.get("choices"):
            continue
        # A JSON body without finish_reason is whole; a stream without one was cut.
        if path.stem == "bad_tool_arguments" or completion["choices"][0]["finish_reason"] is None:
            continue
        found.append(pytest.param(completion, id=f"{path.parent.name}/{path.stem}"))
    return found


@pytest.mark.parametrize("completion", completions())
def test_any_chunking_accumulates_to_the_json_answer(completion: dict[str, Any]) -> None:
    machine = OpenAIToAnthropicStream(model="claude-sonnet-4-6")
    out = [event for chunk in chunks_of(completion) for event in machine.feed(chunk)]
    out += machine.finish()
    expected = openai_to_anthropic_response(completion, model="claude-sonnet-4-6")
    assert sdk_stream_message(b"".join(out)) == sdk_message(expected)


def test_field_table_covers_every_sdk_parameter() -> None:
    """A new Messages parameter must get a conscious entry (map, drop or refuse)."""
    sdk_fields = set(message_create_params.MessageCreateParamsBase.__annotations__) | {"stream"}
    # The beta API's too; ``betas`` is sent as the anthropic-beta header, never in the body.
    sdk_fields |= set(beta_create_params.MessageCreateParamsBase.__annotations__) - {"betas"}
    assert sdk_fields <= set(TOP_LEVEL_FIELDS), sdk_fields - set(TOP_LEVEL_FIELDS)
    tool_fields = set(anthropic.types.ToolParam.__annotations__)
    tool_fields |= set(anthropic.types.beta.BetaToolParam.__annotations__)
    assert tool_fields <= set(TOOL_FIELDS), tool_fields - set(TOOL_FIELDS)


def test_doc_lists_every_field() -> None:
    doc = (ROOT / "docs" / "translation-anthropic-client.md").read_text()
    for field in [*TOP_LEVEL_FIELDS, *TOOL_FIELDS]:
        assert f"`{field}`" in doc, field


def test_translated_requests_only_hold_openai_parameters() -> None:
    allowed = set(
        openai.types.chat.completion_create_params.CompletionCreateParamsBase.__annotations__
    )
    allowed |= {"stream"}
    for path in sorted((FIXTURES / "request").glob("*.json")):
        for variant in json.loads(path.read_text()).get("expected", []):
            assert set(variant["openai"]) <= allowed, path.stem


def text_completion(content: str, **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-sdk",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 20,
            "completion_tokens": 5,
            "total_tokens": 25,
            "prompt_tokens_details": {"cached_tokens": 8},
        },
    }


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_sdk_tool_round_trip_with_thinking() -> None:
    """The SDK's own tool loop: a translated answer (thinking + tool_use) goes back as history
    via ``to_param()``; its tool_result becomes a tool message."""
    seen: list[dict[str, Any]] = []
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
    }
    replies = iter(
        [
            text_completion("", reasoning_content="Use the tool.", tool_calls=[call]),
            text_completion("Sunny in Oslo."),
        ]
    )
    client = gateway(lambda body: next(replies), seen)
    tools: list[Any] = [WEATHER_TOOL]
    messages: list[Any] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=100,
        tools=tools,
        messages=messages,
        thinking={"type": "adaptive"},
    )
    assert first.stop_reason == "tool_use"
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    assert first.usage.input_tokens == 12 and first.usage.cache_read_input_tokens == 8
    tool_use = first.content[1]
    assert tool_use.type == "tool_use" and tool_use.input == {"city": "Oslo"}
    messages += [
        first.to_param(),
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "sunny"}],
        },
    ]
    second = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=100, tools=tools, messages=messages
    )
    assert second.content[0].type == "text" and second.content[0].text == "Sunny in Oslo."
    assert seen[1]["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]


def test_sdk_streaming_text_and_events() -> None:
    seen: list[dict[str, Any]] = []
    client = gateway(lambda body: text_completion("Hello,\nworld 👋"), seen)
    with client.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Hi"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello,\nworld 👋"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 5
    assert seen[0]["stream"] is True and seen[0]["stream_options"] == {"include_usage": True}
    assert seen[0]["messages"][0] == {"role": "system", "content": "Be brief."}


class Answer(pydantic.BaseModel):
    answer: int


def test_sdk_structured_output_parse() -> None:
    seen: list[dict[str, Any]] = []
    client = gateway(lambda body: text_completion('{"answer": 4}'), seen)
    parsed = client.messages.parse(
        model="claude-sonnet-4-6",
        max_tokens=50,
        messages=[{"role": "user", "content": "2+2?"}],
        output_format=Answer,
    )
    assert parsed.parsed_output == Answer(answer=4)
    response_format = seen[0]["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["strict"] is True
    assert response_format["json_schema"]["schema"]["properties"]["answer"]["type"] == "integer"


def test_sdk_server_tool_is_a_400_naming_the_tool() -> None:
    def answer(request: httpx2.Request) -> httpx2.Response:
        try:
            anthropic_to_openai_request(
                json.loads(request.content), upstream_model="u", quirks=OpenAIQuirks()
            )
        except Exception as error:
            body = {
                "type": "error",
                "error": {"type": "invalid_request_error", "message": str(error)},
            }
            return httpx2.Response(400, json=body)
        raise AssertionError("a server tool must be refused")

    with pytest.raises(anthropic.BadRequestError, match=r"tools\[0\]"):
        client_for(answer).messages.create(
            model="claude-sonnet-4-6",
            max_tokens=10,
            messages=[{"role": "user", "content": "x"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
        )

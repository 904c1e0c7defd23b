"""The official SDKs judge the OpenAI-client translation (test-only use of the SDKs).

* Consistency: for every complete stream fixture, the Anthropic SDK's own accumulator
  rebuilds the Message; its JSON translation must say what the OpenAI SDK's own chunk
  accumulator makes of the translated stream (content, reasoning, tool calls whose
  concatenated arguments parse to the input, finish_reason, usage).
* Wire behaviour: the ``openai`` client reads translated bytes through a mock transport:
  a complete stream iterates to its end, an error chunk raises ``APIError`` (and so does
  a stream cut before ``message_stop``), a JSON completion parses with its tool calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import httpx2
import openai
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletionChunk

from sluicegate.translate.a2o_response import anthropic_to_openai_response
from sluicegate.translate.stream_a2o import AnthropicToOpenAIStream
from tests.unit.test_translate_o2a import CREATED, FIXTURES, MODEL, STREAMS, load, sse_events

COMPLETE = [p for p in STREAMS if "message_stop" in p.read_text()]


def translated_stream(case: Path, include_usage: bool) -> list[bytes]:
    machine = AnthropicToOpenAIStream(model=MODEL, created=CREATED, include_usage=include_usage)
    out: list[bytes] = []
    for name, data in sse_events(case.read_text()):
        out += machine.feed(name, data)
    return out + machine.finish()


def anthropic_message(case: Path) -> dict[str, Any]:
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for _, data in sse_events(case.read_text()):
        if data["type"] != "ping":
            snapshot = accumulate_event(
                event=cast(Any, data), current_snapshot=snapshot, json_bufs=json_bufs
            )
    assert snapshot is not None
    return snapshot.to_dict()


@pytest.mark.parametrize("case", COMPLETE, ids=lambda p: p.stem)
def test_stream_says_what_the_json_path_says(case: Path) -> None:
    message = anthropic_message(case)
    reference = anthropic_to_openai_response(message, model=MODEL, created=CREATED)
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    content, reasoning = "", ""
    arguments: dict[int, str] = {}
    for chunk in translated_stream(case, include_usage=True):
        if chunk == b"data: [DONE]\n\n":
            continue
        parsed = ChatCompletionChunk.model_validate(json.loads(chunk[6:]))
        state.handle_chunk(parsed)
        for choice in parsed.choices:
            content += choice.delta.content or ""
            reasoning += (choice.delta.model_extra or {}).get("reasoning_content", "")
            for call in choice.delta.tool_calls or []:
                fragment = call.function.arguments if call.function else None
                arguments[call.index] = arguments.get(call.index, "") + (fragment or "")
    final = state.current_completion_snapshot  # get_final_completion() raises on length stops
    expected = reference["choices"][0]
    assert content == (expected["message"]["content"] or "")
    assert reasoning == expected["message"].get("reasoning_content", "")
    assert final.choices[0].finish_reason == expected["finish_reason"]
    assert final.choices[0].message.refusal == expected["message"]["refusal"]
    calls = expected["message"].get("tool_calls", [])
    got_calls = final.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name) for c in got_calls] == [
        (c["id"], c["function"]["name"]) for c in calls
    ]
    assert [json.loads(arguments[i]) for i in range(len(calls))] == [
        json.loads(c["function"]["arguments"]) for c in calls
    ]
    assert final.usage is not None
    assert final.usage.model_dump(exclude_none=True) == reference["usage"]


def client_for(body: bytes, content_type: str) -> openai.OpenAI:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": content_type})

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(api_key="k", base_url="http://gw/v1", http_client=http, max_retries=0)


def stream_with_sdk(body: bytes) -> list[Any]:
    client = client_for(body, "text/event-stream")
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True
    )
    return list(stream)


def test_sdk_reads_a_complete_translated_stream() -> None:
    chunks = stream_with_sdk(
        b"".join(translated_stream(FIXTURES / "streams" / "one_tool_call.sse", True))
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 300
    assert {c.id for c in chunks} == {"chatcmpl-tool1"}


@pytest.mark.parametrize("name", ["mid_stream_error", "cut_before_message_stop"])
def test_sdk_raises_on_a_failed_stream(name: str) -> None:
    body = b"".join(translated_stream(FIXTURES / "streams" / f"{name}.sse", False))
    assert not body.endswith(b"data: [DONE]\n\n")
    with pytest.raises(openai.APIError) as raised:
        stream_with_sdk(body)
    assert raised.value.message in (
        "Overloaded",
        "The upstream stream ended before the response was complete.",
    )


def test_sdk_parses_a_translated_completion() -> None:
    fixture = load(FIXTURES / "responses" / "escapes_emoji.json")
    body = json.dumps(
        anthropic_to_openai_response(fixture["anthropic"], model=MODEL, created=CREATED)
    )
    client = client_for(body.encode(), "application/json")
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}]
    )
    message = completion.choices[0].message
    assert message.content == fixture["openai"]["choices"][0]["message"]["content"]
    call = (message.tool_calls or [])[0]
    assert json.loads(call.function.arguments) == fixture["anthropic"]["content"][1]["input"]  # type: ignore[union-attr]
    thinking = load(FIXTURES / "responses" / "thinking_signature.json")
    body = json.dumps(
        anthropic_to_openai_response(thinking["anthropic"], model=MODEL, created=CREATED)
    )
    completion = client_for(body.encode(), "application/json").chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}]
    )
    assert (completion.choices[0].message.model_extra or {})["reasoning_content"].endswith(
        "That is 4."
    )

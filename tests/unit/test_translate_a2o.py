"""Golden fixtures: an Anthropic client served by an OpenAI(-compatible) upstream.

tests/fixtures/translate/anthropic_to_openai/
  request/*.json   Anthropic request -> expected OpenAI request per quirk setting, or the
                   TranslationError (param, message fragment) it must raise.
  response/*.json  OpenAI completion -> expected Anthropic message, or UpstreamFormatError.
  stream/*.json    steps: an upstream chunk (merged over ``chunk_defaults`` unless it is an
                   error chunk), ``finish`` or ``fail``, each with the exact events it must
                   produce at that moment. ``completion``: the same answer as one JSON
                   completion; the official SDK's accumulation of the stream must equal the
                   JSON translation of it. ``sdk_error``: the SDK must raise with that type.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sluicegate.translate.a2o_request import anthropic_to_openai_request
from sluicegate.translate.errors import TranslationError
from sluicegate.translate.o2a_response import UpstreamFormatError, openai_to_anthropic_response
from sluicegate.translate.quirks import OpenAIQuirks
from sluicegate.translate.stream_o2a import OpenAIToAnthropicStream
from tests.unit.test_translate_a2o_sdk import sdk_message, sdk_stream_message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "translate" / "anthropic_to_openai"
EVENT = re.compile(rb"event: ([a-z_]+)\ndata: ([^\n]+)\n\n")


def load(kind: str) -> list[Any]:
    paths = sorted((FIXTURES / kind).glob("*.json"))
    assert paths, f"no {kind} fixtures"
    return [pytest.param(json.loads(p.read_text()), id=p.stem) for p in paths]


@pytest.mark.parametrize("fixture", load("request"))
def test_request(fixture: dict[str, Any]) -> None:
    body, model = fixture["anthropic"], fixture["upstream_model"]
    if "error" in fixture:
        with pytest.raises(TranslationError) as caught:
            anthropic_to_openai_request(body, upstream_model=model, quirks=OpenAIQuirks())
        assert caught.value.param == fixture["error"]["param"]
        assert fixture["error"]["message_contains"] in caught.value.message
        return
    before = json.dumps(body, sort_keys=True)
    for variant in fixture["expected"]:
        quirks = OpenAIQuirks(**variant["quirks"])
        out = anthropic_to_openai_request(body, upstream_model=model, quirks=quirks)
        assert out == variant["openai"], variant["quirks"]
    assert json.dumps(body, sort_keys=True) == before, "the client's body must not be mutated"


@pytest.mark.parametrize("fixture", load("response"))
def test_response(fixture: dict[str, Any]) -> None:
    if "error" in fixture:
        with pytest.raises(UpstreamFormatError, match=fixture["error"]):
            openai_to_anthropic_response(fixture["openai"], model=fixture["model"])
        return
    out = openai_to_anthropic_response(fixture["openai"], model=fixture["model"])
    assert out == fixture["anthropic"]
    # The SDK reads it back into the same message (shape and types are Anthropic's).
    assert sdk_message(out) == sdk_message(fixture["anthropic"])


def run_steps(fixture: dict[str, Any]) -> list[bytes]:
    machine = OpenAIToAnthropicStream(model=fixture["model"])
    emitted: list[bytes] = []
    for number, step in enumerate(fixture["steps"]):
        if "chunk" in step:
            chunk = step["chunk"]
            if "error" not in chunk:
                chunk = {**fixture["chunk_defaults"], **chunk}
            out = machine.feed(chunk)
        elif "fail" in step:
            out = machine.fail(*step["fail"])
        else:
            out = machine.finish()
        assert parse_events(out) == [tuple(e) for e in step["events"]], f"step {number}"
        emitted.extend(out)
    assert machine.done
    return emitted


def parse_events(out: list[bytes]) -> list[tuple[str, Any]]:
    """Each item is exactly one SSE event: one event line, one data line, a blank line."""
    events = []
    for item in out:
        match = EVENT.fullmatch(item)
        assert match, item
        data = json.loads(match.group(2))
        assert data["type"] == match.group(1).decode()
        events.append((match.group(1).decode(), data))
    return events


@pytest.mark.parametrize("fixture", load("stream"))
def test_stream(fixture: dict[str, Any]) -> None:
    body = b"".join(run_steps(fixture))
    if "sdk_error" in fixture:
        error = sdk_stream_message(body)
        assert isinstance(error, dict) and error["error"]["type"] == fixture["sdk_error"]
    if "completion" in fixture:
        expected = openai_to_anthropic_response(fixture["completion"], model=fixture["model"])
        assert sdk_stream_message(body) == sdk_message(expected)


def test_every_fixture_kind_is_covered() -> None:
    """The cases DESIGN.md requires of every translator exist as fixtures."""
    names = {p.stem for p in FIXTURES.rglob("*.json")}
    for required in (
        "plain_text",
        "one_tool_call",
        "parallel_tool_calls",
        "one_tool_call_empty_first_fragment",
        "reasoning_content",
        "max_tokens",
        "error_chunk",
        "cut_without_finish",
        "escapes_emoji",
        "tool_results",
        "images",
        "system_array_cache_control",
        "refused_server_tool",
        "refused_document",
        "dropped_fields",
    ):
        assert required in names, required

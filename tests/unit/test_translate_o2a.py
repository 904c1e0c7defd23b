"""OpenAI client -> Anthropic upstream translation, checked against hand-written golden fixtures.

Fixtures live in ``tests/fixtures/translate/openai_to_anthropic/``:

* ``requests/<case>.json``: ``openai`` request -> expected ``anthropic`` body;
  ``requests/refused.json``: requests refused with the ``param`` the 400 must name;
* ``responses/<case>.json``: ``anthropic`` Message -> expected ``openai`` completion;
* ``streams/<case>.sse`` + ``<case>.json``: upstream SSE -> expected chunks (each chunk
  entry is merged over the fixture's ``envelope``; ``"[DONE]"`` is the terminator);
* ``errors/*.json``: error bodies across the two shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sluicegate.translate.a2o_response import anthropic_to_openai_response
from sluicegate.translate.error_shapes import (
    anthropic_error_to_openai,
    openai_error_body,
    openai_error_to_anthropic,
)
from sluicegate.translate.errors import TranslationError
from sluicegate.translate.o2a_request import openai_to_anthropic_request, required_betas
from sluicegate.translate.stream_a2o import AnthropicToOpenAIStream

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "translate" / "openai_to_anthropic"
MODEL = "my-claude"
CREATED = 1700000000
UPSTREAM_MODEL = "claude-sonnet-4-6"
DEFAULT_MAX_TOKENS = 4096

REQUESTS = sorted(p for p in (FIXTURES / "requests").glob("*.json") if p.stem != "refused")
REFUSED = json.loads((FIXTURES / "requests" / "refused.json").read_text())
RESPONSES = sorted((FIXTURES / "responses").glob("*.json"))
STREAMS = sorted((FIXTURES / "streams").glob("*.sse"))


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def translate(body: dict[str, Any]) -> dict[str, Any]:
    return openai_to_anthropic_request(
        body, upstream_model=UPSTREAM_MODEL, default_max_tokens=DEFAULT_MAX_TOKENS
    )


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event, data)`` pairs of an SSE text, as the gateway's decoder hands them over."""
    events = []
    for block in text.strip().split("\n\n"):
        name, data = "", []
        for line in block.splitlines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        events.append((name, json.loads("\n".join(data))))
    return events


def run_stream(case: Path) -> tuple[dict[str, Any], list[bytes]]:
    spec = load(case.with_suffix(".json"))
    machine = AnthropicToOpenAIStream(
        model=MODEL, created=CREATED, include_usage=spec["include_usage"]
    )
    out: list[bytes] = []
    for name, data in sse_events(case.read_text()):
        out += machine.feed(name, data)
    end = spec["after_end"]
    out += machine.finish() if end == "finish" else machine.fail(*end["fail"])
    assert machine.done
    assert machine.finish() == [] and machine.fail("api_error", "again") == []
    return spec, out


def decode(chunk: bytes) -> Any:
    assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n"), chunk
    body = chunk[6:-2]
    assert b"\n" not in body  # one data line per event
    return "[DONE]" if body == b"[DONE]" else json.loads(body)


# --- golden fixtures ---------------------------------------------------------------


@pytest.mark.parametrize("case", REQUESTS, ids=lambda p: p.stem)
def test_request_fixture(case: Path) -> None:
    fixture = load(case)
    assert translate(fixture["openai"]) == fixture["anthropic"]
    assert required_betas(fixture["anthropic"]) == []


@pytest.mark.parametrize("case", REFUSED["cases"], ids=lambda c: c["name"])
def test_refused_request(case: dict[str, Any]) -> None:
    with pytest.raises(TranslationError) as raised:
        translate({**REFUSED["base"], **case["openai"]})
    assert raised.value.param == case["param"]
    assert raised.value.message


@pytest.mark.parametrize("case", RESPONSES, ids=lambda p: p.stem)
def test_response_fixture(case: Path) -> None:
    fixture = load(case)
    got = anthropic_to_openai_response(fixture["anthropic"], model=MODEL, created=CREATED)
    assert got == fixture["openai"]


@pytest.mark.parametrize("case", STREAMS, ids=lambda p: p.stem)
def test_stream_fixture(case: Path) -> None:
    spec, out = run_stream(case)
    expected = [
        entry if entry == "[DONE]" or "error" in entry else {**spec["envelope"], **entry}
        for entry in spec["chunks"]
    ]
    assert [decode(chunk) for chunk in out] == expected


@pytest.mark.parametrize("name", ["anthropic_to_openai", "openai_to_anthropic"])
def test_error_fixtures(name: str) -> None:
    convert = (
        anthropic_error_to_openai if name == "anthropic_to_openai" else openai_error_to_anthropic
    )
    for case in load(FIXTURES / "errors" / f"{name}.json")["cases"]:
        got = json.loads(convert(case["status"], case["body"].encode()))
        assert got == case["expected"], case


def test_fixture_set_covers_the_required_cases() -> None:
    streams = {p.stem for p in STREAMS}
    required = {"plain_text", "one_tool_call", "parallel_tool_calls", "thinking_signature"}
    assert required | {"usage_at_end", "max_tokens", "mid_stream_error", "escapes_emoji"} <= streams
    assert {"plain_text", "one_tool_call", "parallel_tool_calls", "thinking_signature"} <= {
        p.stem for p in RESPONSES
    }
    assert {"tool_results_grouped", "images", "system_and_developer"} <= {p.stem for p in REQUESTS}
    for path in [*REQUESTS, *RESPONSES, *(p.with_suffix(".json") for p in STREAMS)]:
        assert load(path)["description"], path


# --- behaviour around the fixtures -------------------------------------------------


def test_openai_error_body_has_all_four_keys() -> None:
    body = json.loads(openai_error_body("bad", "invalid_request_error", param="n"))
    assert body == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "n", "code": None}
    }


def test_stream_events_before_message_start_still_open_with_the_role() -> None:
    machine = AnthropicToOpenAIStream(model=MODEL, created=CREATED, include_usage=False)
    delta = {"type": "text_delta", "text": "hi"}
    out = machine.feed("content_block_delta", {"index": 0, "delta": delta})
    assert [decode(c)["choices"][0]["delta"] for c in out] == [
        {"role": "assistant", "content": ""},
        {"content": "hi"},
    ]


def test_stream_event_name_may_come_from_the_data_type() -> None:
    machine = AnthropicToOpenAIStream(model=MODEL, created=CREATED, include_usage=False)
    out = machine.feed("", {"type": "error", "error": {"type": "api_error", "message": "x"}})
    assert decode(out[0])["error"]["type"] == "server_error"
    assert machine.done


def test_fail_keeps_an_openai_type_and_code() -> None:
    machine = AnthropicToOpenAIStream(model=MODEL, created=CREATED, include_usage=False)
    out = machine.fail("server_error", "boom", code="upstream_unavailable")
    assert decode(out[0]) == {
        "error": {
            "message": "boom",
            "type": "server_error",
            "param": None,
            "code": "upstream_unavailable",
        }
    }


def test_thinking_is_kept_when_the_last_assistant_turn_has_no_tool_use() -> None:
    body = {
        "model": MODEL,
        "reasoning_effort": "low",
        "messages": [
            {"role": "user", "content": "a"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "t", "content": "r"},
            {"role": "assistant", "content": "done"},
            {"role": "user", "content": "next"},
        ],
    }
    assert translate(body)["thinking"] == {"type": "adaptive"}


def test_explicit_anthropic_thinking_is_forwarded_verbatim() -> None:
    thinking = {"type": "enabled", "budget_tokens": 2048}
    body = {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "thinking": thinking}
    assert translate(body)["thinking"] == thinking


def test_request_translation_does_not_mutate_the_input() -> None:
    fixture = load(FIXTURES / "requests" / "tool_call_roundtrip.json")
    before = json.dumps(fixture["openai"], sort_keys=True)
    translate(fixture["openai"])
    assert json.dumps(fixture["openai"], sort_keys=True) == before


def test_malformed_upstream_error_event_still_ends_the_stream() -> None:
    machine = AnthropicToOpenAIStream(model=MODEL, created=CREATED, include_usage=False)
    out = machine.feed("error", {"type": "error", "error": {"type": ["odd"], "message": ""}})
    error = decode(out[0])["error"]
    assert error["type"] == "server_error" and error["message"]
    assert machine.done

"""Helpers shared by the OpenAI-surface and translation integration tests.

This module holds no tests (its name only follows the file-ownership convention of the
test suite). Plain HTTP helpers live in ``test_anthropic_support``; here are the SDK
clients, OpenAI's SSE parsing and small accessors for the bodies the fake upstream saw.
"""

from __future__ import annotations

import json
import re
from typing import Any

import anthropic
import openai

from sluicegate.fake_upstream import FakeUpstream, RecordedCall
from tests.gateway_harness import UPSTREAM_KEY, Gateway
from tests.integration.test_anthropic_support import RawResponse, raw_request

OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}
# Every top-level field the Anthropic Messages API accepts: anything else is a 400 there.
ANTHROPIC_REQUEST_FIELDS = {
    "model",
    "max_tokens",
    "messages",
    "system",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "output_config",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
}
WEATHER_TOOL_OPENAI: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_TOOL_ANTHROPIC: dict[str, Any] = {
    "name": "get_weather",
    "description": "Current weather of a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
# A valid 1x1 PNG.
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def openai_client(gateway: Gateway, key: str | None = None, *, v1: bool = True) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + ("/v1" if v1 else ""),
        api_key=gateway.keys["full"] if key is None else key,
        max_retries=0,
        timeout=20.0,
    )


def anthropic_client(gateway: Gateway, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.url,
        api_key=gateway.keys["full"] if key is None else key,
        max_retries=0,
        timeout=20.0,
    )


def post_chat(
    gateway: Gateway,
    body: bytes | dict[str, Any],
    key: str | None = None,
    *,
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
) -> RawResponse:
    """A raw POST to the gateway's OpenAI surface with ``Authorization: Bearer``."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {
        "content-type": "application/json",
        "authorization": f"Bearer {gateway.keys['full'] if key is None else key}",
    }
    sent.update(headers or {})
    return raw_request(gateway.url, "POST", path, raw, sent)


def post_chat_to_fake(fake: FakeUpstream, body: bytes) -> RawResponse:
    """The same Chat Completions request sent straight to the fake (the reference)."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {UPSTREAM_KEY}"}
    return raw_request(fake.url, "POST", "/v1/chat/completions", body, headers)


def parse_openai_sse(body: bytes) -> list[Any]:
    """The ``data`` of each event of an OpenAI stream; ``[DONE]`` stays a string."""
    out: list[Any] = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        lines = [line[5:].lstrip(" ") for line in block.split("\n") if line.startswith("data:")]
        if not lines:
            continue
        data = "\n".join(lines)
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


_VOLATILE = re.compile(rb'"(id|created)":("[^"]*"|\d+)')


def without_ids(body: bytes) -> bytes:
    """Body bytes with the values of ``id`` and ``created`` blanked (they differ per call)."""
    return _VOLATILE.sub(rb'"\1":_', body)


def last_call(fake: FakeUpstream) -> RecordedCall:
    calls = fake.calls
    assert calls, "the upstream was not called"
    return calls[-1]


def block_texts(content: Any) -> list[str]:
    """The texts of a message ``content``: a string, Anthropic blocks or OpenAI parts."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    return [part["text"] for part in content if part.get("type") == "text"]


def joined_text(content: Any) -> str:
    return "".join(block_texts(content))


def blocks(content: Any) -> list[dict[str, Any]]:
    """Anthropic content as a block list (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    assert isinstance(content, list), content
    return content

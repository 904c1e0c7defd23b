"""Seeded mutations of valid requests on both surfaces, through pass-through and translation:
every answer is a success or a clear 4xx in the surface's own error shape; never a 5xx."""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from typing import Any

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import Gateway

ODD_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    2**70,
    1.5,
    "",
    "x",
    "user",
    "tool",
    [],
    [1],
    {},
    {"type": "text"},
    {"type": "image_url"},
    [{"type": "text", "text": 5}],
    [{"type": "image_url", "image_url": {"url": 7}}],
    [{"type": "tool_result", "tool_use_id": None, "content": {}}],
    "é😀",
    [{"id": 1, "type": "function", "function": {"name": "f", "arguments": "{bad"}}],
    {"type": "function", "function": {}},
    "required",
    {"type": "tool"},
]


def mutate(value: Any, rng: random.Random, depth: int = 0) -> Any:
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        value[key] = (
            rng.choice(ODD_VALUES)
            if depth > 3 or rng.random() < 0.5
            else mutate(value[key], rng, depth + 1)
        )
    elif isinstance(value, list) and value and rng.random() < 0.8:
        index = rng.randrange(len(value))
        value[index] = (
            rng.choice(ODD_VALUES)
            if depth > 3 or rng.random() < 0.5
            else mutate(value[index], rng, depth + 1)
        )
    return value


def valid_body(surface: str, model: str, stream: bool) -> dict[str, Any]:
    if surface == "openai":
        return {
            "model": model,
            "stream": stream,
            "max_tokens": 20,
            "stop": ["x"],
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
            ],
            "tool_choice": "auto",
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {
                    "role": "assistant",
                    "content": "ok",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "r"},
                {"role": "user", "content": "go"},
            ],
        }
    return {
        "model": model,
        "max_tokens": 20,
        "stream": stream,
        "system": [{"type": "text", "text": "s"}],
        "tools": [{"name": "f", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "auto"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "r"}],
            },
        ],
    }


def in_surface_shape(surface: str, body: bytes) -> bool:
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    if surface == "openai":
        error = payload.get("error")
        return isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error)
    return payload.get("type") == "error" and isinstance(payload.get("error"), dict)


def test_mutated_requests_never_get_a_5xx(gateway: Gateway, fake: FakeUpstream) -> None:
    rng = random.Random(20261123)
    seen: dict[tuple[str, int], int] = {}
    for _ in range(400):
        surface = rng.choice(["openai", "anthropic"])
        model = rng.choice(["claude-sonnet-4-6", "gpt-4o-mini"])  # Anthropic / OpenAI upstream
        body = mutate(mutate(valid_body(surface, model, rng.random() < 0.4), rng), rng)
        body["model"] = model
        path = "/v1/chat/completions" if surface == "openai" else "/v1/messages"
        request = urllib.request.Request(
            gateway.url + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "x-api-key": gateway.keys["full"],
                "content-type": "application/json",
                "anthropic-version": "2023-06-01",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, answer = error.code, error.read()
        assert status < 500, (status, answer[:300], json.dumps(body)[:500])
        if status >= 400:
            assert in_surface_shape(surface, answer), (surface, answer[:300])
        seen[(surface, status // 100)] = seen.get((surface, status // 100), 0) + 1
    # Both outcomes happened on both surfaces: the mutations are neither all fatal nor all inert.
    assert all(seen.get((s, c), 0) > 20 for s in ("openai", "anthropic") for c in (2, 4)), seen

"""Anthropic Messages API wire format: JSON bodies and SSE event sequences (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sluicegate.fake_upstream.common import (
    JSON_CHUNK_CHARS,
    SseEvent,
    chunk_text,
    dumps,
    rfc3339,
)
from sluicegate.fake_upstream.reply import OPENAI_USAGE_KEYS, Reply

_STATUS_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_DEFAULT_MESSAGES = {
    "invalid_request_error": "Invalid request",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of requests has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
    "overloaded_error": "Overloaded",
}
# Keys that the final ``message_delta`` repeats cumulatively, as the live API does.
_DELTA_USAGE_KEYS = (
    "input_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens",
    "server_tool_use",
)

REQUESTS_LIMIT = 4000
TOKENS_LIMIT = 400_000


def default_error_type(status: int) -> str:
    if status in _STATUS_ERROR_TYPES:
        return _STATUS_ERROR_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def error_object(error_type: str, message: str | None = None) -> dict[str, Any]:
    text = message if message is not None else _DEFAULT_MESSAGES.get(error_type, "Error")
    return {"type": error_type, "message": text}


def error_body(error_type: str, message: str | None, request_id: str) -> dict[str, Any]:
    return {"type": "error", "error": error_object(error_type, message), "request_id": request_id}


def error_event(error_type: str = "overloaded_error", message: str | None = None) -> SseEvent:
    return SseEvent("error", {"type": "error", "error": error_object(error_type, message)})


def usage_body(reply: Reply) -> dict[str, Any]:
    """Full ``usage`` of a Message, with the reply's overrides (Anthropic keys) applied."""
    usage: dict[str, Any] = {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": reply.output_tokens,
        "service_tier": "standard",
    }
    overrides = {k: v for k, v in reply.usage_overrides.items() if k not in OPENAI_USAGE_KEYS}
    if "cache_creation_input_tokens" in overrides and "cache_creation" not in overrides:
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": overrides["cache_creation_input_tokens"],
            "ephemeral_1h_input_tokens": 0,
        }
    usage.update(overrides)
    return usage


def message_body(reply: Reply, message_id: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": reply.content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": usage_body(reply),
    }


def stream_events(reply: Reply, message_id: str) -> list[SseEvent]:
    """The full event sequence of a streamed reply, ``message_start`` to ``message_stop``."""
    usage = usage_body(reply)
    start: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events = [
        SseEvent("message_start", {"type": "message_start", "message": start}),
        SseEvent("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(reply.content):
        events.extend(block_events(index, block))
    delta_usage = {k: usage[k] for k in _DELTA_USAGE_KEYS if k in usage}
    events.append(
        SseEvent(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                "usage": delta_usage,
            },
        )
    )
    events.append(SseEvent("message_stop", {"type": "message_stop"}))
    return events


def block_events(index: int, block: dict[str, Any]) -> list[SseEvent]:
    """``content_block_start``, its deltas and ``content_block_stop`` for one block."""
    kind = block.get("type")
    deltas: list[dict[str, Any]]
    if kind == "text":
        first: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": t} for t in chunk_text(str(block["text"]))]
    elif kind == "thinking":
        first = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [
            {"type": "thinking_delta", "thinking": t} for t in chunk_text(str(block["thinking"]))
        ]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "tool_use":
        first = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        raw = dumps(block["input"]).decode()
        pieces = [raw[i : i + JSON_CHUNK_CHARS] for i in range(0, len(raw), JSON_CHUNK_CHARS)]
        # Anthropic opens every tool_use with an empty fragment; clients must cope.
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *pieces]]
    else:
        first, deltas = dict(block), []
    events = [
        SseEvent(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": first},
        )
    ]
    events.extend(
        SseEvent("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
        for d in deltas
    )
    events.append(SseEvent("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def count_tokens_body(input_tokens: int) -> dict[str, Any]:
    return {"input_tokens": input_tokens}


def models_body(models: Sequence[str], limit: int | None = None) -> dict[str, Any]:
    ids = list(models)
    page = ids[:limit] if limit is not None and limit > 0 else ids
    data = [
        {
            "type": "model",
            "id": model_id,
            "display_name": display_name(model_id),
            "created_at": "2025-01-01T00:00:00Z",
        }
        for model_id in page
    ]
    return {
        "data": data,
        "has_more": len(page) < len(ids),
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }


def display_name(model_id: str) -> str:
    return " ".join(part.capitalize() for part in model_id.replace("_", "-").split("-"))


def response_headers(request_id: str) -> dict[str, str]:
    """``request-id`` and the ``anthropic-ratelimit-*`` family, with plausible values."""
    reset = rfc3339(1.0)
    return {
        "request-id": request_id,
        "anthropic-ratelimit-requests-limit": str(REQUESTS_LIMIT),
        "anthropic-ratelimit-requests-remaining": str(REQUESTS_LIMIT - 1),
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-limit": str(TOKENS_LIMIT),
        "anthropic-ratelimit-tokens-remaining": str(TOKENS_LIMIT - 1000),
        "anthropic-ratelimit-tokens-reset": reset,
    }

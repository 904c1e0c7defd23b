"""OpenAI Chat Completions wire format: JSON bodies and SSE chunks (pure functions).

Replies are planned as Anthropic-style blocks; here text becomes ``message.content`` and
tool_use blocks become ``tool_calls`` with JSON-string ``arguments``. Thinking is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sluicegate.fake_upstream.common import JSON_CHUNK_CHARS, SseEvent, chunk_text, dumps
from sluicegate.fake_upstream.reply import OPENAI_USAGE_KEYS, Reply

SYSTEM_FINGERPRINT = "fp_sluicegate"
REQUESTS_LIMIT = 10_000
TOKENS_LIMIT = 30_000_000

# status -> (type, code, message)
_STATUS_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request"),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided"),
    403: ("invalid_request_error", None, "You are not allowed to access this resource."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist"),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests"),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The server is overloaded or not ready yet."),
}
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_OPENAI_FINISH = {"stop", "length", "tool_calls", "content_filter", "function_call"}


def error_object(status: int, error_type: str | None, message: str | None) -> dict[str, Any]:
    if status in _STATUS_ERRORS:
        d_type, d_code, d_message = _STATUS_ERRORS[status]
    elif status >= 500:
        d_type, d_code, d_message = _STATUS_ERRORS[500]
    else:
        d_type, d_code, d_message = _STATUS_ERRORS[400]
    return {
        "message": message if message is not None else d_message,
        "type": error_type or d_type,
        "param": None,
        "code": d_code,
    }


def error_body(status: int, error_type: str | None, message: str | None) -> dict[str, Any]:
    return {"error": error_object(status, error_type, message)}


def error_chunk(error_type: str | None = None, message: str | None = None) -> SseEvent:
    """A mid-stream failure as OpenAI sends it: a data-only ``{"error": ...}`` event."""
    return SseEvent(None, error_body(503, error_type, message or "Overloaded"))


def finish_reason(stop_reason: str) -> str:
    if stop_reason in _OPENAI_FINISH:
        return stop_reason
    return _FINISH_REASONS.get(stop_reason, "stop")


def usage_body(reply: Reply) -> dict[str, Any]:
    """``prompt_tokens`` counts cached tokens too (unlike Anthropic's ``input_tokens``)."""
    o = reply.usage_overrides
    cache_read = int(o.get("cache_read_input_tokens", 0))
    cache_write = int(o.get("cache_creation_input_tokens", 0))
    prompt = int(o.get("input_tokens", reply.input_tokens)) + cache_read + cache_write
    completion = int(o.get("output_tokens", reply.output_tokens))
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }
    usage.update({k: v for k, v in o.items() if k in OPENAI_USAGE_KEYS})
    if "total_tokens" not in o:
        usage["total_tokens"] = int(usage["prompt_tokens"]) + int(usage["completion_tokens"])
    return usage


def tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": block["id"],
            "type": "function",
            "function": {"name": block["name"], "arguments": dumps(block["input"]).decode()},
        }
        for block in reply.tool_uses
    ]


def completion_body(reply: Reply, completion_id: str, created: int) -> dict[str, Any]:
    calls = tool_calls(reply)
    text = reply.text
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not calls else None,
        "refusal": None,
        "annotations": [],
    }
    if calls:
        message["tool_calls"] = calls
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": reply.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(reply.stop_reason),
            }
        ],
        "usage": usage_body(reply),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


def stream_events(
    reply: Reply, completion_id: str, created: int, include_usage: bool
) -> list[SseEvent]:
    """Role chunk, content deltas, tool-call deltas, finish chunk, [usage chunk], [DONE]."""

    def chunk(delta: dict[str, Any] | None, finish: str | None = None) -> SseEvent:
        body: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": reply.model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
            "choices": []
            if delta is None
            else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            body["usage"] = usage_body(reply) if delta is None else None
        return SseEvent(None, body)

    events = [chunk({"role": "assistant", "content": "", "refusal": None})]
    if reply.text:
        events.extend(chunk({"content": piece}) for piece in chunk_text(reply.text))
    for index, call in enumerate(tool_calls(reply)):
        fn = call["function"]
        first = {"index": index, "id": call["id"], "type": "function"}
        events.append(
            chunk({"tool_calls": [{**first, "function": {"name": fn["name"], "arguments": ""}}]})
        )
        args = str(fn["arguments"])
        for i in range(0, len(args), JSON_CHUNK_CHARS):
            piece = args[i : i + JSON_CHUNK_CHARS]
            events.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            )
    events.append(chunk({}, finish_reason(reply.stop_reason)))
    if include_usage:
        events.append(chunk(None))
    events.append(SseEvent(None, "[DONE]"))
    return events


def models_body(models: Sequence[str], owned_by: str = "sluicegate") -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 1735689600, "owned_by": owned_by}
            for m in models
        ],
    }


def response_headers(request_id: str) -> dict[str, str]:
    return {
        "x-request-id": request_id,
        "openai-version": "2020-10-01",
        "openai-processing-ms": "1",
        "x-ratelimit-limit-requests": str(REQUESTS_LIMIT),
        "x-ratelimit-remaining-requests": str(REQUESTS_LIMIT - 1),
        "x-ratelimit-reset-requests": "6ms",
        "x-ratelimit-limit-tokens": str(TOKENS_LIMIT),
        "x-ratelimit-remaining-tokens": str(TOKENS_LIMIT - 1000),
        "x-ratelimit-reset-tokens": "0s",
    }

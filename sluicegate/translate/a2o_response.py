"""Anthropic Message JSON -> OpenAI ``chat.completion`` JSON (and the parts streams share).

Text blocks concatenate into ``content``, thinking into ``reasoning_content`` (the field
DeepSeek, vLLM and LiteLLM clients read; OpenAI's own SDK keeps unknown fields), and
tool_use blocks become ``tool_calls`` in order. Signatures and redacted thinking cannot be
carried by an OpenAI client and are dropped.
"""

from __future__ import annotations

from typing import Any

import orjson

# Anthropic stop_reason -> OpenAI finish_reason.
FINISH_REASONS: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    # The output was cut by the context window: to a client that is a length stop.
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    # Only server tools pause a turn, and a translated request never has any.
    "pause_turn": "stop",
}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def completion_id(message_id: Any) -> str:
    """``chatcmpl-`` + the upstream id, so one request has one traceable id everywhere."""
    text = message_id if isinstance(message_id, str) else ""
    return "chatcmpl-" + text.removeprefix("msg_")


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI usage from Anthropic usage: prompt_tokens counts every input token.

    Anthropic's ``input_tokens`` excludes cache reads and writes; OpenAI's
    ``prompt_tokens`` includes cached tokens, reported again in ``cached_tokens``.
    """
    fresh = _int(usage.get("input_tokens"))
    read = _int(usage.get("cache_read_input_tokens"))
    written = _int(usage.get("cache_creation_input_tokens"))
    output = _int(usage.get("output_tokens"))
    prompt = fresh + read + written
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": written},
    }
    details = usage.get("output_tokens_details")
    if isinstance(details, dict) and "thinking_tokens" in details:
        out["completion_tokens_details"] = {"reasoning_tokens": _int(details["thinking_tokens"])}
    return out


def refusal_text(stop_details: Any) -> str | None:
    """The explanation of a refusal stop, when Anthropic gives one."""
    if isinstance(stop_details, dict) and stop_details.get("type") == "refusal":
        explanation = stop_details.get("explanation")
        return explanation if isinstance(explanation, str) and explanation else None
    return None


def arguments_json(value: Any) -> str:
    """Compact JSON text of a tool input, as OpenAI's ``arguments`` string."""
    return orjson.dumps(value if value is not None else {}).decode()


def anthropic_to_openai_response(
    message: dict[str, Any], *, model: str, created: int
) -> dict[str, Any]:
    """The ``chat.completion`` for an Anthropic Message; ``model`` is the client's name."""
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thoughts.append(block.get("thinking") or "")
        elif kind == "tool_use":
            calls.append(_tool_call(block))
        # redacted_thinking: opaque, only meaningful sent back with its signature.
        # Server-tool blocks cannot occur: a translated request defines no server tools.
    reply: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": refusal_text(message.get("stop_details")),
    }
    if thoughts:
        reply["reasoning_content"] = "".join(thoughts)
    if calls:
        reply["tool_calls"] = calls
    choice = {
        "index": 0,
        "message": reply,
        "logprobs": None,
        "finish_reason": finish_reason(message.get("stop_reason")),
    }
    return {
        "id": completion_id(message.get("id")),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": openai_usage(message.get("usage") or {}),
    }


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": arguments_json(block.get("input"))},
    }


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0

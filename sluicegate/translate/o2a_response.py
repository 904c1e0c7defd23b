"""OpenAI chat.completion JSON -> Anthropic Message JSON (Anthropic client, OpenAI upstream).

The stop-reason and usage mappings live here and are shared with ``stream_o2a`` so that a
streamed answer accumulates to exactly the message the JSON path returns.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson


class UpstreamFormatError(ValueError):
    """The upstream's completion cannot be read as an answer (no choice, nameless tool call).

    Not the client's fault: the gateway reports it like any bad upstream response (502)."""


def openai_to_anthropic_response(completion: dict[str, Any], *, model: str) -> dict[str, Any]:
    """The Anthropic Message for an OpenAI completion; ``model`` is what the client asked for."""
    choices = completion.get("choices")
    choice = _first_choice(choices if isinstance(choices, list) else [])
    message = choice.get("message")
    message = message if isinstance(message, dict) else {}
    upstream_id = completion.get("id")
    content: list[dict[str, Any]] = []
    reasoning = reasoning_text(message)
    if reasoning:
        content.append(thinking_block(reasoning))
    refusal = _text(message.get("refusal"))
    text = _text(message.get("content")) + refusal
    if text:
        content.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for i, call in enumerate(calls if isinstance(calls, list) else []):
        content.append(_tool_use(call, tool_id_fallback(upstream_id, i)))
    stop_reason, stop_sequence = stop_reason_for(
        choice.get("finish_reason"),
        tool_calls=any(block["type"] == "tool_use" for block in content),
        refusal=bool(refusal),
        matched_stop=choice.get("stop_reason"),
    )
    return {
        "id": message_id(upstream_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": anthropic_usage(completion.get("usage")),
    }


def message_id(upstream_id: Any) -> str:
    """``msg_`` + the upstream id, so a message can be found in the upstream's logs; a random
    id only when the upstream sent none (never a constant placeholder)."""
    if isinstance(upstream_id, str) and upstream_id:
        return f"msg_{upstream_id}"
    return f"msg_{uuid.uuid4().hex}"


def tool_id_fallback(upstream_id: Any, index: int) -> str:
    """An id for a tool call the upstream left without one, unique within the message and
    across messages (the client pairs its tool_result with it)."""
    base = upstream_id if isinstance(upstream_id, str) and upstream_id else uuid.uuid4().hex
    return f"toolu_{base}_{index}"


def reasoning_text(message: dict[str, Any]) -> str:
    """Reasoning as OpenAI-compatible servers send it: ``reasoning_content`` (DeepSeek, vLLM
    before 0.10) or ``reasoning`` (newer vLLM, Ollama, OpenRouter)."""
    value = message.get("reasoning_content")
    if not isinstance(value, str) or not value:
        value = message.get("reasoning")
    return value if isinstance(value, str) else ""


def thinking_block(thinking: str) -> dict[str, Any]:
    """A thinking block with an empty signature: only Anthropic can sign, and the signature
    matters only when the block is sent back to Anthropic (this gateway drops it for OpenAI)."""
    return {"type": "thinking", "thinking": thinking, "signature": ""}


def tool_input(arguments: Any) -> dict[str, Any]:
    """The arguments as the object Anthropic's ``input`` must be. Empty arguments mean no
    arguments; arguments that are not a JSON object become ``{}``, so the client's own input
    validation tells the model its call was malformed instead of the whole answer failing."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def stop_reason_for(
    finish_reason: Any, *, tool_calls: bool, refusal: bool, matched_stop: Any
) -> tuple[str, str | None]:
    """Anthropic ``(stop_reason, stop_sequence)``.

    ``tool_use`` whenever the answer holds tool calls, whatever the finish_reason (Ollama and
    some vLLM tool parsers say ``stop``), except when cut by length. ``stop`` is
    ``stop_sequence`` only when the server names the matched string (vLLM's non-standard
    ``stop_reason``); OpenAI does not say, so it is ``end_turn``. Unknown reasons: ``end_turn``.
    """
    if refusal or finish_reason == "content_filter":
        return "refusal", None
    if finish_reason == "length":
        return "max_tokens", None
    if tool_calls:
        return "tool_use", None
    if finish_reason == "stop" and isinstance(matched_stop, str) and matched_stop:
        return "stop_sequence", matched_stop
    return "end_turn", None


def anthropic_usage(usage: Any) -> dict[str, int]:
    """Anthropic usage from OpenAI usage, all four counts always present.

    OpenAI's ``prompt_tokens`` includes cached tokens; Anthropic's ``input_tokens`` does not
    (total input = input + cache_creation + cache_read), so cached tokens are moved out.
    Cache writes are not reported by OpenAI-compatible servers: 0."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = _count(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = min(_count(details.get("cached_tokens")) if isinstance(details, dict) else 0, prompt)
    return {
        "input_tokens": prompt - cached,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": _count(usage.get("completion_tokens")),
    }


def _first_choice(choices: list[Any]) -> dict[str, Any]:
    for choice in choices:
        if isinstance(choice, dict) and choice.get("index", 0) == 0:
            return choice
    raise UpstreamFormatError("The upstream's completion holds no choice.")


def _tool_use(call: Any, fallback_id: str) -> dict[str, Any]:
    call = call if isinstance(call, dict) else {}
    function = call.get("function")
    function = function if isinstance(function, dict) else {}
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise UpstreamFormatError("The upstream returned a tool call without a function name.")
    call_id = call.get("id")
    return {
        "type": "tool_use",
        "id": call_id if isinstance(call_id, str) and call_id else fallback_id,
        "name": name,
        "input": tool_input(function.get("arguments")),
    }


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

"""Helpers shared by both wire formats: SSE framing, ids, token estimates, text chunking."""

from __future__ import annotations

import math
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

_ALPHABET = string.ascii_letters + string.digits

# Text deltas are cut into pieces of at most this many characters.
TEXT_CHUNK_CHARS = 12
# JSON fragments of tool input (``input_json_delta`` / OpenAI ``arguments``) use this size.
JSON_CHUNK_CHARS = 10


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One server-sent event. ``event`` is None for OpenAI-style data-only events.

    ``data`` is a JSON object, or a raw string sent verbatim (OpenAI's ``[DONE]``).
    """

    event: str | None
    data: dict[str, Any] | str

    def encode(self) -> bytes:
        payload = self.data.encode() if isinstance(self.data, str) else dumps(self.data)
        head = b"event: " + self.event.encode() + b"\n" if self.event is not None else b""
        return head + b"data: " + payload + b"\n\n"


def dumps(obj: Any) -> bytes:
    """Compact JSON, key order preserved (as the real APIs send it)."""
    return orjson.dumps(obj)


def random_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def tokens_for_chars(n_chars: int) -> int:
    """The fake's tokenizer: one token per four characters (bytes), at least one."""
    return max(1, math.ceil(n_chars / 4))


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """Deterministic input estimate over the parts of a request that a model reads.

    The same function serves ``count_tokens`` and the ``usage`` of a reply, so the two agree.
    """
    parts = [body.get("system"), body.get("messages"), body.get("tools")]
    return tokens_for_chars(len(dumps(parts)))


def estimate_output_tokens(blocks: list[dict[str, Any]]) -> int:
    """Estimate over Anthropic-style content blocks (text, thinking, tool_use, other)."""
    n = 0
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            n += len(str(block.get("text", "")))
        elif kind == "thinking":
            n += len(str(block.get("thinking", "")))
        elif kind == "tool_use":
            n += len(str(block.get("name", ""))) + len(dumps(block.get("input", {})))
        else:
            n += len(dumps(block))
    return tokens_for_chars(n)


def chunk_text(text: str, size: int = TEXT_CHUNK_CHARS) -> list[str]:
    """Split text into several pieces (two at least when it has two characters or more)."""
    if len(text) <= 1:
        return [text]
    if len(text) <= size:
        half = len(text) // 2
        return [text[:half], text[half:]]
    return [text[i : i + size] for i in range(0, len(text), size)]


def last_user_text(messages: Any) -> str:
    """Text of the last user message; works for Anthropic and OpenAI message shapes."""
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [
                str(part.get("text", ""))
                for part in content
                if isinstance(part, dict) and part.get("type") == "text"
            ]
            return " ".join(t for t in texts if t)
        return ""
    return ""


def rfc3339(seconds_from_now: float = 0.0) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")

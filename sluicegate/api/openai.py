"""The OpenAI surface: parse just enough of a Chat Completions request, render model lists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sluicegate.api.anthropic import ParsedRequest, load_object, max_tokens_value, model_name
from sluicegate.api.field_types import OPENAI_FIELDS, check_fields, check_messages
from sluicegate.errors import InvalidRequest

# Models are listed with a fixed creation time: the gateway does not know release dates.
LISTED_CREATED = 0


def parse_chat(raw: bytes) -> ParsedRequest:
    """A ``POST /v1/chat/completions`` body."""
    payload = load_object(raw)
    model = model_name(payload)
    messages = payload.get("messages")
    if messages is None:
        raise InvalidRequest("messages: Field required", param="messages")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: Input should be a valid list", param="messages")
    check_messages(messages)
    check_fields(payload, OPENAI_FIELDS)
    stream = payload.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: Input should be a valid boolean", param="stream")
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("stream_options: must be an object", param="stream_options")
    limit: int | None = None
    for name in ("max_tokens", "max_completion_tokens"):  # the latter wins when both are set
        value = payload.get(name)
        if value is not None:
            limit = max_tokens_value(value, name)
    return ParsedRequest(model, stream, limit, payload, raw)


def include_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def openai_model_list(model_ids: Sequence[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": LISTED_CREATED, "owned_by": "sluicegate"}
            for m in model_ids
        ],
    }

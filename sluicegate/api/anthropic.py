"""The Anthropic surface: parse just enough of a request, render the model list.

Parsing checks only what the gateway needs (``model``, ``stream``, ``max_tokens``,
``messages``) and keeps the client's original bytes: when the upstream model id equals the
name the client sent, those bytes go upstream untouched; otherwise only ``model`` changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from sluicegate.api.field_types import ANTHROPIC_FIELDS, check_fields, check_messages
from sluicegate.api.json_body import dumps_forwarded, loads_limited
from sluicegate.catalog import UNKNOWN_RELEASE, display_name
from sluicegate.errors import InvalidRequest

MAX_MODEL_NAME = 256
# No model generates anywhere near this many tokens; the bound keeps limit reservations and
# budget holds (computed from max_tokens before the call) in ordinary integer ranges.
MAX_TOKENS_LIMIT = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    model: str
    stream: bool
    max_tokens: int | None
    payload: dict[str, Any]
    raw: bytes

    def body_for(self, upstream_model: str) -> bytes:
        """The body to send upstream: the original bytes unless the model id changes."""
        if upstream_model == self.model:
            return self.raw
        # dicts keep their order, so only the value of "model" differs from the client's.
        return dumps_forwarded({**self.payload, "model": upstream_model})


def load_object(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("The request body is empty; a JSON object is required.")
    # No depth walk here: it costs about 1 us per kB, and a body forwarded as it came (the
    # common case, Claude Code's large bodies included) needs none. The pipeline walks a
    # body it translates (require_depth); a body it re-encodes goes through dumps_forwarded.
    payload = loads_limited(raw, check_depth=False)
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return payload


def model_name(payload: dict[str, Any]) -> str:
    model = payload.get("model")
    if model is None:
        raise InvalidRequest("model: Field required", param="model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: must be a non-empty string", param="model")
    # Control characters (C0, DEL, C1) never belong in a model id, and would reach logs,
    # metrics labels and the upstream. The name is never part of a URL or a file path.
    if len(model) > MAX_MODEL_NAME or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in model):
        raise InvalidRequest("model: not a valid model name", param="model")
    return model


def max_tokens_value(value: Any, name: str = "max_tokens") -> int:
    """A token limit: an integer (not a bool) from 1 to :data:`MAX_TOKENS_LIMIT`."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest(f"{name}: Input should be a valid integer", param=name)
    if value < 1:
        raise InvalidRequest(f"{name}: must be greater than or equal to 1", param=name)
    if value > MAX_TOKENS_LIMIT:
        raise InvalidRequest(
            f"{name}: must be less than or equal to {MAX_TOKENS_LIMIT}", param=name
        )
    return value


def _messages(payload: dict[str, Any]) -> None:
    messages = payload.get("messages")
    if messages is None:
        raise InvalidRequest("messages: Field required")
    if not isinstance(messages, list):
        raise InvalidRequest("messages: Input should be a valid list")
    check_messages(messages)
    check_fields(payload, ANTHROPIC_FIELDS)


def parse_messages(raw: bytes) -> ParsedRequest:
    """A ``POST /v1/messages`` body."""
    payload = load_object(raw)
    model = model_name(payload)
    max_tokens = payload.get("max_tokens")
    if max_tokens is None:
        raise InvalidRequest("max_tokens: Field required")
    max_tokens = max_tokens_value(max_tokens)
    _messages(payload)
    stream = payload.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequest("stream: Input should be a valid boolean")
    return ParsedRequest(model, stream, max_tokens, payload, raw)


def parse_count_tokens(raw: bytes) -> ParsedRequest:
    """A ``POST /v1/messages/count_tokens`` body (no ``max_tokens``, never streamed)."""
    payload = load_object(raw)
    model = model_name(payload)
    _messages(payload)
    return ParsedRequest(model, False, None, payload, raw)


def model_object(model_id: str) -> dict[str, Any]:
    return {
        "type": "model",
        "id": model_id,
        "display_name": display_name(model_id),
        "created_at": UNKNOWN_RELEASE,
    }


def _int_param(params: dict[str, list[str]], name: str, default: int) -> int:
    values = params.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise InvalidRequest(f"{name}: Input should be a valid integer") from None
    if not 1 <= value <= 1000:
        raise InvalidRequest(f"{name}: must be between 1 and 1000")
    return value


def model_page(model_ids: Sequence[str], query_string: bytes) -> dict[str, Any]:
    """Anthropic's paginated list shape, honouring ``limit``, ``after_id`` and ``before_id``."""
    params = parse_qs(query_string.decode("latin-1"))
    limit = _int_param(params, "limit", 20)
    ids = list(model_ids)
    after = params.get("after_id", [None])[0]
    before = params.get("before_id", [None])[0]
    if after is not None:
        ids = ids[ids.index(after) + 1 :] if after in ids else []
        page = ids[:limit]
    elif before is not None:
        ids = ids[: ids.index(before)] if before in ids else []
        page = ids[-limit:]
    else:
        page = ids[:limit]
    return {
        "data": [model_object(m) for m in page],
        "has_more": len(ids) > len(page),
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }

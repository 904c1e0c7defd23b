"""The verdict on a stream's first event: commit to this upstream, or try another.

An upstream may accept a streamed request (200) and fail at once: its first event is then
an SSE ``error`` event (Anthropic) or a chunk holding a top-level ``error`` (OpenAI style).
Such a stream counts like the status its error type stands for; an empty stream like a
dropped connection; anything else commits the stream to the client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import orjson

from sluicegate.delivery.retry_policy import (
    Outcome,
    Verdict,
    classify_status,
    classify_transport,
)
from sluicegate.errors import UpstreamUnavailable

# The status an upstream's stream-level error event stands for (Anthropic error types).
_EVENT_STATUS = {
    "overloaded_error": 529,
    "api_error": 500,
    "rate_limit_error": 429,
    "timeout_error": 504,
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "billing_error": 402,
}

COMMIT = Verdict(Outcome.FATAL, None, "ok")  # FATAL: relay it, whatever it is


def first_event_verdict(event: bytes, headers: Mapping[str, str]) -> Verdict:
    """``event``: the bytes read up to the first complete SSE event (or the end)."""
    if not event or event.isspace():
        return classify_transport(
            UpstreamUnavailable("The upstream closed the stream before its first event.")
        )
    head = event[:64].lstrip()  # no copy of what may be the whole stream
    if head.startswith((b"event: error", b"event:error")):
        error_type = _event_error_type(event)
    elif head.startswith(b"data:") and b'"error"' in event:
        # OpenAI-style streams have no event names: an error is a chunk whose JSON has a
        # top-level "error" (not any chunk that mentions the word).
        error_type = _event_error_type(event)
        if error_type is None:
            return COMMIT
    else:
        return COMMIT
    status = _EVENT_STATUS.get(error_type or "", 500)  # unknown types: a server error
    return classify_status(status, headers, None)


def _event_error_type(event: bytes) -> str | None:
    """The ``error.type`` of an event whose data is an error object; "" for an error
    without a usable type; None when the data holds no top-level error."""
    for line in event.splitlines():
        if line.startswith(b"data:"):
            with contextlib.suppress(orjson.JSONDecodeError):
                payload = orjson.loads(line[5:].strip())
                if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
                    error_type = payload["error"].get("type")
                    return error_type if isinstance(error_type, str) else ""
    return None

"""Error bodies across the two wire shapes, used by the gateway in both directions.

An upstream error must reach the client in the shape of the client's own API, with the
upstream's message intact (people and tools read it) and a type the client's SDK knows.
The HTTP status is the gateway's to choose; these functions only build bodies.

Anthropic -> OpenAI ``(type, code)`` follows what OpenAI itself answers for the same failure:

=====================  ============================  ====================
Anthropic type         OpenAI type                   OpenAI code
=====================  ============================  ====================
invalid_request_error  invalid_request_error         null
authentication_error   invalid_request_error         invalid_api_key
billing_error          insufficient_quota            insufficient_quota
permission_error       permission_error              null
not_found_error        invalid_request_error         model_not_found
request_too_large      invalid_request_error         request_too_large
rate_limit_error       requests                      rate_limit_exceeded
timeout_error          timeout                       null
api_error              server_error                  null
overloaded_error       server_error                  overloaded
(other / unparsable)   from the status (see below)   null
=====================  ============================  ====================
"""

from __future__ import annotations

from typing import Any

import orjson

# Anthropic error type -> (OpenAI error type, OpenAI error code).
_A2O: dict[str, tuple[str, str | None]] = {
    "invalid_request_error": ("invalid_request_error", None),
    # OpenAI answers a bad key with invalid_request_error + code invalid_api_key.
    "authentication_error": ("invalid_request_error", "invalid_api_key"),
    # OpenAI's "out of credit" is insufficient_quota; clients stop retrying on that code.
    "billing_error": ("insufficient_quota", "insufficient_quota"),
    "permission_error": ("permission_error", None),
    # On /v1/messages the only missing resource is the model.
    "not_found_error": ("invalid_request_error", "model_not_found"),
    "request_too_large": ("invalid_request_error", "request_too_large"),
    # OpenAI says "requests" or "tokens"; Anthropic's body does not say which, and the
    # message text must not be parsed to find out. Clients match on the code.
    "rate_limit_error": ("requests", "rate_limit_exceeded"),
    "timeout_error": ("timeout", None),
    "api_error": ("server_error", None),
    "overloaded_error": ("server_error", "overloaded"),
}

# HTTP status -> Anthropic error type, for errors whose body names no usable type.
_STATUS_TO_ANTHROPIC: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}

# Longest upstream non-JSON body text quoted back (an HTML error page is not a message).
_MAX_RAW_MESSAGE = 500


def openai_error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    """OpenAI's error shape with all four keys present, as SDKs and clients expect."""
    return orjson.dumps({"error": openai_error_object(message, type_, param=param, code=code)})


def openai_error_object(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"message": message, "type": type_, "param": param, "code": code}


def anthropic_error_body(type_: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": type_, "message": message}})


def anthropic_status_type(status: int) -> str:
    """The Anthropic error type for an HTTP status (unknown 4xx: invalid request)."""
    known = _STATUS_TO_ANTHROPIC.get(status)
    if known is not None:
        return known
    return "api_error" if status >= 500 else "invalid_request_error"


def openai_type_and_code(anthropic_type: Any, status: int) -> tuple[str, str | None]:
    """OpenAI ``(type, code)`` for an Anthropic error type; falls back on the status."""
    if isinstance(anthropic_type, str) and anthropic_type in _A2O:
        return _A2O[anthropic_type]
    fallback = _A2O.get(anthropic_status_type(status))
    return (fallback[0], None) if fallback else ("server_error", None)


def as_openai_type(error_type: str) -> tuple[str, str | None]:
    """OpenAI ``(type, code)`` for an Anthropic error type; any other type is kept as is."""
    return _A2O.get(error_type, (error_type, None))


def anthropic_error_to_openai(status: int, body: bytes) -> bytes:
    """An upstream Anthropic error body, re-shaped for an OpenAI client (message kept)."""
    parsed = _loads(body)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    kind: str | None = None
    message: str | None = None
    if isinstance(error, dict):
        kind = _str_or_none(error.get("type"))
        message = _str_or_none(error.get("message"))
    type_, code = openai_type_and_code(kind, status)
    return openai_error_body(message or _raw_message(status, body), type_, code=code)


def openai_error_to_anthropic(status: int, body: bytes) -> bytes:
    """An upstream OpenAI(-compatible) error body, re-shaped for an Anthropic client.

    Accepts OpenAI's ``{"error": {...}}``, vLLM's top-level ``{"message", ...}`` and
    Ollama's ``{"error": "text"}``. The type comes from the status, except that OpenAI's
    ``insufficient_quota`` code (a 429 that retrying cannot fix) becomes ``billing_error``.
    """
    parsed = _loads(body)
    message: str | None = None
    code: str | None = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            message = _str_or_none(error.get("message"))
            code = _str_or_none(error.get("code"))
        elif isinstance(error, str):
            message = error
        if message is None:
            message = _str_or_none(parsed.get("message"))
    kind = "billing_error" if code == "insufficient_quota" else anthropic_status_type(status)
    return anthropic_error_body(kind, message or _raw_message(status, body))


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _raw_message(status: int, body: bytes) -> str:
    """A message for an error body that carried none: its text if short and plain."""
    text = body.decode("utf-8", "replace").strip()
    if text and len(text) <= _MAX_RAW_MESSAGE and not text.startswith("<"):
        return f"Upstream error (HTTP {status}): {text}"
    return f"Upstream error (HTTP {status})"

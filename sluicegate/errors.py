"""Errors the gateway makes itself, typed once and rendered per client surface.

Every refusal or failure the gateway produces is a :class:`GatewayError` subclass carrying
its HTTP status, the Anthropic error ``type`` and whether a client may usefully retry.
Rendering is the only place that knows the wire shape, so a handler never formats JSON
errors by hand. Messages are written for the caller and never contain secrets or
exception text from lower layers.
"""

from __future__ import annotations

from typing import Any

from sluicegate.translate.error_shapes import anthropic_error_body, openai_error_body


class GatewayError(Exception):
    status: int = 500
    error_type: str = "api_error"  # Anthropic's error type
    openai_type: str = "server_error"  # OpenAI's error type for the same failure
    openai_code: str | None = None
    openai_status: int | None = None  # the status on OpenAI routes, when not ``status``
    # None: let the client decide from the status. False: tell SDKs retrying cannot help.
    should_retry: bool | None = None
    # Rate-limit windows (sluicegate.state.base.WindowState) to report in headers, if any.
    windows: tuple[Any, ...] = ()
    # A limit's refusal: (limit, scope kind), e.g. ("rpm", "partner"), for metrics.
    limit: tuple[str, str] | None = None

    def __init__(
        self, message: str, *, retry_after: float | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.param = param  # the request field at fault, when known (OpenAI's "param")


class InvalidRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"
    openai_type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    error_type = "authentication_error"
    openai_type = "invalid_request_error"  # what OpenAI itself answers for a bad key
    openai_code = "invalid_api_key"
    should_retry = False


class PermissionDenied(GatewayError):
    status = 403
    error_type = "permission_error"
    openai_type = "permission_error"
    openai_code = "model_not_allowed"
    should_retry = False


class NotFound(GatewayError):
    status = 404
    error_type = "not_found_error"
    openai_type = "invalid_request_error"
    openai_code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    error_type = "invalid_request_error"
    openai_type = "invalid_request_error"
    openai_code = "method_not_allowed"


class RequestTooLarge(GatewayError):
    status = 413
    error_type = "request_too_large"
    openai_type = "invalid_request_error"
    openai_code = "request_too_large"
    should_retry = False


class HeadersTooLarge(GatewayError):
    """The request's header block is over the gateway's size or count limit."""

    status = 431
    error_type = "request_too_large"
    openai_type = "invalid_request_error"
    openai_code = "request_header_fields_too_large"
    should_retry = False


class UriTooLong(GatewayError):
    status = 414
    error_type = "request_too_large"
    openai_type = "invalid_request_error"
    openai_code = "uri_too_long"
    should_retry = False


class RateLimited(GatewayError):
    """A rate limit (requests, tokens or concurrency) of the key, partner or gateway."""

    status = 429
    error_type = "rate_limit_error"
    openai_type = "requests"  # OpenAI names the exhausted resource: requests | tokens
    openai_code = "rate_limit_exceeded"

    def __init__(
        self, message: str, *, retry_after: float | None = None, tokens: bool = False
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        if tokens:
            self.openai_type = "tokens"


class BudgetExceeded(GatewayError):
    """A key's or partner's budget is spent: retrying cannot help until the period ends."""

    status = 429
    error_type = "rate_limit_error"
    openai_type = "insufficient_quota"
    openai_code = "budget_exceeded"
    should_retry = False


class LimitsUnavailable(GatewayError):
    """The shared limit store is down and the gateway is set to fail closed."""

    status = 503
    error_type = "api_error"
    openai_code = "limits_unavailable"


class Overloaded(GatewayError):
    """Every route that could serve the request is unavailable (circuit breakers open)."""

    status = 529  # Anthropic's overloaded status; OpenAI clients know 503 for the same
    openai_status = 503
    error_type = "overloaded_error"
    openai_code = "overloaded"


class UpstreamUnavailable(GatewayError):
    """The upstream could not be reached or failed before sending a response."""

    status = 502
    error_type = "api_error"
    openai_code = "upstream_unavailable"


class UpstreamTimeout(GatewayError):
    status = 504
    error_type = "timeout_error"
    openai_type = "timeout"
    openai_code = "upstream_timeout"


class InternalError(GatewayError):
    """A fault inside the gateway itself (a bug): logged with its traceback."""

    status = 500
    error_type = "api_error"


def render_anthropic(error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, body and extra headers of ``error`` on the Anthropic surface."""
    return (
        error.status,
        anthropic_error_body(error.error_type, error.message),
        _retry_headers(error),
    )


def _retry_headers(error: GatewayError) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    if error.should_retry is not None:
        headers.append((b"x-should-retry", b"true" if error.should_retry else b"false"))
    if error.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(error.retry_after))).encode()))
    return headers


def render_openai(error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, body and extra headers of ``error`` on the OpenAI surface."""
    body = openai_error_body(
        error.message, error.openai_type, param=error.param, code=error.openai_code
    )
    return error.openai_status or error.status, body, _retry_headers(error)


def sse_error_event(error_type: str, message: str) -> bytes:
    """An Anthropic SSE ``error`` event: how a failure is reported once a stream started."""
    return b"event: error\ndata: " + anthropic_error_body(error_type, message) + b"\n\n"

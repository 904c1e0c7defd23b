"""Errors the gateway makes itself, typed once and rendered per client surface.

Every refusal or failure the gateway produces is a :class:`GatewayError` subclass carrying
its HTTP status, the Anthropic error ``type`` and whether a client may usefully retry.
Rendering is the only place that knows the wire shape, so a handler never formats JSON
errors by hand. Messages are written for the caller and never contain secrets or
exception text from lower layers.
"""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    status: int = 500
    error_type: str = "api_error"
    # None: let the client decide from the status. False: tell SDKs retrying cannot help.
    should_retry: bool | None = None

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    @property
    def metric_label(self) -> str:
        return self.error_type


class InvalidRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    error_type = "authentication_error"
    should_retry = False


class PermissionDenied(GatewayError):
    status = 403
    error_type = "permission_error"
    should_retry = False


class NotFound(GatewayError):
    status = 404
    error_type = "not_found_error"


class RequestTooLarge(GatewayError):
    status = 413
    error_type = "request_too_large"
    should_retry = False


class UpstreamUnavailable(GatewayError):
    """The upstream could not be reached or failed before sending a response."""

    status = 502
    error_type = "api_error"


class UpstreamTimeout(GatewayError):
    status = 504
    error_type = "timeout_error"


class InternalError(GatewayError):
    """A fault inside the gateway itself (a bug): logged with its traceback."""

    status = 500
    error_type = "api_error"


class ServiceUnavailable(GatewayError):
    status = 503
    error_type = "api_error"


def anthropic_error_body(error_type: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})


def render_anthropic(error: GatewayError) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, body and extra headers of ``error`` on the Anthropic surface."""
    headers: list[tuple[bytes, bytes]] = []
    if error.should_retry is not None:
        headers.append((b"x-should-retry", b"true" if error.should_retry else b"false"))
    if error.retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(error.retry_after))).encode()))
    return error.status, anthropic_error_body(error.error_type, error.message), headers


def sse_error_event(error_type: str, message: str) -> bytes:
    """An Anthropic SSE ``error`` event: how a failure is reported once a stream started."""
    return b"event: error\ndata: " + anthropic_error_body(error_type, message) + b"\n\n"

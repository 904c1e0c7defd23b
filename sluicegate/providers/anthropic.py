"""Anthropic Messages API upstream: URL, auth header, version and beta headers."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from sluicegate import __version__
from sluicegate.providers.base import UpstreamCall, UpstreamResponse, open_response

USER_AGENT = f"sluicegate/{__version__}"
# W3C trace context, forwarded so the provider's side of a trace joins the caller's. With
# tracing on, the pipeline has already put the gateway's attempt span here; with tracing
# off, the client's own values pass through unchanged, so a trace the client started still
# reaches the provider (the gateway is then simply not part of it).
TRACE_HEADERS = ("traceparent", "tracestate")


def trace_headers(client_headers: Mapping[str, str]) -> dict[str, str]:
    """The trace context headers present in ``client_headers`` (names lower-case)."""
    if "traceparent" not in client_headers and "tracestate" not in client_headers:
        return {}  # the common case, kept cheap: this runs for every upstream call
    return {name: client_headers[name] for name in TRACE_HEADERS if name in client_headers}


class AnthropicProvider:
    def __init__(self, session: aiohttp.ClientSession, default_version: str) -> None:
        self._session = session
        self._default_version = default_version

    def headers_for(self, call: UpstreamCall) -> dict[str, str]:
        # Every anthropic-* header (version, beta, ...) travels unchanged: a beta body field
        # and its header must arrive together. The client's own credential never does.
        headers = {
            name: value
            for name, value in call.client_headers.items()
            if name.startswith("anthropic-")
        }
        headers.update(trace_headers(call.client_headers))
        headers.setdefault("anthropic-version", self._default_version)
        headers["content-type"] = "application/json"
        headers["user-agent"] = USER_AGENT
        if call.stream:
            headers["accept"] = "text/event-stream"
        headers.update(call.deployment.extra_headers)
        key = call.deployment.api_key
        if key is not None:
            headers["x-api-key"] = key.reveal()
        return headers

    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        url = call.deployment.api_base + call.path
        return await open_response(
            self._session, url, call.body, self.headers_for(call), call.deployment, call.stream
        )

"""Anthropic Messages API upstream: URL, auth header, version and beta headers."""

from __future__ import annotations

import aiohttp

from sluicegate import __version__
from sluicegate.providers.base import UpstreamCall, UpstreamResponse, open_response

USER_AGENT = f"sluicegate/{__version__}"


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

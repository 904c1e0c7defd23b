"""OpenAI Chat Completions upstream, and OpenAI-compatible servers (vLLM, Ollama, llama.cpp).

An "OpenAI-compatible server" is this provider with another ``api_base`` and a few settings
(auth style, extra headers; request-shape quirks live in translate/quirks.py), not a
provider of its own. ``api_base`` includes the API version path, as OpenAI's own clients
expect: ``https://api.openai.com/v1``, ``http://localhost:8000/v1``.
"""

from __future__ import annotations

import aiohttp

from sluicegate.providers.anthropic import USER_AGENT, trace_headers
from sluicegate.providers.base import UpstreamCall, UpstreamResponse, open_response

CHAT_PATH = "/chat/completions"


class OpenAIProvider:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    @staticmethod
    def headers_for(call: UpstreamCall) -> dict[str, str]:
        # No client header is forwarded but the trace context (see anthropic.TRACE_HEADERS):
        # organisation/project headers belong to the gateway's upstream account, not to
        # the partner calling it.
        deployment = call.deployment
        headers = trace_headers(call.client_headers)
        headers.update(deployment.extra_headers)
        headers["content-type"] = "application/json"
        headers["user-agent"] = USER_AGENT
        if call.stream:
            headers["accept"] = "text/event-stream"
        key = deployment.api_key
        if key is not None and deployment.auth_style == "bearer":
            headers["authorization"] = f"Bearer {key.reveal()}"
        elif key is not None and deployment.auth_style == "api-key":
            headers["api-key"] = key.reveal()
        return headers

    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        url = call.deployment.api_base + call.path
        return await open_response(
            self._session, url, call.body, self.headers_for(call), call.deployment, call.stream
        )

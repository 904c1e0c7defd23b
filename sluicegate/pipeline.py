"""The data path, top to bottom (DESIGN.md §1):

    api/anthropic     parse just enough (model, stream, max_tokens); errors in Anthropic shape
    policy/auth       gateway key -> Principal (in-process map, no database read)
    (policy/limits)   seam: reserve RPM/TPM/concurrency          -- later issue
    (policy/budgets)  seam: reserve worst-case cost              -- later issue
    routing/router    model alias -> routes (deployment + upstream model id)
    providers/*       HTTP only: URL, headers, auth; transport errors -> typed errors
    api/relay         JSON or SSE back to the client; stream failures -> SSE error event
    settle            usage observed -> one structured log line (ledger: later issue)

Every stage raises :class:`GatewayError` for a refusal; :meth:`Pipeline._refuse` renders it
in the surface's shape. Nothing after the first byte sent to the client can change the
status: later failures are reported inside the stream.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from sluicegate.api.anthropic import ParsedRequest, model_page, parse_count_tokens, parse_messages
from sluicegate.api.asgi import (
    JSON_CONTENT,
    ClientDisconnected,
    HeaderList,
    Receive,
    Request,
    Send,
    new_request_id,
    read_body,
    send_bytes,
    send_json,
)
from sluicegate.api.relay import cancel_on_disconnect, relay_body, relay_stream
from sluicegate.api.sse import Usage
from sluicegate.errors import (
    GatewayError,
    InternalError,
    NotFound,
    PermissionDenied,
    render_anthropic,
)
from sluicegate.observe.logging import RequestLog
from sluicegate.policy.auth import KeyCache, Principal, credentials_from_headers
from sluicegate.providers.base import Provider, UpstreamCall, UpstreamResponse
from sluicegate.routing.router import Route, Router

CLIENT_DISCONNECTED = 499  # nginx's convention, for logs only
INTERNAL_ERROR_MESSAGE = "The gateway failed to handle this request; see its log."

log = logging.getLogger("sluicegate.pipeline")


@dataclass(slots=True)
class RequestRecord:
    """What one request did; becomes the structured log line (and later the ledger row)."""

    request_id: str
    endpoint: str
    started: float = field(default_factory=time.perf_counter)
    key_name: str | None = None
    model: str | None = None
    deployment: str | None = None
    upstream_model: str | None = None
    upstream_request_id: str | None = None
    stream: bool = False
    status: int = 0
    error_type: str | None = None
    first_token_at: float | None = None
    usage: Usage | None = None
    session_id: str | None = None
    committed: bool = False  # has the response (status line) been handed to the relay?

    def fields(self) -> dict[str, Any]:
        now = time.perf_counter()
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "status": self.status,
            "key_name": self.key_name,
            "model": self.model,
            "deployment": self.deployment,
            "upstream_model": self.upstream_model,
            "stream": self.stream,
            "upstream_request_id": self.upstream_request_id,
            "latency_ms": round((now - self.started) * 1000, 2),
        }
        if self.first_token_at is not None:
            out["ttft_ms"] = round((self.first_token_at - self.started) * 1000, 2)
        if self.usage is not None:
            out.update(
                input_tokens=self.usage.input_tokens,
                output_tokens=self.usage.output_tokens,
                cache_read_tokens=self.usage.cache_read_input_tokens,
                cache_write_tokens=self.usage.cache_creation_input_tokens,
            )
        if self.error_type:
            out["error_type"] = self.error_type
        if self.session_id:
            out["client_session_id"] = self.session_id
        return out


class Pipeline:
    def __init__(
        self,
        keys: KeyCache,
        router: Router,
        providers: dict[str, Provider],
        max_body_size: int,
        log: RequestLog,
    ) -> None:
        self._keys = keys
        self._router = router
        self._providers = providers
        self._max_body = max_body_size
        self._log = log

    # -- endpoints ---------------------------------------------------------------------

    async def messages(self, request: Request, receive: Receive, send: Send) -> None:
        await self._forward(request, receive, send, "/v1/messages")

    async def count_tokens(self, request: Request, receive: Receive, send: Send) -> None:
        # Forwarded, never estimated: a wrong count is worse than none (CLIENTS.md).
        # Not charged against inference limits when limits arrive.
        await self._forward(request, receive, send, "/v1/messages/count_tokens")

    async def list_models(self, request: Request, receive: Receive, send: Send) -> None:
        record = RequestRecord(new_request_id(), "models")
        headers = [(b"request-id", record.request_id.encode())]
        try:
            principal = await self._authenticate(request, record)
            allowed = [m for m in self._router.listed_models() if principal.may_use(m)]
            page = model_page(allowed, request.query_string)
        except GatewayError as error:
            await self._refuse(send, record, error)
            return
        record.status = 200
        await send_json(send, 200, page, headers)
        self._settle(record)

    # -- the data path -----------------------------------------------------------------

    async def _forward(self, request: Request, receive: Receive, send: Send, path: str) -> None:
        endpoint = "messages" if path == "/v1/messages" else "count_tokens"
        record = RequestRecord(new_request_id(), endpoint)
        record.session_id = request.header("x-claude-code-session-id")
        try:
            principal = await self._authenticate(request, record)
            body = await read_body(receive, request, self._max_body)
            parsed = parse_messages(body) if endpoint == "messages" else parse_count_tokens(body)
            record.model, record.stream = parsed.model, parsed.stream
            route = self._route(principal, parsed.model, record)
            # seams: limits.reserve(...) and budgets.reserve(...) go here (later issues)
            await cancel_on_disconnect(
                receive, self._exchange(send, record, route, parsed, request, path)
            )
        except GatewayError as error:
            await self._refuse(send, record, error)
            return
        except ClientDisconnected:
            record.status = CLIENT_DISCONNECTED
        except Exception:
            # A bug, not a refusal: keep the wire contract (an Anthropic-shaped 500 when no
            # byte was sent yet) and give the operator the traceback.
            log.exception("internal error serving %s", record.request_id)
            if not record.committed:
                await self._refuse(send, record, InternalError(INTERNAL_ERROR_MESSAGE))
                return
            record.status, record.error_type = 500, "api_error"
        self._settle(record)

    async def _exchange(
        self,
        send: Send,
        record: RequestRecord,
        route: Route,
        parsed: ParsedRequest,
        request: Request,
        path: str,
    ) -> None:
        """Call the upstream and deliver its answer to the client.

        Raises GatewayError only before the first byte went to the client; after that,
        failures are reported inside the stream by :func:`relay_stream`.
        """
        upstream = await self._send_upstream(route, parsed, request, path)
        record.status = upstream.status
        record.upstream_request_id = upstream.request_id
        headers: HeaderList = [(b"request-id", record.request_id.encode())]
        record.committed = True  # from here on the relay owns the response
        try:
            if parsed.stream and upstream.status < 300:
                observation = await relay_stream(send, upstream, headers)
                record.usage = observation.usage
                record.first_token_at = observation.first_token_at
                record.error_type = observation.error_type
            else:
                body = await upstream.read()
                await relay_body(send, upstream, body, headers)
                if record.endpoint == "messages" and upstream.status < 300:
                    record.usage = _json_usage(body)
        except BaseException:
            upstream.close()  # client gone or relay failed: don't reuse the connection
            raise

    async def _authenticate(self, request: Request, record: RequestRecord) -> Principal:
        candidates = credentials_from_headers(
            request.header("x-api-key"), request.header("authorization")
        )
        principal = await self._keys.authenticate(candidates)
        record.key_name = principal.key_name
        return principal

    def _route(self, principal: Principal, model: str, record: RequestRecord) -> Route:
        routes = self._router.resolve(model)
        if not routes:
            raise NotFound(f"model: {model} is not served by this gateway")
        if not principal.may_use(model):
            raise PermissionDenied(f"This API key is not allowed to use the model {model}.")
        route = routes[0]
        record.deployment = route.deployment.name
        record.upstream_model = route.upstream_model
        return route

    async def _send_upstream(
        self, route: Route, parsed: ParsedRequest, request: Request, path: str
    ) -> UpstreamResponse:
        deployment = route.deployment
        provider = self._providers.get(deployment.provider)
        counting = path.endswith("count_tokens")
        if provider is None or (counting and deployment.provider != "anthropic"):
            # No honest count is possible: 404 lets the client estimate for itself.
            raise NotFound(f"{path} is not available for the model {parsed.model}")
        call = UpstreamCall(
            deployment=deployment,
            path=path,
            body=parsed.body_for(route.upstream_model),
            client_headers=request.headers,
            stream=parsed.stream,
        )
        return await provider.send(call)

    # -- answers and settlement --------------------------------------------------------

    async def _refuse(self, send: Send, record: RequestRecord, error: GatewayError) -> None:
        status, body, extra = render_anthropic(error)
        record.status, record.error_type = status, error.error_type
        headers = [JSON_CONTENT, (b"request-id", record.request_id.encode()), *extra]
        await send_bytes(send, status, body, headers)
        self._settle(record)

    def _settle(self, record: RequestRecord) -> None:
        # Seam for limits.settle, budgets.charge and the usage ledger (later issues).
        if self._log.enabled:
            self._log.write(record.fields())


def _json_usage(body: bytes) -> Usage | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    usage = Usage()
    if isinstance(payload, dict):
        usage.update(payload.get("usage"))
    return usage

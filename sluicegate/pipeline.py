"""The data path, top to bottom (DESIGN.md §1):

    api/anthropic|openai  parse just enough (model, stream, limits); errors in THIS surface's shape
    policy/auth           gateway key -> Principal (in-process map, no database read)
    routing/router        model alias -> routes (deployment + upstream model id)
    delivery (plan)       the routes to try, ordered, then fallback aliases
    policy/limits         reserve RPM/TPM/concurrency per key, partner, deployment, global
                          and the worst-case cost per budget; fair queue for shared capacity
    delivery (open)       attempts along the plan (retries, backoff, breakers) until an
                          answer can be committed; nothing reaches the client before that
    translate/*           only when the client's format differs from the upstream's
    providers/*           HTTP only: URL, headers, auth; transport errors -> typed errors
    api/relay|translated  JSON or SSE back to the client; stream failures -> in-stream errors
    settle                usage -> limits and budgets settled, cost, one log line, a ledger row

Every stage raises :class:`GatewayError` for a refusal; :meth:`Pipeline._refuse` renders it
in the surface's shape. Nothing after the first byte sent to the client can change the
status: later failures are reported inside the stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

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
from sluicegate.api.json_body import dumps_forwarded, require_depth
from sluicegate.api.openai import include_usage, openai_model_list, parse_chat
from sluicegate.api.relay import StreamObserver, cancel_on_disconnect, relay_body, relay_stream
from sluicegate.api.sse import SSEObserver, Usage
from sluicegate.api.sse_openai import (
    OpenAIStreamObserver,
    openai_stream_error,
    usage_from_openai,
)
from sluicegate.api.translated import Translation, translation_for
from sluicegate.delivery.attempts import Deliverer
from sluicegate.errors import (
    GatewayError,
    InternalError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    render_anthropic,
    render_openai,
    sse_error_event,
)
from sluicegate.observe.hub import Observability, SendUpstream
from sluicegate.observe.logging import RequestLog
from sluicegate.policy.auth import KeyCache, Principal
from sluicegate.policy.authenticator import Authenticated, Authenticator
from sluicegate.policy.estimate import estimate_input_tokens
from sluicegate.policy.hmac_auth import SignedRequest
from sluicegate.policy.limits import Governor, Ticket, deadline_from
from sluicegate.policy.ratelimit_headers import ratelimit_headers
from sluicegate.policy.stream_usage import charged_stream_usage
from sluicegate.providers.base import Provider, UpstreamCall, UpstreamResponse
from sluicegate.record import RequestRecord
from sluicegate.routing.router import Deployment, Route, Router
from sluicegate.store.ledger_writer import LedgerWriter

CLIENT_DISCONNECTED = 499  # nginx's convention, for logs only
INTERNAL_ERROR_MESSAGE = "The gateway failed to handle this request; see its log."
# Where each upstream family takes a generation request, after its api_base.
GENERATE_PATHS = {"anthropic": "/v1/messages", "openai": "/chat/completions"}
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"

log = logging.getLogger("sluicegate.pipeline")


@dataclass(frozen=True, slots=True)
class Surface:
    """A wire format clients speak to the gateway, and how to answer in it."""

    name: str  # "anthropic" | "openai"; equals the provider name that speaks it upstream
    render_error: Callable[[GatewayError], tuple[int, bytes, HeaderList]]
    stream_error: Callable[[str, str], bytes]
    new_observer: Callable[[], StreamObserver]


ANTHROPIC = Surface("anthropic", render_anthropic, sse_error_event, SSEObserver)
OPENAI = Surface("openai", render_openai, openai_stream_error, OpenAIStreamObserver)


class Pipeline:
    def __init__(
        self,
        keys: KeyCache,
        router: Router,
        providers: dict[str, Provider],
        max_body_size: int,
        log: RequestLog,
        governor: Governor,
        ledger: LedgerWriter | None,
        deliverer: Deliverer,
        observe: Observability,
        log_bodies: bool = False,
        auth: Authenticator | None = None,
    ) -> None:
        self._auth = auth if auth is not None else Authenticator(keys)
        self._router = router
        self._providers = providers
        self._max_body = max_body_size
        self._log = log
        self._governor = governor
        self._ledger = ledger
        self._deliverer = deliverer
        self._request_timeout = deliverer.request_timeout
        self._observe = observe
        self._log_bodies = log_bodies

    # -- endpoints ---------------------------------------------------------------------

    async def messages(self, request: Request, receive: Receive, send: Send) -> None:
        await self._forward(request, receive, send, ANTHROPIC, "messages")

    async def count_tokens(self, request: Request, receive: Receive, send: Send) -> None:
        # Forwarded, never estimated: a wrong count is worse than none (CLIENTS.md).
        # Not charged against inference limits when limits arrive.
        await self._forward(request, receive, send, ANTHROPIC, "count_tokens")

    async def chat_completions(self, request: Request, receive: Receive, send: Send) -> None:
        await self._forward(request, receive, send, OPENAI, "chat_completions")

    async def list_models(self, request: Request, receive: Receive, send: Send) -> None:
        # Anthropic's clients always send anthropic-version; OpenAI's never do.
        surface = ANTHROPIC if request.header("anthropic-version") else OPENAI
        record = RequestRecord(new_request_id(), "models", surface=surface.name)
        self._observe.started(record, surface.name, None)
        try:
            principal, signed = await self._authenticate(request, record)
            if signed is not None:  # HMAC: the signature covers the body (empty, normally)
                await _verify(signed, record, await read_body(receive, request, self._max_body))
            allowed = [m for m in self._router.listed_models() if principal.may_use(m)]
            page = (
                model_page(allowed, request.query_string)
                if surface is ANTHROPIC
                else openai_model_list(allowed)
            )
        except GatewayError as error:
            await self._refuse(send, record, error, surface)
            self._settle(record)
            return
        record.status = 200
        await send_json(send, 200, page, [(b"request-id", record.request_id.encode())])
        self._settle(record)

    # -- the data path -----------------------------------------------------------------

    async def _forward(
        self, request: Request, receive: Receive, send: Send, surface: Surface, endpoint: str
    ) -> None:
        record = RequestRecord(new_request_id(), endpoint, surface=surface.name)
        self._observe.started(record, surface.name, request)
        record.session_id = request.header("x-claude-code-session-id")
        record.agent_id = request.header("x-claude-code-agent-id")
        ticket: Ticket | None = None
        try:
            principal, signed = await self._authenticate(request, record)
            body = await read_body(receive, request, self._max_body)
            if signed is not None:  # HMAC: verified before anything uses the body
                await _verify(signed, record, body)
            if self._log_bodies:
                record.request_body = body
            parsed = _PARSERS[endpoint](body)
            record.model, record.stream = parsed.model, parsed.stream
            plan = self._plan(principal, parsed, record)
            client_deadline = deadline_from(request.header("x-stainless-timeout"))
            if endpoint != "count_tokens":  # token counting is not inference (CLIENTS.md)
                ticket = await self._governor.admit(
                    principal, plan[0], parsed, record.request_id, client_deadline
                )
                record.queue_wait = ticket.waited
            headers: HeaderList = [(b"request-id", record.request_id.encode())]
            if ticket is not None:
                headers += ratelimit_headers(surface.name, ticket.windows)
            deadline = time.monotonic() + self._request_timeout
            if client_deadline is not None:
                deadline = min(deadline, client_deadline)
            await cancel_on_disconnect(
                receive,
                self._exchange(
                    send, record, plan, parsed, request, surface, endpoint, headers, deadline
                ),
            )
        except GatewayError as error:
            await self._refuse(send, record, error, surface)
        except ClientDisconnected:
            record.status = CLIENT_DISCONNECTED
        except Exception:
            # A bug, not a refusal: keep the wire contract (a 500 in the surface's shape
            # when no byte was sent yet) and give the operator the traceback.
            log.exception("internal error serving %s", record.request_id)
            if not record.committed:
                await self._refuse(send, record, InternalError(INTERNAL_ERROR_MESSAGE), surface)
            else:
                record.status, record.error_type = 500, "api_error"
        finally:  # also when the task is cancelled (shutdown): every request is ledgered
            if ticket is not None:
                if record.served_by is not None:  # a fallback's price may differ
                    self._governor.reprice(ticket, record.served_by, record.upstream_model)
                record.cost_usd = await self._governor.settle(ticket, record.usage)
            self._settle(record)

    def _upstream_call(
        self,
        route: Route,
        parsed: ParsedRequest,
        request: Request,
        endpoint: str,
        translation: Translation | None,
    ) -> UpstreamCall:
        deployment = route.deployment
        if endpoint == "count_tokens":
            if deployment.provider != "anthropic":
                # No honest count is possible: 404 lets the client estimate for itself.
                raise NotFound(f"count_tokens is not available for the model {parsed.model}")
            path = COUNT_TOKENS_PATH
        else:
            path = GENERATE_PATHS[deployment.provider]
        client_headers = request.headers
        if translation is None and _adds_usage(parsed, deployment):
            options = parsed.payload.get("stream_options") or {}
            body = dumps_forwarded(
                {
                    **parsed.payload,
                    "model": route.upstream_model,
                    "stream_options": {**options, "include_usage": True},
                }
            )
        elif translation is None:
            body = parsed.body_for(route.upstream_model)
        else:
            require_depth(parsed.raw, parsed.payload)  # the translators walk the request
            body, extra_headers = translation.request(parsed, route)
            if extra_headers:
                client_headers = {**client_headers, **extra_headers}
        return UpstreamCall(deployment, path, body, client_headers, parsed.stream)

    async def _exchange(
        self,
        send: Send,
        record: RequestRecord,
        plan: list[Route],
        parsed: ParsedRequest,
        request: Request,
        surface: Surface,
        endpoint: str,
        headers: HeaderList,
        deadline: float,
    ) -> None:
        """Get an answer from the plan's routes and deliver it to the client.

        Raises GatewayError only before the first byte went to the client; after that,
        failures are reported inside the stream.
        """

        def prepare(route: Route) -> tuple[UpstreamCall, Translation | None]:
            translation = translation_for(surface.name, route.deployment.provider, endpoint)
            call = self._upstream_call(route, parsed, request, endpoint, translation)
            if record.upstream_started is None:  # the gateway's own time ends here
                record.upstream_started = time.perf_counter()
            return call, translation

        call_upstream: SendUpstream = self._send
        if record.trace is not None:
            call_upstream = self._observe.traced(record, call_upstream)
        opened = await self._deliverer.open(plan, prepare, call_upstream, deadline, parsed.stream)
        answered = time.perf_counter()
        call, translation, upstream = opened.call, opened.translation, opened.upstream
        deployment = opened.route.deployment
        record.deployment, record.upstream_model = deployment.name, opened.route.upstream_model
        record.provider, record.served_alias = deployment.provider, deployment.alias
        record.attempts = opened.attempts
        if opened.route is not plan[0]:  # priced as admitted unless another route served
            fallback = deployment.alias != plan[0].deployment.alias
            # The name its price is found by: the client's model on the requested alias,
            # the fallback alias's name on a fallback.
            record.served_by = deployment.alias if fallback else parsed.model
        record.status = upstream.status
        record.upstream_request_id = upstream.request_id
        streaming = parsed.stream and upstream.status < 300
        if streaming:
            self._observe.stream_started(surface.name)
        try:
            if translation is None and not streaming:
                # Read whole before the headers go out (the deliverer has read a JSON answer
                # already; an error answer to a stream request is read here).
                body = await upstream.read()
            # The gateway's own time: until the first upstream call, and from the
            # upstream's answer until now (the answer's headers go out next).
            record.overhead = (
                (record.upstream_started or answered) - record.started - record.queue_wait
            ) + (time.perf_counter() - answered)
            headers = [
                *headers,
                (b"x-sluicegate-deployment", deployment.name.encode()),
                (b"x-sluicegate-attempts", str(opened.attempts).encode()),
                (b"x-sluicegate-overhead-ms", f"{record.overhead * 1000:.2f}".encode()),
            ]
            if translation is not None:
                await translation.deliver(send, upstream, headers, record, parsed)
            elif streaming:
                record.committed = True
                observer = surface.new_observer()
                if isinstance(observer, OpenAIStreamObserver):
                    observer.hide_usage = _adds_usage(parsed, call.deployment)
                try:
                    await relay_stream(send, upstream, headers, observer, surface.stream_error)
                finally:
                    # Also when the client left mid-stream: what was generated until then
                    # is charged and ledgered.
                    seen = observer.observation
                    record.usage = charged_stream_usage(seen, parsed)
                    record.first_token_at = seen.first_token_at
                    record.error_type = seen.error_type
            else:
                record.committed = True
                await relay_body(send, upstream, body, headers)
                if record.endpoint != "count_tokens" and upstream.status < 300:
                    record.usage = _json_usage(body, surface)
                if self._log_bodies:
                    record.response_body = body
        except BaseException:
            upstream.close()  # client gone or relay failed: don't reuse the connection
            raise
        finally:
            if streaming:
                self._observe.stream_ended(surface.name)

    async def _authenticate(self, request: Request, record: RequestRecord) -> Authenticated:
        authenticated = await self._auth.authenticate(request, record.request_id)
        principal, signed = authenticated
        if signed is None:  # a signed request is attributed once its body is verified
            _attribute(record, principal)
        return authenticated

    def _send(self, call: UpstreamCall) -> Awaitable[UpstreamResponse]:
        return self._providers[call.deployment.provider].send(call)

    def _plan(
        self, principal: Principal, parsed: ParsedRequest, record: RequestRecord
    ) -> list[Route]:
        """The routes to try for this request, best first (see delivery.attempts)."""
        model = parsed.model
        routes = self._router.resolve(model)
        if not routes:
            raise NotFound(f"model: {model} is not served by this gateway", param="model")
        if not principal.may_use(model):
            raise PermissionDenied(
                f"This API key is not allowed to use the model {model}.", param="model"
            )
        plan = self._deliverer.plan(model, routes, lambda: estimate_input_tokens(
            parsed.raw, parsed.payload
        ))
        if not plan:
            raise InvalidRequest(
                f"The request is larger than the context window of every deployment that "
                f"serves {model}.",
                param="messages",
            )
        first = plan[0]
        record.alias, record.provider = first.deployment.alias, first.deployment.provider
        record.deployment = first.deployment.name
        record.upstream_model = first.upstream_model
        return plan

    # -- answers and settlement --------------------------------------------------------

    async def _refuse(
        self, send: Send, record: RequestRecord, error: GatewayError, surface: Surface
    ) -> None:
        """Answer ``error`` in the surface's shape (the caller settles the record)."""
        status, body, extra = surface.render_error(error)
        record.status, record.error_type = status, error.error_type
        record.limited = error.limit
        headers = [JSON_CONTENT, (b"request-id", record.request_id.encode()), *extra]
        headers += ratelimit_headers(surface.name, error.windows)
        await send_bytes(send, status, body, headers)

    def _settle(self, record: RequestRecord) -> None:
        self._observe.finished(record)
        if self._log.enabled:
            self._log.write(record.fields())
        if self._ledger is not None and record.key_id is not None and record.endpoint != "models":
            self._ledger.add(record.ledger_values())


_PARSERS: dict[str, Callable[[bytes], ParsedRequest]] = {
    "messages": parse_messages,
    "count_tokens": parse_count_tokens,
    "chat_completions": parse_chat,
}


def _attribute(record: RequestRecord, principal: Principal) -> None:
    record.key_id, record.key_name = principal.key_id, principal.key_name
    record.partner_id, record.partner_name = principal.partner_id, principal.partner_name


async def _verify(signed: SignedRequest, record: RequestRecord, body: bytes) -> None:
    await signed.verify(body)
    _attribute(record, signed.principal)


def _adds_usage(parsed: ParsedRequest, deployment: Deployment) -> bool:
    """Must the gateway ask an OpenAI upstream for a stream's usage itself? (To charge it;
    the usage chunk is then not relayed to a client that did not ask for it.)"""
    return (
        parsed.stream
        and deployment.provider == "openai"
        and deployment.quirks.stream_options
        and not include_usage(parsed.payload)
    )


def _json_usage(body: bytes, surface: Surface) -> Usage | None:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("usage"), dict):
        return None
    if surface is OPENAI:
        return usage_from_openai(payload["usage"])
    usage = Usage()
    usage.update(payload["usage"])
    return usage

"""Request handlers of the data routes (matched on path suffix, so any prefix works)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from sluicegate.fake_upstream import anthropic_wire, openai_wire
from sluicegate.fake_upstream.behaviour import (
    ROUTE_CHAT,
    ROUTE_COUNT_TOKENS,
    ROUTE_MESSAGES,
    ROUTE_MODELS,
    Behaviour,
)
from sluicegate.fake_upstream.common import dumps, estimate_input_tokens, random_id
from sluicegate.fake_upstream.reply import plan_reply
from sluicegate.fake_upstream.state import FakeState, RecordedCall
from sluicegate.fake_upstream.streaming import send_stream

STATE_KEY = web.AppKey("fake_upstream_state", FakeState)
ROUTE_UNKNOWN = "unknown"

# (path suffix, route, method); the longest suffix comes first.
_ROUTE_TABLE = (
    ("/v1/messages/count_tokens", ROUTE_COUNT_TOKENS, "POST"),
    ("/v1/messages", ROUTE_MESSAGES, "POST"),
    ("/v1/chat/completions", ROUTE_CHAT, "POST"),
    ("/v1/models", ROUTE_MODELS, "GET"),
)


def json_response(obj: Any, status: int, headers: CIMultiDict[str]) -> web.Response:
    out = CIMultiDict({"Content-Type": "application/json"})
    out.update(headers)
    return web.Response(body=dumps(obj), status=status, headers=out)


def raw_response(
    body: dict[str, Any] | str, status: int, headers: CIMultiDict[str]
) -> web.Response:
    if isinstance(body, dict):
        return json_response(body, status, headers)
    out = CIMultiDict({"Content-Type": "text/plain; charset=utf-8"})
    out.update(headers)
    return web.Response(body=body.encode(), status=status, headers=out)


def _with_extras(base: dict[str, str], behaviour: Behaviour) -> CIMultiDict[str]:
    headers = CIMultiDict(base)
    headers.update(behaviour.headers)
    return headers


async def dispatch(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    route, method = ROUTE_UNKNOWN, None
    for suffix, name, wanted in _ROUTE_TABLE:
        if request.path.endswith(suffix):
            route, method = name, wanted
            break
    body = await request.read()
    try:
        parsed: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = None
    headers = {k.lower(): v for k, v in request.headers.items()}
    state.record(
        RecordedCall(route, request.method, request.path_qs, headers, body, parsed, time.time())
    )
    anthropic = "anthropic-version" in request.headers or route in (
        ROUTE_MESSAGES,
        ROUTE_COUNT_TOKENS,
    )
    if method is None or request.method != method:
        status = 404 if method is None else 405
        if anthropic:
            rid = random_id("req_")
            err: dict[str, Any] = anthropic_wire.error_body(
                "not_found_error", f"{request.method} {request.path} not found", rid
            )
            return json_response(err, status, CIMultiDict(anthropic_wire.response_headers(rid)))
        err = openai_wire.error_body(404, None, f"Unknown request URL: {request.path}")
        return json_response(err, status, CIMultiDict())
    if route == ROUTE_MODELS:
        return await _models(request, state, anthropic)
    if route == ROUTE_CHAT:
        return await _chat(request, state, parsed)
    return await _anthropic(request, state, route, parsed)


def _anthropic_problem(route: str, body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    if route == ROUTE_MESSAGES and (
        not isinstance(body.get("max_tokens"), int) or isinstance(body.get("max_tokens"), bool)
    ):
        return "max_tokens: Field required"
    if not isinstance(body.get("messages"), list):
        return "messages: Field required"
    return None


async def _anthropic(
    request: web.Request, state: FakeState, route: str, body: Any
) -> web.StreamResponse:
    rid = random_id("req_")
    base = anthropic_wire.response_headers(rid)

    def fail(status: int, error_type: str, message: str) -> web.Response:
        obj = anthropic_wire.error_body(error_type, message, rid)
        return json_response(obj, status, CIMultiDict(base))

    if not _anthropic_auth_ok(request, state.api_key):
        return fail(401, "authentication_error", "invalid x-api-key")
    if "anthropic-version" not in request.headers:
        return fail(400, "invalid_request_error", "anthropic-version: header is required")
    problem = _anthropic_problem(route, body)
    if problem is not None:
        return fail(400, "invalid_request_error", problem)
    behaviour = state.take(route) or Behaviour()
    await asyncio.sleep(behaviour.delay_before_headers)
    headers = _with_extras(base, behaviour)
    if behaviour.body is not None:
        return raw_response(behaviour.body, behaviour.status, headers)
    if behaviour.is_error:
        error_type = behaviour.error_type or anthropic_wire.default_error_type(behaviour.status)
        obj = anthropic_wire.error_body(error_type, behaviour.error_message, rid)
        return json_response(obj, behaviour.status, headers)
    if route == ROUTE_COUNT_TOKENS:
        count = (behaviour.usage or {}).get("input_tokens", estimate_input_tokens(body))
        return json_response(anthropic_wire.count_tokens_body(count), behaviour.status, headers)
    reply = plan_reply(behaviour, body)
    message_id = random_id("msg_01")
    if body.get("stream") is True:
        events = anthropic_wire.stream_events(reply, message_id)
        error = anthropic_wire.error_event(
            behaviour.error_type or "overloaded_error", behaviour.error_message
        )
        return await send_stream(request, events, error, behaviour, headers)
    return json_response(anthropic_wire.message_body(reply, message_id), behaviour.status, headers)


def _bearer_ok(request: web.Request, key: str | None) -> bool:
    return key is None or request.headers.get("Authorization") == f"Bearer {key}"


def _anthropic_auth_ok(request: web.Request, key: str | None) -> bool:
    """``x-api-key`` and/or ``Authorization: Bearer`` (anthropic SDK 2.x sends the latter);
    at least one must be present and every one present must carry the key."""
    if key is None:
        return True
    presented: list[str] = []
    if "x-api-key" in request.headers:
        presented.append(request.headers["x-api-key"])
    if "Authorization" in request.headers:
        presented.append(request.headers["Authorization"])
        if not presented[-1].startswith("Bearer "):
            return False
        presented[-1] = presented[-1].removeprefix("Bearer ")
    return bool(presented) and all(p == key for p in presented)


async def _chat(request: web.Request, state: FakeState, body: Any) -> web.StreamResponse:
    rid = random_id("req_", 32)
    base = openai_wire.response_headers(rid)

    def fail(status: int, message: str | None) -> web.Response:
        return json_response(
            openai_wire.error_body(status, None, message), status, CIMultiDict(base)
        )

    if not _bearer_ok(request, state.api_key):
        return fail(401, None)
    if not isinstance(body, dict):
        return fail(400, "We could not parse the JSON body of your request.")
    if not isinstance(body.get("model"), str):
        return fail(400, "you must provide a model parameter")
    if not isinstance(body.get("messages"), list):
        return fail(400, "Missing required parameter: 'messages'.")
    behaviour = state.take(ROUTE_CHAT) or Behaviour()
    await asyncio.sleep(behaviour.delay_before_headers)
    headers = _with_extras(base, behaviour)
    if behaviour.body is not None:
        return raw_response(behaviour.body, behaviour.status, headers)
    if behaviour.is_error:
        obj = openai_wire.error_body(
            behaviour.status, behaviour.error_type, behaviour.error_message
        )
        return json_response(obj, behaviour.status, headers)
    reply = plan_reply(behaviour, body, tool_id_prefix="call_")
    completion_id = random_id("chatcmpl-", 29)
    created = int(time.time())
    if body.get("stream") is True:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        events = openai_wire.stream_events(reply, completion_id, created, include_usage)
        error = openai_wire.error_chunk(behaviour.error_type, behaviour.error_message)
        return await send_stream(request, events, error, behaviour, headers)
    body_out = openai_wire.completion_body(reply, completion_id, created)
    return json_response(body_out, behaviour.status, headers)


async def _models(request: web.Request, state: FakeState, anthropic: bool) -> web.StreamResponse:
    rid = random_id("req_")
    base = anthropic_wire.response_headers(rid) if anthropic else openai_wire.response_headers(rid)
    if not _anthropic_auth_ok(request, state.api_key):
        if anthropic:
            obj = anthropic_wire.error_body("authentication_error", "invalid x-api-key", rid)
        else:
            obj = openai_wire.error_body(401, None, None)
        return json_response(obj, 401, CIMultiDict(base))
    behaviour = state.take(ROUTE_MODELS) or Behaviour()
    await asyncio.sleep(behaviour.delay_before_headers)
    headers = _with_extras(base, behaviour)
    if behaviour.body is not None:
        return raw_response(behaviour.body, behaviour.status, headers)
    if behaviour.is_error:
        if anthropic:
            error_type = behaviour.error_type or anthropic_wire.default_error_type(behaviour.status)
            obj = anthropic_wire.error_body(error_type, behaviour.error_message, rid)
        else:
            obj = openai_wire.error_body(
                behaviour.status, behaviour.error_type, behaviour.error_message
            )
        return json_response(obj, behaviour.status, headers)
    if anthropic:
        limit = request.query.get("limit", "")
        obj = anthropic_wire.models_body(state.models, int(limit) if limit.isdigit() else None)
    else:
        obj = openai_wire.models_body(state.models)
    return json_response(obj, behaviour.status, headers)

"""Plumbing shared by the admin routes: the route table entry, admin-token check, request
parsing and validation (pydantic), and rendering answers and errors.

Every failure is answered in Anthropic's error shape; a validation error is a 400
``invalid_request_error`` naming the field. Nothing from a traceback reaches the client.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

import orjson
from pydantic import BaseModel, ValidationError

from sluicegate.api.asgi import (
    JSON_CONTENT,
    ClientDisconnected,
    Receive,
    Request,
    Send,
    read_body,
    send_bytes,
)
from sluicegate.api.asgi import request_id_header as rid
from sluicegate.api.json_body import loads_limited
from sluicegate.errors import (
    AuthenticationFailed,
    GatewayError,
    InternalError,
    InvalidRequest,
    PermissionDenied,
    render_anthropic,
)
from sluicegate.policy.auth import KeyCache, credentials_from_headers
from sluicegate.store.keys import KeyStore
from sluicegate.store.ledger import LedgerStore
from sluicegate.store.partners import PartnerStore

log = logging.getLogger("sluicegate.admin")

ADMIN_BODY_LIMIT = 64 * 1024
Handler = Callable[[Request, Receive, Send], Awaitable[object]]
Run = Callable[[Any], Awaitable[BaseModel | dict[str, Any]]]


class Conflict(GatewayError):
    """The change contradicts the current state (e.g. a partner that still has keys)."""

    status = 409
    error_type = "invalid_request_error"
    openai_type = "invalid_request_error"
    openai_code = "conflict"


@dataclass(frozen=True, slots=True)
class AdminContext:
    keys: KeyStore
    partners: PartnerStore
    ledger: LedgerStore
    cache: KeyCache
    pepper: bytes


@dataclass(frozen=True, slots=True)
class Route:
    """One admin route. ``run`` gets the validated body or query model (or None)."""

    method: str
    path: str
    summary: str
    run: Run
    response: type[BaseModel]
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = (400, 401, 403)
    public: bool = False
    tags: tuple[str, ...] = field(default=())


# Store field names -> the admin API's names, for messages from store validation.
_API_NAMES = {
    "budget_usd": "max_budget",
    "budget_period": "budget_duration",
    "max_parallel": "max_parallel_requests",
    "rpm": "rpm_limit",
    "tpm": "tpm_limit",
    "partner_id": "partner",
}
_STORE_NAME = re.compile(r"\b(" + "|".join(_API_NAMES) + r")\b")


def api_message(error: Exception) -> str:
    """A store's validation message in the admin API's field names."""
    return _STORE_NAME.sub(lambda m: _API_NAMES[m.group(1)], str(error))


def validation_message(error: ValidationError) -> str:
    """``field: problem`` for up to three problems (never the offending value)."""
    parts = []
    for problem in error.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


def validate(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequest(validation_message(exc)) from None


# PostgreSQL stores no NUL in text or JSONB: refused up front, the same on every database,
# instead of failing in the store.
NUL_REFUSED = "NUL characters (\\u0000) are not accepted in admin requests."


def _has_nul(value: Any) -> bool:
    """Is there a NUL in any string of ``value`` (object keys included)?"""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def query_params(request: Request) -> dict[str, str]:
    """The query string as a dict; blank values count as absent, repeats are refused."""
    params: dict[str, str] = {}
    try:
        pairs = parse_qsl(request.query_string.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        raise InvalidRequest("The query string is malformed.") from None
    for name, value in pairs:
        if name in params:
            raise InvalidRequest(f"{name[:40]}: given more than once")
        if "\x00" in name or "\x00" in value:
            raise InvalidRequest(NUL_REFUSED)
        if value != "":
            params[name] = value
    return params


async def json_body(receive: Receive, request: Request) -> Any:
    raw = await read_body(receive, request, ADMIN_BODY_LIMIT)
    payload = loads_limited(raw or b"{}")
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if _has_nul(payload):
        raise InvalidRequest(NUL_REFUSED)
    return payload


class HasHeaders(Protocol):
    def header(self, name: str) -> str | None: ...


class Gate:
    """The admin token check: Bearer or x-api-key, compared in constant time."""

    def __init__(self, token: bytes | None) -> None:
        self._token = token

    def check(self, request: HasHeaders) -> None:
        if self._token is None:
            raise PermissionDenied("The admin API is off: set admin_token in the configuration.")
        offered = credentials_from_headers(
            request.header("x-api-key"), request.header("authorization")
        )
        if not any(hmac.compare_digest(c.encode(), self._token) for c in offered):
            raise AuthenticationFailed("Invalid or missing admin token.")


def handler(route: Route, gate: Gate) -> Handler:
    """The ASGI handler of ``route``: authorize, parse, validate, run, answer."""

    async def handle(request: Request, receive: Receive, send: Send) -> None:
        try:
            if not route.public:
                gate.check(request)
            argument: BaseModel | None = None
            if route.body is not None:
                argument = validate(route.body, await json_body(receive, request))
            elif route.query is not None:
                argument = validate(route.query, query_params(request))
            result = await route.run(argument)
            payload = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
            body = orjson.dumps(payload)
        except ClientDisconnected:
            return
        except GatewayError as error:
            await send_error(send, error)
            return
        except Exception:
            log.exception("admin request %s %s failed", route.method, route.path)
            await send_error(send, InternalError("The admin request failed inside the gateway."))
            return
        await send_bytes(send, 200, body, [JSON_CONTENT, rid()])

    return handle


async def send_error(send: Send, error: GatewayError) -> None:
    status, body, extra = render_anthropic(error)
    await send_bytes(send, status, body, [JSON_CONTENT, rid(), *extra])

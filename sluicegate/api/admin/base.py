"""Plumbing shared by the admin routes: the route table entry, the generic handler (token
and scope check, request parsing and validation with pydantic, audit, answer) and
rendering answers and errors.

Every failure is answered in Anthropic's error shape; a validation error is a 400
``invalid_request_error`` naming the field. Nothing from a traceback reaches the client.
A token of the ``read`` scope may call GET routes only; every other route is a write,
audited by :mod:`sluicegate.api.admin.auditor` whatever its outcome.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from pydantic import BaseModel, ValidationError

from sluicegate.api.admin.auditor import (
    Auditor,
    Target,
    default_action,
    describe,
    find_target,
    target_type_of,
)
from sluicegate.api.admin.gate import READ_ONLY, Gate, HasHeaders
from sluicegate.api.asgi import (
    JSON_CONTENT,
    ClientDisconnected,
    Receive,
    Request,
    Send,
    new_request_id,
    read_body,
    request_id_header,
    send_bytes,
)
from sluicegate.api.json_body import loads_limited
from sluicegate.errors import (
    AuthenticationFailed,
    GatewayError,
    InternalError,
    InvalidRequest,
    PermissionDenied,
    render_anthropic,
)
from sluicegate.policy.auth import KeyCache
from sluicegate.store.audit import AuditStore
from sluicegate.store.credentials import CredentialStore
from sluicegate.store.keys import KeyStore
from sluicegate.store.ledger import LedgerStore
from sluicegate.store.partners import PartnerStore

__all__ = [
    "ADMIN_BODY_LIMIT",
    "AdminContext",
    "Conflict",
    "Gate",
    "Handler",
    "HasHeaders",
    "Route",
    "handler",
    "send_error",
]

if TYPE_CHECKING:  # no runtime import: routing is not admin plumbing
    from sluicegate.routing.sync import RouteSync

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
    """What admin routes work with. Fields added for further routes take a default, so
    that every place building a context keeps working."""

    keys: KeyStore
    partners: PartnerStore
    ledger: LedgerStore
    cache: KeyCache
    pepper: bytes
    audit: AuditStore | None = None
    credentials: CredentialStore | None = None
    deployments: RouteSync | None = None  # stored model deployments (models.py)


@dataclass(frozen=True, slots=True)
class Route:
    """One admin route. ``run`` gets the validated body or query model (or None).

    Audit (routes other than GET): ``action`` defaults to the path's segments joined with
    dots (``/key/generate`` -> ``key.generate``), ``target_type`` to the first segment;
    ``target(argument, result)`` may name the target when the default lookup of id fields
    (see :func:`~sluicegate.api.admin.auditor.find_target`) would not find it.
    """

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
    action: str | None = None
    target_type: str | None = None
    target: Target | None = None


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


def handler(route: Route, gate: Gate, auditor: Auditor) -> Handler:
    """The ASGI handler of ``route``: authenticate, check the scope, parse, validate, run,
    audit (writes), answer."""
    write = route.method != "GET"
    action = route.action or default_action(route.path)
    target_type = route.target_type or target_type_of(route.path)

    async def handle(request: Request, receive: Receive, send: Send) -> None:
        request_id = new_request_id()
        actor: str | None = None
        argument: BaseModel | None = None
        fields: list[str] = []
        result: BaseModel | dict[str, Any] | None = None
        failure: GatewayError | None = None
        body = b""
        try:
            if not route.public:
                try:
                    token = gate.identify(request)
                except AuthenticationFailed as refused:
                    await auditor.failed_login(
                        request=request,
                        request_id=request_id,
                        method=route.method,
                        path=request.path,
                        status=refused.status,
                    )
                    raise
                actor = token.name
                if write and token.scope != "full":
                    raise PermissionDenied(READ_ONLY)
            if route.body is not None:
                payload = await json_body(receive, request)
                fields = list(payload)
                argument = validate(route.body, payload)
            elif route.query is not None:
                argument = validate(route.query, query_params(request))
            result = await route.run(argument)
            answer = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
            body = orjson.dumps(answer)
        except ClientDisconnected:
            return  # the request was not read in full, so nothing was done
        except GatewayError as error:
            failure = error
        except Exception:
            log.exception("admin request %s %s failed", route.method, route.path)
            failure = InternalError("The admin request failed inside the gateway.")
        if write and actor is not None:
            detail = describe(fields, argument)
            if failure is not None:
                detail["error"] = failure.error_type
            custom = route.target(argument, result) if route.target is not None else None
            await auditor.write(
                request=request,
                request_id=request_id,
                actor=actor,
                action=action,
                target_type=target_type,
                target_id=custom or find_target(argument, result),
                status=200 if failure is None else failure.status,
                detail=detail,
            )
        if failure is not None:
            await send_error(send, failure, request_id)
            return
        await send_bytes(send, 200, body, [JSON_CONTENT, request_id_header(request_id)])

    return handle


async def send_error(send: Send, error: GatewayError, request_id: str | None = None) -> None:
    status, body, extra = render_anthropic(error)
    headers = [JSON_CONTENT, request_id_header(request_id), *extra]
    await send_bytes(send, status, body, headers)

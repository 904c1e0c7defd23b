"""A minimal admin API for gateway keys, in the shapes LiteLLM users know.

``POST /key/generate``, ``GET /key/list``, ``POST /key/delete`` (a revocation: the row stays
for the record). Guarded by ``admin_token`` (``Authorization: Bearer`` or ``x-api-key``),
compared in constant time; without an ``admin_token`` in the config the admin API is off.
A revocation here takes effect on this instance before the answer is sent, and on other
instances within ``server.key_sync_interval``.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

import orjson

from sluicegate.api.asgi import JSON_CONTENT, Receive, Request, Send, read_body, send_bytes
from sluicegate.api.asgi import request_id_header as rid
from sluicegate.errors import (
    AuthenticationFailed,
    GatewayError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    render_anthropic,
)
from sluicegate.policy.auth import KeyCache, credentials_from_headers
from sluicegate.policy.key_admin import create_key, parse_expiry
from sluicegate.policy.keys import WeakKeyError, hash_key
from sluicegate.settings import Secret
from sluicegate.store.keys import DuplicateKeyError, KeyNotFoundError, KeyRecord, KeyStore

ADMIN_BODY_LIMIT = 64 * 1024


def key_view(record: KeyRecord, now: datetime) -> dict[str, Any]:
    """A key as the admin API shows it: never the key itself nor its hash."""
    if record.revoked_at is not None:
        status = "revoked"
    elif record.expires_at is not None and record.expires_at <= now:
        status = "expired"
    else:
        status = "active"
    return {
        "key_id": record.id,
        "key_alias": record.name,
        "key_hint": record.key_hint,
        "models": list(record.models),
        "status": status,
        "created_at": record.created_at.isoformat(),
        "expires": record.expires_at.isoformat() if record.expires_at else None,
    }


def _string_list(payload: dict[str, Any], field: str) -> list[str]:
    value = payload.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(f"{field}: must be a list of non-empty strings")
    return value


class AdminApi:
    def __init__(
        self, token: Secret | None, store: KeyStore, keys: KeyCache, pepper: bytes
    ) -> None:
        self._token = token.reveal().encode() if token else None
        self._store = store
        self._keys = keys
        self._pepper = pepper

    def _authorize(self, request: Request) -> None:
        if self._token is None:
            raise PermissionDenied("The admin API is off: set admin_token in the configuration.")
        offered = credentials_from_headers(
            request.header("x-api-key"), request.header("authorization")
        )
        if not any(hmac.compare_digest(c.encode(), self._token) for c in offered):
            raise AuthenticationFailed("Invalid or missing admin token.")

    async def _json(self, receive: Receive, request: Request) -> dict[str, Any]:
        raw = await read_body(receive, request, ADMIN_BODY_LIMIT)
        try:
            payload = orjson.loads(raw or b"{}")
        except orjson.JSONDecodeError:
            raise InvalidRequest("The request body is not valid JSON.") from None
        if not isinstance(payload, dict):
            raise InvalidRequest("The request body must be a JSON object.")
        return payload

    async def _answer(self, send: Send, work: Any) -> None:
        try:
            status, payload = await work
        except GatewayError as error:
            code, body, extra = render_anthropic(error)
            await send_bytes(send, code, body, [JSON_CONTENT, rid(), *extra])
            return
        await send_bytes(send, status, orjson.dumps(payload), [JSON_CONTENT, rid()])

    async def generate(self, request: Request, receive: Receive, send: Send) -> None:
        await self._answer(send, self._generate(request, receive))

    async def _generate(self, request: Request, receive: Receive) -> tuple[int, dict[str, Any]]:
        self._authorize(request)
        payload = await self._json(receive, request)
        name = payload.get("key_alias", payload.get("name"))
        if not isinstance(name, str) or not name.strip():
            raise InvalidRequest("key_alias: a non-empty name is required")
        duration, value = payload.get("duration"), payload.get("key")
        if duration is not None and not isinstance(duration, str):
            raise InvalidRequest("duration: must be a string such as 30d")
        if value is not None and not isinstance(value, str):
            raise InvalidRequest("key: must be a string")
        try:
            expires_at = parse_expiry(duration) if duration else None
            record, key = await create_key(
                self._store,
                self._pepper,
                name=name.strip(),
                models=_string_list(payload, "models"),
                expires_at=expires_at,
                value=value,
            )
        except WeakKeyError as exc:
            raise InvalidRequest(f"key: {exc}") from None
        except DuplicateKeyError as exc:
            raise InvalidRequest(str(exc)) from None
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        await self._keys.reload()
        return 200, {"key": key, **key_view(record, datetime.now(UTC))}

    async def list(self, request: Request, receive: Receive, send: Send) -> None:
        await self._answer(send, self._list(request))

    async def _list(self, request: Request) -> tuple[int, dict[str, Any]]:
        self._authorize(request)
        now = datetime.now(UTC)
        return 200, {"keys": [key_view(r, now) for r in await self._store.list()]}

    async def delete(self, request: Request, receive: Receive, send: Send) -> None:
        await self._answer(send, self._delete(request, receive))

    async def _delete(self, request: Request, receive: Receive) -> tuple[int, dict[str, Any]]:
        self._authorize(request)
        payload = await self._json(receive, request)
        targets = _string_list(payload, "key_aliases") + _string_list(payload, "key_ids")
        by_hash = {hash_key(self._pepper, k) for k in _string_list(payload, "keys")}
        if by_hash:
            matched = [r.id for r in await self._store.list() if r.key_hash in by_hash]
            if len(matched) < len(by_hash):
                raise NotFound("one of the given keys is not known to this gateway")
            targets += matched
        if not targets:
            raise InvalidRequest("name the keys to delete: key_aliases, key_ids or keys")
        found: list[KeyRecord] = []
        for target in targets:
            try:
                found.append(await self._store.get(target))
            except KeyNotFoundError:
                raise NotFound(f"no key named or with id {target[:80]!r}") from None
        revoked = [await self._store.revoke(record.id) for record in found]
        await self._keys.reload()  # effective on this instance before we answer
        return 200, {"deleted_keys": [r.id for r in revoked]}

"""Who is calling: gateway key, JWT or HMAC signature -> :class:`Principal`.

The order keeps a gateway-key request as cheap as before: the signature header is read only
when HMAC signing is on, the client address is worked out only for principals with an IP
allow-list, and JWT verification runs only for a credential the key map does not know and
that has a JWT's shape.

1. ``x-sluicegate-key-id`` present (HMAC on): the request is authenticated by its signature
   alone (:mod:`sluicegate.policy.hmac_auth`); the body is checked after it is read
   (the :class:`SignedRequest` returned with the principal).
2. ``x-api-key`` / ``Authorization: Bearer``: a known gateway key.
3. A JWT-shaped credential (JWT on): verified (:mod:`sluicegate.policy.jwt_auth`), then
   mapped to its partner; verified principals are remembered by token hash until ``exp``.
4. Otherwise the key map is re-checked once (a key created a moment ago) and the request is
   refused. Every refusal is the same 401; the log line says why (never the credential).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sluicegate.api.asgi import Request
from sluicegate.policy.auth import AuthRefused, KeyCache, Principal, credentials_from_headers
from sluicegate.policy.client_ip import client_address, client_ip
from sluicegate.policy.hmac_auth import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    HmacVerifier,
    SignedRequest,
    request_target,
)
from sluicegate.policy.jwt_shape import JwtRejected, looks_like_jwt
from sluicegate.policy.replay import MemoryReplayGuard, RedisReplayGuard, ReplayGuard
from sluicegate.settings import Settings
from sluicegate.settings_auth import Network

if TYPE_CHECKING:
    from sluicegate.policy.jwt_auth import JwtVerifier

log = logging.getLogger("sluicegate.auth")

Authenticated = tuple[Principal, SignedRequest | None]


def jwt_key_id(subject: str) -> str:
    """A stable key id for a token subject (ledger and limits attribution; 28 characters)."""
    return "jwt_" + hashlib.sha256(subject.encode()).hexdigest()[:24]


class Authenticator:
    def __init__(
        self,
        keys: KeyCache,
        trusted_proxies: Sequence[Network] = (),
        jwt: JwtVerifier | None = None,
        hmac: HmacVerifier | None = None,
        jwt_cache_size: int = 10_000,
    ) -> None:
        self._keys = keys
        self._trusted = tuple(trusted_proxies)
        self._jwt = jwt
        self._hmac = hmac
        # sha256(token) -> (principal, valid until, key-cache generation)
        self._tokens: dict[bytes, tuple[Principal, float, int]] = {}
        self._token_cache_size = jwt_cache_size

    async def start(self) -> None:
        if self._jwt is not None:
            await self._jwt.start()

    async def close(self) -> None:
        if self._jwt is not None:
            await self._jwt.close()
        if self._hmac is not None:
            await self._hmac.close()

    async def authenticate(self, request: Request, request_id: str) -> Authenticated:
        """The caller's principal, and the signature still to check against the body (HMAC)."""
        try:
            hmac = self._hmac
            if hmac is not None:
                signing_key_id = request.header(KEY_ID_HEADER)
                if signing_key_id is not None:
                    signed = hmac.check(
                        signing_key_id,
                        request.header(TIMESTAMP_HEADER),
                        request.header(SIGNATURE_HEADER),
                        request.method,
                        request_target(request.path, request.query_string),
                    )
                    signed.on_refused = functools.partial(self._log, request, request_id)
                    return self._admitted(signed.principal, request), signed
            candidates = credentials_from_headers(
                request.header("x-api-key"), request.header("authorization")
            )
            now = time.time()
            for candidate in candidates:
                principal = self._keys.find(candidate, now)
                if principal is not None:
                    if principal.networks:
                        self._admitted(principal, request)
                    return principal, None
            return await self._slow_path(request, candidates), None
        except AuthRefused as refused:
            self._log(request, request_id, refused)
            raise

    def _log(self, request: Request, request_id: str, refused: AuthRefused) -> None:
        log.info(
            "authentication refused: %s",
            refused.reason,
            extra={
                # Not "request_id": the request's own log line has that field.
                "request": request_id,
                "reason": refused.reason,
                "key_id": refused.key_id,
                "client": client_address(request, self._trusted),
            },
        )

    def _admitted(self, principal: Principal, request: Request) -> Principal:
        if not principal.admits(client_ip(request, self._trusted)):
            raise AuthRefused("client address not allowed", principal.key_id or None)
        return principal

    async def _slow_path(self, request: Request, candidates: list[str]) -> Principal:
        if not candidates:
            raise AuthRefused("no credentials")
        refusal: AuthRefused | None = None
        keys = []
        for candidate in candidates:
            if self._jwt is None or not looks_like_jwt(candidate):
                keys.append(candidate)
                continue
            try:
                return self._admitted(await self._from_jwt(candidate), request)
            except AuthRefused as exc:
                refusal = refusal or exc
        if keys:
            await self._keys.check_after_miss()
            now = time.time()
            for candidate in keys:
                principal = self._keys.find(candidate, now)
                if principal is not None:
                    return self._admitted(principal, request)
            refusal = refusal or self._keys.refusal(keys[0], now)
        assert refusal is not None
        raise refusal

    async def _from_jwt(self, token: str) -> Principal:
        assert self._jwt is not None
        digest = hashlib.sha256(token.encode()).digest()
        now = time.time()
        cached = self._tokens.get(digest)
        if cached is not None:
            principal, until, generation = cached
            if until > now and generation == self._keys.generation:
                return principal
            del self._tokens[digest]
        try:
            identity = await self._jwt.verify(token)
        except JwtRejected as exc:
            raise AuthRefused(f"jwt: {exc}") from None
        template = self._keys.partner_principal(identity.partner)
        if template is None:  # a partner created a moment ago?
            await self._keys.check_after_miss()
            template = self._keys.partner_principal(identity.partner)
            if template is None:
                raise AuthRefused("jwt: unknown partner")
        principal = dataclasses.replace(
            template,
            key_id=jwt_key_id(identity.subject),
            key_name=f"jwt:{identity.subject}",
            models=identity.models,
            expires_at=identity.expires_at,
        )
        self._remember(digest, principal, identity.expires_at)
        return principal

    def _remember(self, digest: bytes, principal: Principal, until: float) -> None:
        tokens = self._tokens
        if len(tokens) >= self._token_cache_size:
            now = time.time()
            for stale in [d for d, (_, end, _) in tokens.items() if end <= now]:
                del tokens[stale]
            while len(tokens) >= self._token_cache_size:  # still full: the oldest go
                del tokens[next(iter(tokens))]
        tokens[digest] = (principal, until, self._keys.generation)


def replay_guard(settings: Settings) -> ReplayGuard:
    """Redis when ``redis_url`` is set (replays refused across instances), else memory."""
    if settings.redis_url is not None:
        return RedisReplayGuard(settings.redis_url.reveal(), settings.limits.redis_timeout)
    return MemoryReplayGuard()


def build_authenticator(settings: Settings, keys: KeyCache) -> Authenticator:
    auth = settings.auth
    jwt = None
    if auth.jwt is not None:
        from sluicegate.policy.jwt_auth import JwtVerifier  # PyJWT only when JWTs are on

        jwt = JwtVerifier(auth.jwt)
    hmac = None
    if auth.hmac.enabled:
        hmac = HmacVerifier(auth.hmac, replay_guard(settings), keys.signing_entry)
    return Authenticator(
        keys,
        auth.trusted_proxies,
        jwt,
        hmac,
        jwt_cache_size=auth.jwt.cache_size if auth.jwt is not None else 1,
    )

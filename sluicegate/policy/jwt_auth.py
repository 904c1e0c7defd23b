"""JWT bearer tokens (``auth.jwt``): verification with PyJWT and the issuer's keys.

A token is recognised by its shape (:func:`looks_like_jwt`) where a gateway key would be
(``Authorization: Bearer`` or ``x-api-key``); a generated gateway key has no dots.

Verification: the header's ``alg`` must be in ``algorithms`` (``none`` never is). HS* tokens
verify with the static ``secret`` only and RS/PS/ES/EdDSA tokens with ``public_key`` or a key
from ``jwks_url`` only, so a token cannot pick which kind of key checks it (the RS->HS
confusion attack). ``exp``, ``iss`` and ``aud`` are required; ``exp``/``nbf``/``iat`` are
checked with ``leeway`` seconds of clock skew. Then the subject, partner and models claims
are read (:class:`JwtIdentity`). Every failure is a :class:`JwtRejected` whose reason is
for the log only; callers answer all of them with the same 401.

JWKS (:class:`JwksKeys`): fetched at start and whenever older than ``jwks_cache_ttl``; a
token whose ``kid`` is unknown refetches it (the issuer rotated its keys), at most once per
``jwks_refresh_interval`` however many such tokens arrive. A failed fetch keeps the keys
fetched before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import orjson
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from sluicegate.policy.jwt_shape import JwtRejected, looks_like_jwt
from sluicegate.settings_auth import SYMMETRIC_ALGORITHMS, JwtSettings

__all__ = ["JwksKeys", "JwtIdentity", "JwtRejected", "JwtVerifier", "looks_like_jwt"]

log = logging.getLogger("sluicegate.auth")

_MAX_JWKS_BYTES = 1024 * 1024
_MAX_MODELS = 100
_MAX_NAME = 200
_MAX_SUBJECT = 196  # attributed as "jwt:<sub>" in a 200-character column


@dataclass(frozen=True, slots=True)
class JwtIdentity:
    subject: str
    partner: str
    models: tuple[str, ...]  # empty: no restriction by the token
    expires_at: float  # unix time


class JwksKeys:
    """The issuer's published keys, fetched with aiohttp (see the module docstring)."""

    def __init__(self, settings: JwtSettings) -> None:
        assert settings.jwks_url is not None
        self._url = settings.jwks_url
        self._ttl = settings.jwks_cache_ttl
        self._min_refresh = settings.jwks_refresh_interval
        self._timeout = aiohttp.ClientTimeout(total=settings.jwks_timeout)
        self._jwks: list[dict[str, Any]] = []
        self._built: dict[tuple[str | None, str], jwt.PyJWK | None] = {}
        self._fetched_at = -float("inf")
        self._attempted_at = -float("inf")
        self._refresh: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0  # successful fetches (tests and metrics-free diagnostics)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        await self._refreshed()

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refresh
        if self._session is not None:
            await self._session.close()

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        now = time.monotonic()
        may_refetch = now - self._attempted_at >= self._min_refresh
        if now - self._fetched_at > self._ttl and may_refetch:
            await self._refreshed()
            may_refetch = False
        found = self._find(kid, alg)
        if found is None and may_refetch:
            await self._refreshed()  # rotated keys: a new kid appears in the JWKS
            found = self._find(kid, alg)
        if found is None:
            shown = kid if kid is None else kid[:40]  # the token's text: keep the log short
            raise JwtRejected(f"no usable key for kid {shown!r} and alg {alg}")
        return found

    def _find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        if (kid, alg) in self._built:
            return self._built[(kid, alg)]
        if kid is None:  # a token without kid: only unambiguous with a single key
            candidates = self._jwks if len(self._jwks) == 1 else []
        else:
            candidates = [k for k in self._jwks if k.get("kid") == kid]
        found = None
        for jwk in candidates:
            if jwk.get("alg") not in (None, alg):
                continue
            try:  # the key's type must fit the algorithm (an EC key cannot check RS256)
                found = jwt.PyJWK(jwk, algorithm=alg)
                break
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue
        if len(self._built) < 1000:
            self._built[(kid, alg)] = found
        return found

    async def _refreshed(self) -> None:
        """Fetch now (one fetch shared by every caller waiting meanwhile)."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._fetch())
        await asyncio.shield(self._refresh)

    async def _fetch(self) -> None:
        self._attempted_at = time.monotonic()
        assert self._session is not None
        try:
            async with self._session.get(self._url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ValueError(f"status {response.status}")
                chunks, size = [], 0
                async for chunk in response.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > _MAX_JWKS_BYTES:
                        raise ValueError("larger than 1 MiB")
                    chunks.append(chunk)
            document = orjson.loads(b"".join(chunks))
            keys = document.get("keys") if isinstance(document, dict) else None
            if not isinstance(keys, list):
                raise ValueError("no keys list")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "JWKS fetch from %s failed (%s); keeping the keys fetched before",
                self._url,
                exc if isinstance(exc, ValueError) else type(exc).__name__,
            )
            return
        self._jwks = [k for k in keys if isinstance(k, dict) and k.get("use") in (None, "sig")]
        self._built = {}
        self._fetched_at = time.monotonic()
        self.fetches += 1


class JwtVerifier:
    """Checks tokens against ``auth.jwt`` and reads the identity claims."""

    def __init__(self, settings: JwtSettings) -> None:
        self._settings = settings
        self._allowed = frozenset(settings.algorithms)
        self._secret = settings.secret.reveal().encode() if settings.secret else None
        self._public_key = (
            load_pem_public_key(settings.public_key.encode()) if settings.public_key else None
        )
        self._jwks = JwksKeys(settings) if settings.jwks_url else None
        audience = settings.audience
        self._audience = [audience] if isinstance(audience, str) else list(audience)

    async def start(self) -> None:
        if self._jwks is not None:
            await self._jwks.start()

    async def close(self) -> None:
        if self._jwks is not None:
            await self._jwks.close()

    async def verify(self, token: str) -> JwtIdentity:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise JwtRejected("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._allowed:
            raise JwtRejected(f"algorithm {str(alg)[:20]!r} not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise JwtRejected("malformed kid")
        key = await self._key(alg, kid)
        settings = self._settings
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._audience,
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise JwtRejected(_reason(exc)) from None
        return self._identity(claims)

    async def _key(self, alg: str, kid: str | None) -> Any:
        if alg in SYMMETRIC_ALGORITHMS:
            return self._secret
        if self._public_key is not None:
            return self._public_key
        assert self._jwks is not None
        return await self._jwks.key(kid, alg)

    def _identity(self, claims: dict[str, Any]) -> JwtIdentity:
        settings = self._settings
        subject = claims.get(settings.subject_claim)
        if not isinstance(subject, str) or not subject or len(subject) > _MAX_SUBJECT:
            raise JwtRejected(f"claim {settings.subject_claim!r} missing or not a name")
        partner = claims.get(settings.partner_claim)
        if not isinstance(partner, str) or not partner or len(partner) > _MAX_NAME:
            raise JwtRejected(f"claim {settings.partner_claim!r} missing or not a name")
        models: tuple[str, ...] = ()
        if settings.models_claim is not None and settings.models_claim in claims:
            models = _models(claims[settings.models_claim], settings.models_claim)
        exp = claims["exp"]
        return JwtIdentity(subject, partner, models, float(exp))


def _models(value: Any, name: str) -> tuple[str, ...]:
    """A claim of model patterns: a non-empty list of names (or a single name)."""
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or not 1 <= len(items) <= _MAX_MODELS
        or not all(isinstance(m, str) and 0 < len(m) <= 256 for m in items)
    ):
        raise JwtRejected(f"claim {name!r} is not a list of model names")
    return tuple(items)


_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not yet valid"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.MissingRequiredClaimError, "required claim missing"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.InvalidKeyError, "key does not fit the algorithm"),
    (jwt.DecodeError, "malformed token"),
)


def _reason(error: Exception) -> str:
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return f"invalid token ({type(error).__name__})"

"""Replay protection for signed requests: each signature is accepted once per window.

:class:`MemoryReplayGuard` remembers signatures in this process; :class:`RedisReplayGuard`
remembers them in Redis (``SET NX EX``: one atomic command), so a request replayed against
another instance behind the same load balancer is refused too. While Redis is unreachable
the Redis guard falls back to its in-process memory (logged once per outage): replays
against the same instance stay refused, replays across instances become possible until
Redis is back. A signature is recorded only after it was verified, so forged requests
cannot fill the store.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import Protocol

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

log = logging.getLogger("sluicegate.auth")

REDIS_PREFIX = "sg:v1:hmac-seen:"
_MAX_REMEMBERED = 1_000_000  # a bound on memory whatever the traffic (~100 MB at most)


class ReplayGuard(Protocol):
    async def first_use(self, token: str, ttl: float) -> bool:
        """True the first time ``token`` is seen within ``ttl`` seconds, else False."""
        ...

    async def close(self) -> None: ...


class MemoryReplayGuard:
    """Tokens with their expiry; expired ones are dropped as new ones arrive (oldest first:
    with one ttl for all, expiry order is arrival order)."""

    def __init__(self, max_size: int = _MAX_REMEMBERED) -> None:
        self._expiry: dict[str, float] = {}
        self._order: deque[tuple[float, str]] = deque()
        self._max_size = max_size

    def check_and_add(self, token: str, ttl: float) -> bool:
        now = time.monotonic()
        order, expiry = self._order, self._expiry
        while order and (order[0][0] <= now or len(order) >= self._max_size):
            expires, old = order.popleft()
            if expiry.get(old) == expires:
                del expiry[old]
        seen = expiry.get(token)
        if seen is not None and seen > now:
            return False
        expiry[token] = now + ttl
        order.append((now + ttl, token))
        return True

    async def first_use(self, token: str, ttl: float) -> bool:
        return self.check_and_add(token, ttl)

    async def close(self) -> None:
        return None


class RedisReplayGuard:
    """Signatures in Redis under :data:`REDIS_PREFIX`, shared by every instance."""

    def __init__(self, url: str, timeout: float) -> None:
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._fallback = MemoryReplayGuard()
        self._degraded = False

    async def first_use(self, token: str, ttl: float) -> bool:
        try:
            stored = await self._client.set(
                REDIS_PREFIX + token, b"1", nx=True, ex=max(1, math.ceil(ttl))
            )
        except (OSError, redis_errors.RedisError) as exc:
            if not self._degraded:
                log.warning(
                    "replay store unreachable (%s): signatures are remembered per process "
                    "until Redis answers again",
                    type(exc).__name__,
                )
                self._degraded = True
            return self._fallback.check_and_add(token, ttl)
        if self._degraded:
            log.warning("replay store reachable again")
            self._degraded = False
        # Also remembered here: a replay during a later outage is still caught locally.
        self._fallback.check_and_add(token, ttl)
        return bool(stored)

    async def close(self) -> None:
        await self._client.aclose()

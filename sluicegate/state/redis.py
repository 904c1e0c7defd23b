"""Redis limit backend: counts shared by every gateway process, one Lua script per acquire.

Windows use Redis ``TIME`` so hosts agree whatever their clocks; budget period ids come from
the gateway's UTC clock. This process renews the leases it holds every ``lease_ttl / 3``, so
a crashed process's leases free themselves within ``lease_ttl``. Layout: scripts.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from sluicegate.state import scripts
from sluicegate.state.base import (
    Admission,
    BudgetHold,
    BudgetSpend,
    LimitStoreUnavailable,
    RateLimit,
    Refusal,
    RefusalKind,
    leaves_window_in,
    window_state,
)
from sluicegate.state.periods import CurrentPeriods, period_end, seconds_until_end

log = logging.getLogger("sluicegate.limits")

_KINDS: dict[int, RefusalKind] = {1: "rpm", 2: "tpm", 3: "parallel", 4: "budget"}
# Replies that mean "the store cannot serve now" rather than "the script is wrong".
_UNAVAILABLE_REPLIES: tuple[type[Exception], ...] = (
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.NoPermissionError,
    redis_errors.ClusterDownError,
    redis_errors.TryAgainError,
)
_SPENT_KEPT_AFTER_PERIOD = timedelta(days=35)
_RENEW_BATCH = 200  # leases per renewal script call
_MAX_CONNECTIONS = 64  # per backend (per process)
_POOL_WAIT_MIN = 2.0  # seconds


@dataclass(frozen=True, slots=True)
class _Flight:
    """An acquired lease this process keeps alive: its zset members and held hashes."""

    lease_zsets: tuple[str, ...]
    hold_hashes: tuple[str, ...]
    period_ids: tuple[str, ...]


def redact_url(url: str) -> str:
    """``redis://host:port/db`` without user or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisBackend:
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 0.5,
        lease_ttl: float = 60.0,
        prefix: str = "sg:v1:",
    ) -> None:
        self._where = redact_url(url)
        self._lease_ttl_ms = max(1, round(lease_ttl * 1000))
        self._lease_ttl = lease_ttl
        # One hash tag: every key in one cluster slot, so multi-key scripts are accepted.
        self._keys = f"{prefix}{{g}}:"
        # No retries: an unreachable Redis costs one `timeout` (connect or reply), then the
        # failure policy decides. Waiting for a pooled connection is local queueing in a burst,
        # not an outage, so that wait is allowed longer before it counts as one.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=_MAX_CONNECTIONS,
            timeout=max(_POOL_WAIT_MIN, 4 * timeout),
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._client: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._acquire = self._client.register_script(scripts.ACQUIRE)
        self._finish = self._client.register_script(scripts.FINISH)
        self._seed = self._client.register_script(scripts.SEED)
        self._renew = self._client.register_script(scripts.RENEW)
        self._inflight: dict[str, _Flight] = {}
        self._periods = CurrentPeriods()
        self._renewer: asyncio.Task[None] | None = None
        self._available = False

    async def start(self) -> None:
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever(), name="limit-lease-renewal")
        await self._call(self._client.ping())
        for script in (self._acquire, self._finish, self._seed, self._renew):
            await self._call(self._client.script_load(script.script))

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        await self._client.aclose()

    def available(self) -> bool:
        return self._available

    async def run_id(self) -> str:
        """The Redis server's run id; it changes when the server restarts (counters lost)."""
        info = await self._call(self._client.info("server"))
        return str(info["run_id"])

    async def acquire(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        tokens: int,
        holds: Sequence[BudgetHold],
    ) -> Admission:
        ids = tuple(self._periods.id(hold.period) for hold in holds)
        budget_keys = [self._budget_keys(h.scope, pid) for h, pid in zip(holds, ids, strict=True)]
        keys = self._limit_keys(limits)
        args: list[int | str] = [lease, tokens, self._lease_ttl_ms, len(limits)]
        for limit in limits:
            args += [_or_none(limit.rpm), _or_none(limit.tpm), _or_none(limit.max_parallel)]
        args.append(len(holds))
        for hold, triple in zip(holds, budget_keys, strict=True):
            keys += triple
            args += [hold.limit_nano, hold.amount_nano]
        reply = await self._run(self._acquire, keys, args)

        ok, sec, usec, index, kind, used, freed_bucket = reply[:7]
        now = sec + usec / 1_000_000
        states = []
        for position, limit in enumerate(limits):
            requests, counted, oldest_r, oldest_t = reply[7 + 4 * position : 11 + 4 * position]
            if limit.windowed:
                oldest = _bucket(oldest_r), _bucket(oldest_t)
                states.append(window_state(limit, requests, counted, *oldest, now))
        if not ok:
            refusal = self._refusal(limits, holds, index, kind, used, freed_bucket, now)
            return Admission(False, now, refusal, tuple(states))
        concurrency = [
            keys[2 * i + 1] for i, lim in enumerate(limits) if lim.max_parallel is not None
        ]
        self._inflight[lease] = _Flight(
            lease_zsets=(*concurrency, *(expiry for _, _, expiry in budget_keys)),
            hold_hashes=tuple(held for _, held, _ in budget_keys),
            period_ids=ids,
        )
        spent_held = reply[7 + 4 * len(limits) :]
        budget_used = tuple((h.scope, v) for h, v in zip(holds, spent_held, strict=True))
        return Admission(True, now, None, tuple(states), budget_used)

    async def settle(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        at: float,
        reserved_tokens: int,
        actual_tokens: int,
        holds: Sequence[BudgetHold],
        actual_nano: int,
    ) -> list[BudgetSpend]:
        delta = actual_tokens - reserved_tokens
        spent = await self._end(lease, limits, at, 0, delta, holds, max(0, actual_nano))
        return [
            BudgetSpend(hold.scope, hold.period, value, hold.limit_nano)
            for hold, value in zip(holds, spent, strict=True)
        ]

    async def release(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        at: float,
        reserved_tokens: int,
        holds: Sequence[BudgetHold],
    ) -> None:
        await self._end(lease, limits, at, -1, -reserved_tokens, holds, -1)

    async def seed_spend(self, scope: str, period: str, spent_nano: int) -> None:
        key = self._budget_keys(scope, self._periods.id(period))[0]
        expire_at = _spent_expire_at(period, datetime.now(UTC))
        await self._call(self._seed(keys=[key], args=[spent_nano, expire_at]))

    async def spent(self, scope: str, period: str) -> int:
        key = self._budget_keys(scope, self._periods.id(period))[0]
        value = await self._call(self._client.get(key))
        return int(value) if value is not None else 0

    async def _end(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        at: float,
        requests: int,
        tokens: int,
        holds: Sequence[BudgetHold],
        spend: int,
    ) -> list[int]:
        """Settle (spend >= 0) or release (spend = -1) one acquire in one script call."""
        flight = self._inflight.pop(lease, None)
        today = datetime.now(UTC)
        ids = flight.period_ids if flight is not None else ()
        if len(ids) != len(holds):  # not acquired by this process: the current periods
            ids = tuple(self._periods.id(hold.period) for hold in holds)
        keys = self._limit_keys(limits)
        args: list[int | str] = [lease, math.floor(at), requests, tokens, spend, len(limits)]
        for limit in limits:
            args += [int(limit.windowed), int(limit.max_parallel is not None)]
        args.append(len(holds))
        for hold, pid in zip(holds, ids, strict=True):
            keys += self._budget_keys(hold.scope, pid)
            args.append(_spent_expire_at(hold.period, today))
        return await self._run(self._finish, keys, args)

    def _limit_keys(self, limits: Sequence[RateLimit]) -> list[str]:
        keys: list[str] = []
        for limit in limits:
            keys += [f"{self._keys}w:{limit.scope}", f"{self._keys}c:{limit.scope}"]
        return keys

    def _budget_keys(self, scope: str, pid: str) -> tuple[str, str, str]:
        base = f"{self._keys}b:{scope}:{pid}:"
        return base + "spent", base + "held", base + "expiry"

    @staticmethod
    def _refusal(
        limits: Sequence[RateLimit],
        holds: Sequence[BudgetHold],
        index: int,
        kind_code: int,
        used: int,
        freed_bucket: int,
        now: float,
    ) -> Refusal:
        kind = _KINDS[kind_code]
        if kind == "budget":
            hold = holds[index - 1 - len(limits)]
            retry = seconds_until_end(hold.period, datetime.now(UTC))
            return Refusal(hold.scope, kind, retry, hold.limit_nano, used)
        limit = limits[index - 1]
        value = {"rpm": limit.rpm, "tpm": limit.tpm, "parallel": limit.max_parallel}[kind]
        bucket = _bucket(freed_bucket)
        retry_after = None if bucket is None else leaves_window_in(bucket, now)
        return Refusal(limit.scope, kind, retry_after, value or 0, used)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease_ttl / 3)
            try:
                await self.renew()
            except LimitStoreUnavailable:
                log.debug("lease renewal skipped: %s unavailable", self._where)
            except Exception:  # a bug must not stop renewal for the life of the process
                log.exception("lease renewal failed")

    async def renew(self) -> None:
        """Push the expiry of every lease this process holds to now + lease_ttl."""
        flights = list(self._inflight.items())
        for start in range(0, len(flights), _RENEW_BATCH):
            batch = flights[start : start + _RENEW_BATCH]
            zsets = [(key, lease) for lease, f in batch for key in f.lease_zsets]
            hashes = [key for _, f in batch for key in f.hold_hashes]
            keys = [key for key, _ in zsets] + hashes
            members = [lease for _, lease in zsets]
            await self._call(
                self._renew(keys=keys, args=[self._lease_ttl_ms, len(zsets), *members])
            )

    async def _run(self, script: AsyncScript, keys: list[str], args: list[int | str]) -> list[int]:
        reply = await self._call(script(keys=keys, args=args))
        return [int(value) for value in cast(list[Any], reply)]

    async def _call(self, pending: Awaitable[Any]) -> Any:
        try:
            result = await pending
        except (OSError, redis_errors.RedisError) as exc:
            busy = getattr(exc, "status_code", None) == "BUSY"
            if isinstance(exc, redis_errors.ResponseError) and not (
                isinstance(exc, _UNAVAILABLE_REPLIES) or busy
            ):
                raise  # a script or argument bug: not an outage, must not be hidden
            self._available = False
            raise LimitStoreUnavailable(
                f"rate-limit store {self._where} unavailable ({type(exc).__name__})"
            ) from exc
        self._available = True
        return result


def _or_none(value: int | None) -> int:
    return -1 if value is None else value


def _bucket(value: int) -> int | None:
    return None if value < 0 else value


def _spent_expire_at(period: str, now: datetime) -> int:
    end = period_end(period, now)
    return 0 if end is None else int((end + _SPENT_KEPT_AFTER_PERIOD).timestamp())

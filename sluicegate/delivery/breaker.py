"""Circuit breakers per upstream deployment: stop sending to a deployment that keeps failing.

Why: a dead or overloaded deployment should cost one fast refusal, not a timeout per request,
and get a little trial traffic (half-open probes) to show it has recovered. ``allow`` and
``record`` run on every attempt, so they are O(1), synchronous and never touch the network.

``SharedBreakers`` adds Redis so N gateway processes agree a deployment is down: the process
that opens a breaker publishes its open-until, and a background loop in every process opens
the same breaker locally. Redis is advisory: while it is down each process keeps its own
breakers. Open-until crosses hosts as wall-clock time, so clock skew shifts it by the skew.

Redis layout (``P`` = prefix + ``{b}:``; one hash tag keeps every key in one cluster slot):
``P breaker:<name>`` open-until in unix ms, expiring when it would go half-open; ``P breakers``
SET of names ever opened, so a process learns names it has not used yet without SCAN (it
expires a day after the last opening).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

log = logging.getLogger("sluicegate.breaker")

_BUCKETS = 30  # window resolution: window / 30, i.e. 1 s buckets for the default 30 s window
_NAMES_TTL_MS = 24 * 3600 * 1000
_MGET_BATCH = 500  # names per MGET, so one reply stays small however many deployments


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    consecutive_failures: int = 5  # open after this many failures in a row
    error_ratio: float = 0.5  # ...or when failures/attempts over `window` reach this
    min_requests: int = 20  # ...with at least this many attempts in the window
    window: float = 30.0  # seconds
    cooldown: float = 10.0  # open this long, then half-open
    half_open_probes: int = 1  # attempts let through while half-open

    def __post_init__(self) -> None:
        if min(self.consecutive_failures, self.min_requests, self.half_open_probes) < 1:
            raise ValueError("breaker counts must be at least 1")
        if not 0.0 < self.error_ratio <= 1.0:
            raise ValueError("breaker error_ratio must be in (0, 1]")
        if self.window <= 0 or self.cooldown <= 0:
            raise ValueError("breaker window and cooldown must be positive")


class BreakerState(enum.StrEnum):  # a str: logs and metrics take it as is
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


OnChange = Callable[[str, BreakerState, BreakerState], None]


class _Window:
    """Attempts and failures over the last ``window`` seconds in a ring of time buckets:
    O(1) to add, and moving forward clears at most one lap of buckets (O(1) amortised)."""

    __slots__ = ("_attempts", "_failures", "_head", "_width", "attempts", "failures")

    def __init__(self, window: float) -> None:
        self._width = window / _BUCKETS
        self._head = -(2**62)  # absolute index of the newest bucket
        self.clear()

    def add(self, now: float, failed: bool) -> None:
        index = math.floor(now / self._width)
        if index == self._head and not failed:  # the common case: a success, same bucket
            self._attempts[index % _BUCKETS] += 1
            self.attempts += 1
            return
        # Buckets between the newest and now have aged out; a lap or more clears them all.
        for i in range(max(self._head + 1, index - _BUCKETS + 1), index + 1):
            slot = i % _BUCKETS
            self.attempts -= self._attempts[slot]
            self.failures -= self._failures[slot]
            self._attempts[slot] = self._failures[slot] = 0
        # A clock that stepped back counts in the newest bucket rather than an aged-out one.
        self._head = max(self._head, index)
        slot = self._head % _BUCKETS
        self._attempts[slot] += 1
        self.attempts += 1
        if failed:
            self._failures[slot] += 1
            self.failures += 1

    def clear(self) -> None:
        self._attempts = [0] * _BUCKETS
        self._failures = [0] * _BUCKETS
        self.attempts = self.failures = 0


@dataclass(slots=True)
class _Breaker:
    window: _Window
    state: BreakerState = BreakerState.CLOSED
    consecutive: int = 0  # failures in a row while closed
    open_until: float = 0.0
    probes_out: int = 0  # half-open probes let through and not reported yet
    probes_ok: int = 0  # half-open probes that succeeded
    probe_deadline: float = 0.0  # after this, unreported probes are presumed lost

    def reset(self, state: BreakerState) -> None:
        # Every state starts from scratch: old failures must not re-open a breaker that has
        # just closed, and probes of a previous half-open spell are not this spell's.
        self.state = state
        self.consecutive = self.probes_out = self.probes_ok = 0
        self.window.clear()


class Breakers:
    """In-process breakers for every deployment (created lazily by name)."""

    def __init__(
        self,
        settings: BreakerSettings,
        clock: Callable[[], float] = time.monotonic,
        on_change: OnChange | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._on_change = on_change
        self._breakers: dict[str, _Breaker] = {}

    def allow(self, name: str) -> bool:
        """Whether an attempt may go to ``name`` now; a True must be followed by ``record``
        or ``release`` (half-open probes are counted)."""
        breaker = self._get(name)
        if breaker.state is BreakerState.CLOSED:  # the common case: no clock needed
            return True
        now = self._clock()
        self._tick(name, breaker, now)
        if breaker.state is BreakerState.OPEN:
            return False
        if breaker.probes_out and now >= breaker.probe_deadline:
            breaker.probes_out = 0  # never reported: lost, and must not wedge the breaker
        if breaker.probes_ok + breaker.probes_out >= self.settings.half_open_probes:
            return False
        breaker.probes_out += 1
        breaker.probe_deadline = now + self.settings.cooldown
        return True

    def record(self, name: str, ok: bool) -> None:
        """The outcome of an attempt that ``allow`` let through."""
        breaker = self._get(name)
        now = self._clock()
        if breaker.state is not BreakerState.CLOSED:  # only time moves open to half-open
            self._tick(name, breaker, now)
        settings = self.settings
        if breaker.state is BreakerState.CLOSED:
            window = breaker.window
            window.add(now, not ok)
            if ok:
                breaker.consecutive = 0
                return
            breaker.consecutive += 1
            if breaker.consecutive >= settings.consecutive_failures or (
                window.attempts >= settings.min_requests
                and window.failures / window.attempts >= settings.error_ratio
            ):
                self._trip(name, breaker, now)
        elif breaker.state is BreakerState.HALF_OPEN and breaker.probes_out:
            breaker.probes_out -= 1
            if not ok:
                self._trip(name, breaker, now)
                return
            breaker.probes_ok += 1
            if breaker.probes_ok >= settings.half_open_probes:
                self._move(name, breaker, BreakerState.CLOSED)
        # Otherwise (open, or half-open with no probe out) it is a late report of an attempt
        # let through before the breaker opened, or of a probe presumed lost: nothing new.

    def release(self, name: str) -> None:
        """An allowed attempt ended with neither success nor failure (the client left)."""
        breaker = self._breakers.get(name)
        if breaker is not None and breaker.state is BreakerState.HALF_OPEN and breaker.probes_out:
            breaker.probes_out -= 1

    def state(self, name: str) -> BreakerState:
        breaker = self._breakers.get(name)
        if breaker is None:
            return BreakerState.CLOSED
        self._tick(name, breaker, self._clock())
        return breaker.state

    def open_until(self, name: str) -> float | None:
        """Clock time when an open breaker goes half-open; None unless open."""
        if self.state(name) is not BreakerState.OPEN:
            return None
        return self._breakers[name].open_until

    def force_open(self, name: str, until: float) -> None:
        """Open ``name`` until ``until`` (clock time) because another instance opened it."""
        breaker = self._get(name)
        now = self._clock()
        self._tick(name, breaker, now)
        if until <= now:
            return
        if breaker.state is BreakerState.OPEN:
            breaker.open_until = max(breaker.open_until, until)
            return
        breaker.open_until = until
        self._move(name, breaker, BreakerState.OPEN)

    def states(self) -> dict[str, BreakerState]:
        now = self._clock()
        for name, breaker in self._breakers.items():
            self._tick(name, breaker, now)
        return {name: breaker.state for name, breaker in self._breakers.items()}

    def _opened(self, name: str, until: float) -> None:
        """Hook: this process opened ``name`` until ``until`` (not called by ``force_open``)."""

    def _get(self, name: str) -> _Breaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = _Breaker(_Window(self.settings.window))
        return breaker

    def _tick(self, name: str, breaker: _Breaker, now: float) -> None:
        # Time alone moves open to half-open; no timer runs, whoever looks next sees it.
        if breaker.state is BreakerState.OPEN and now >= breaker.open_until:
            self._move(name, breaker, BreakerState.HALF_OPEN)

    def _trip(self, name: str, breaker: _Breaker, now: float) -> None:
        # Only a breaker this process trips raises the alert: an opening learned from
        # another process (force_open) was alerted there, not again in every process.
        alert = {
            "alert": "breaker.opened",
            "subject": name,
            "deployment": name,
            "from_state": breaker.state.value,
            "consecutive_failures": breaker.consecutive,
            "window_attempts": breaker.window.attempts,
            "window_failures": breaker.window.failures,
            "cooldown_s": self.settings.cooldown,
        }
        breaker.open_until = now + self.settings.cooldown
        self._move(name, breaker, BreakerState.OPEN)
        self._opened(name, breaker.open_until)
        log.warning("breaker.opened", extra=alert)

    def _move(self, name: str, breaker: _Breaker, new: BreakerState) -> None:
        old = breaker.state
        breaker.reset(new)
        if self._on_change is not None:
            self._on_change(name, old, new)


class SharedBreakers(Breakers):
    """Local breakers whose openings are published to Redis and picked up by the other
    processes."""

    def __init__(
        self,
        settings: BreakerSettings,
        redis_url: str,
        *,
        prefix: str = "sg:v1:",
        sync_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_change: OnChange | None = None,
    ) -> None:
        super().__init__(settings, clock, on_change)
        self._wall = wall_clock
        self._interval = sync_interval
        self._keys = f"{prefix}{{b}}:"
        self._client = aioredis.Redis.from_url(
            redis_url, socket_timeout=1, socket_connect_timeout=1, decode_responses=True
        )
        # Openings wait here for the sync task (latest per name), so `record` never awaits.
        self._pending: dict[str, int] = {}
        # Open-until last applied or published per name: a remote opening is applied once, so
        # a breaker closed here is not re-opened by a key still alive, nor ours by our own.
        self._seen: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._redis_ok = True

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._sync_forever(), name="breaker-sync")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._client.aclose()

    def _opened(self, name: str, until: float) -> None:
        until_ms = round((self._wall() + until - self._clock()) * 1000)
        self._pending[name] = until_ms
        self._seen[name] = until_ms
        self._wake.set()  # publish now rather than at the next interval

    async def _sync_forever(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._sync_once()
            except Exception:  # a bug must not stop syncing for the life of the process
                log.exception("breaker sync failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)

    async def _sync_once(self) -> None:
        try:
            await self._publish()
            await self._pull()
        except (OSError, redis_errors.RedisError) as exc:  # builtin TimeoutError is an OSError
            if self._redis_ok:
                self._redis_ok = False
                log.warning(
                    "breaker.redis_unavailable: %s; breakers stay local until it answers",
                    type(exc).__name__,
                )
            return
        if not self._redis_ok:
            self._redis_ok = True
            log.warning("breaker.redis_recovered: breakers shared again")

    async def _publish(self) -> None:
        pending, self._pending = self._pending, {}
        now_ms = self._wall_ms()
        live = {name: until for name, until in pending.items() if until > now_ms}
        if not live:
            return
        pipe = self._client.pipeline(transaction=False)
        for name, until_ms in live.items():
            pipe.set(self._key(name), until_ms, px=until_ms - now_ms)
        pipe.sadd(self._keys + "breakers", *live)
        pipe.pexpire(self._keys + "breakers", _NAMES_TTL_MS)
        try:
            await pipe.execute()
        except BaseException:
            for name, until_ms in live.items():  # retry next round, unless opened again since
                self._pending.setdefault(name, until_ms)
            raise

    async def _pull(self) -> None:
        members = await _awaited(self._client.smembers(self._keys + "breakers"))
        names = sorted(set(self._breakers) | set(members))
        for start in range(0, len(names), _MGET_BATCH):
            chunk = names[start : start + _MGET_BATCH]
            values = await _awaited(self._client.mget([self._key(name) for name in chunk]))
            now_ms = self._wall_ms()
            for name, value in zip(chunk, values, strict=True):
                try:
                    until_ms = int(value)
                except (TypeError, ValueError):  # absent (closed) or not ours
                    continue
                if until_ms <= now_ms or self._seen.get(name) == until_ms:
                    continue
                self._seen[name] = until_ms
                self.force_open(name, self._clock() + (until_ms - now_ms) / 1000)

    def _key(self, name: str) -> str:
        return f"{self._keys}breaker:{name}"

    def _wall_ms(self) -> int:
        return round(self._wall() * 1000)


async def _awaited(reply: Awaitable[Any] | Any) -> Any:
    # redis-py types its commands as sync-or-async; on the asyncio client they are awaitable.
    return await cast(Awaitable[Any], reply)

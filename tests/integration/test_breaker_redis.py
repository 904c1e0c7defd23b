"""Circuit breakers shared by two "processes" (two SharedBreakers) through a real Redis.

Isolation: a claimed, flushed logical database of the Redis on 127.0.0.1:6379, or a private
``redis-server`` the test kills and restarts. Skips without Redis, unless CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis

from sluicegate.delivery.breaker import BreakerSettings, BreakerState, SharedBreakers
from tests.gateway_harness import free_port
from tests.redis_harness import claim_redis_db, redis_server

SYNC = 0.05
COOLDOWN = 0.6
SETTINGS = BreakerSettings(consecutive_failures=3, cooldown=COOLDOWN)
PREFIX = "sg:v1:"


@pytest.fixture
def redis_url() -> Iterator[str]:
    with claim_redis_db() as url:
        yield url


@contextlib.asynccontextmanager
async def shared(
    url: str, clock: Callable[[], float] = time.monotonic, settings: BreakerSettings = SETTINGS
) -> AsyncIterator[SharedBreakers]:
    breakers = SharedBreakers(settings, url, prefix=PREFIX, sync_interval=SYNC, clock=clock)
    await breakers.start()
    try:
        yield breakers
    finally:
        await breakers.close()


async def eventually(check: Callable[[], bool], within: float = 5.0) -> float:
    """Poll ``check`` until true; returns the seconds it took."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, "condition not reached in time"
        await asyncio.sleep(SYNC / 5)
    return time.monotonic() - started


def trip(breakers: SharedBreakers, name: str) -> None:
    for _ in range(SETTINGS.consecutive_failures):
        assert breakers.allow(name)
        breakers.record(name, False)
    assert breakers.state(name) is BreakerState.OPEN


@pytest.mark.parametrize("known_to_b", [False, True], ids=["new-name", "known-name"])
async def test_opening_spreads_to_the_other_process(redis_url: str, known_to_b: bool) -> None:
    async with shared(redis_url) as a, shared(redis_url) as b:
        if known_to_b:
            assert b.allow("dep")
            b.record("dep", True)
        trip(a, "dep")
        took = await eventually(lambda: b.state("dep") is BreakerState.OPEN)
        assert took < 1.0  # a handful of sync intervals, with room for a slow machine
        assert not b.allow("dep")
        until_a, until_b = a.open_until("dep"), b.open_until("dep")
        assert until_a is not None and until_b is not None
        assert abs(until_a - until_b) < 0.1

        raw = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            assert raw.smembers(f"{PREFIX}{{b}}:breakers") == {"dep"}
            assert 0 < raw.pttl(f"{PREFIX}{{b}}:breaker:dep") <= COOLDOWN * 1000
            assert raw.ttl(f"{PREFIX}{{b}}:breakers") > 0
        finally:
            raw.close()

        await eventually(lambda: a.state("dep") is BreakerState.HALF_OPEN)
        await eventually(lambda: b.state("dep") is BreakerState.HALF_OPEN)
        assert a.allow("dep") and b.allow("dep")  # each lets its own probe through
        a.record("dep", True)
        b.record("dep", True)
        await asyncio.sleep(4 * SYNC)  # the expired key must not re-open anything
        assert a.state("dep") is b.state("dep") is BreakerState.CLOSED


async def test_closed_breaker_is_not_reopened_by_the_same_opening(redis_url: str) -> None:
    skew = [0.0]
    long = BreakerSettings(consecutive_failures=3, cooldown=10.0)
    async with (
        shared(redis_url, settings=long) as a,
        shared(redis_url, clock=lambda: time.monotonic() + skew[0], settings=long) as b,
    ):
        for _ in range(3):
            a.record("dep", False)
        await eventually(lambda: b.state("dep") is BreakerState.OPEN)
        # B's clock jumps past the cooldown while A's key is still alive; B probes and closes.
        skew[0] = long.cooldown
        assert b.allow("dep")
        b.record("dep", True)
        assert b.state("dep") is BreakerState.CLOSED
        await asyncio.sleep(4 * SYNC)  # A's key is still alive in Redis
        assert b.state("dep") is BreakerState.CLOSED
        assert a.state("dep") is BreakerState.OPEN


async def test_redis_unreachable_keeps_breakers_local(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sluicegate.breaker")
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with shared(url) as a:
        assert a.allow("dep")
        a.record("dep", True)
        trip(a, "dep")
        assert not a.allow("dep")
        await asyncio.sleep(6 * SYNC)  # several failed sync rounds
        assert a.state("dep") is BreakerState.OPEN
    warnings = [
        r for r in caplog.records
        if r.name == "sluicegate.breaker" and r.levelno >= logging.WARNING
        and not hasattr(r, "alert")
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "redis_unavailable" in warnings[0].getMessage()


async def test_recovers_when_redis_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sluicegate.breaker")
    with redis_server(tmp_path / "redis") as server:
        async with shared(server.url) as a, shared(server.url) as b:
            assert b.allow("dep")
            server.kill()
            trip(a, "dep")  # opened during the outage: published once Redis is back
            await asyncio.sleep(4 * SYNC)
            assert b.state("dep") is BreakerState.CLOSED
            server.start()
            await eventually(lambda: b.state("dep") is BreakerState.OPEN)
            await eventually(lambda: any("recovered" in r.getMessage() for r in caplog.records))
    messages = [r.getMessage() for r in caplog.records if r.name == "sluicegate.breaker"]
    assert sum("redis_unavailable" in m for m in messages) == 2  # once per process

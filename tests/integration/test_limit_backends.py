"""The limit backends against the governance contract: memory and a real Redis, one suite.

Redis cases use a random key prefix (deleted afterwards) and skip when no Redis answers on
127.0.0.1:6379, unless CI=true, where they fail. Redis windows run on Redis ``TIME``, which a
test cannot move: window expiry is checked on memory with a controllable clock; on Redis the
counts, refusals and header values are checked within the minute.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from sluicegate.state.base import BudgetHold, LimitBackend, LimitStoreUnavailable, RateLimit
from sluicegate.state.failover import FailoverBackend
from sluicegate.state.memory import MemoryBackend
from sluicegate.state.periods import seconds_until_end
from sluicegate.state.redis import RedisBackend

REDIS_URL = "redis://127.0.0.1:6379/0"
START = 1_800_000_000.25  # the fake clock's start: a quarter second into a bucket

_redis_error: list[str] = []  # memo: [] unknown, [""] reachable, [reason] unreachable


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


async def _require_redis() -> None:
    if not _redis_error:
        probe = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
        try:
            await probe.ping()
            _redis_error.append("")
        except (OSError, aioredis.RedisError) as exc:
            _redis_error.append(f"{type(exc).__name__}: {exc}")
        finally:
            await probe.aclose()
    if _redis_error[0]:
        _unavailable(f"Redis at {REDIS_URL} unavailable ({_redis_error[0]})")


# These tests check what the backends count, not how fast: a reply slower than the gateway's
# default 0.5 s (the shared Redis under a busy CI machine once took over 2 s for 200
# concurrent scripts) must not fail them. Outage tests use their own short timeouts.
HARNESS_TIMEOUT = 10.0


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """One backend under test, and a way to make more instances sharing its state."""

    name: str
    backend: LimitBackend
    clock: FakeClock | None = None  # memory only: time that tests can move
    prefix: str = ""
    extra: list[LimitBackend] = field(default_factory=list)

    async def another(self, lease_ttl: float = 60.0) -> LimitBackend:
        """A second Redis backend on the same keys: another gateway process."""
        assert self.name == "redis"
        other = RedisBackend(
            REDIS_URL, timeout=HARNESS_TIMEOUT, lease_ttl=lease_ttl, prefix=self.prefix
        )
        await other.start()
        self.extra.append(other)
        return other

    def advance(self, seconds: float) -> None:
        assert self.clock is not None, "Redis TIME cannot be moved by a test"
        self.clock.now += seconds


@pytest.fixture(params=["memory", "redis"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        clock = FakeClock()
        backend = MemoryBackend(lease_ttl=60.0, clock=clock)
        await backend.start()
        yield Harness("memory", backend, clock)
        await backend.close()
        return
    await _require_redis()
    prefix = f"sgtest:{secrets.token_hex(6)}:"
    redis_backend = RedisBackend(REDIS_URL, timeout=HARNESS_TIMEOUT, prefix=prefix)
    await redis_backend.start()
    bench = Harness("redis", redis_backend, prefix=prefix)
    try:
        yield bench
    finally:
        for backend in [redis_backend, *bench.extra]:
            await backend.close()
        cleaner = aioredis.Redis.from_url(REDIS_URL)
        keys = [key async for key in cleaner.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await cleaner.delete(*keys)
        await cleaner.aclose()


def lease() -> str:
    return f"req_{secrets.token_hex(8)}"


async def test_rpm_admits_exactly_the_limit_then_refuses_with_retry_after(harness: Harness) -> None:
    limits = [RateLimit("key:k1", rpm=5)]
    for admitted in range(1, 6):
        admission = await harness.backend.acquire(lease(), limits, 0, [])
        assert admission.ok
        (window,) = admission.windows
        assert (window.requests_limit, window.requests_remaining) == (5, 5 - admitted)
        assert window.requests_reset is not None and 59.0 < window.requests_reset <= 61.0
        assert window.tokens_limit is None and window.tokens_remaining is None
    refused = await harness.backend.acquire(lease(), limits, 0, [])
    assert not refused.ok and refused.refusal is not None
    assert (refused.refusal.scope, refused.refusal.kind) == ("key:k1", "rpm")
    assert (refused.refusal.limit, refused.refusal.used) == (5, 5)
    assert refused.refusal.retry_after is not None and 59.0 < refused.refusal.retry_after <= 61.0
    assert refused.windows[0].requests_remaining == 0
    if harness.clock is not None:  # bucket floor(START) leaves at its start + 61
        assert refused.refusal.retry_after == pytest.approx(61 - 0.25)


@pytest.mark.parametrize("harness", ["memory"], indirect=True)
async def test_window_slides_bucket_by_bucket(harness: Harness) -> None:
    limits = [RateLimit("key:slide", rpm=2)]
    assert (await harness.backend.acquire(lease(), limits, 0, [])).ok  # bucket B
    harness.advance(30.0)
    assert (await harness.backend.acquire(lease(), limits, 0, [])).ok  # bucket B + 30
    harness.advance(30.7)  # START + 60.7: bucket B + 60, both still counted
    refused = await harness.backend.acquire(lease(), limits, 0, [])
    assert refused.refusal is not None and refused.refusal.retry_after == pytest.approx(0.05)
    harness.advance(0.05)  # bucket B + 61: bucket B has left
    admitted = await harness.backend.acquire(lease(), limits, 0, [])
    assert admitted.ok and admitted.windows[0].requests_reset == pytest.approx(30.0)
    refused = await harness.backend.acquire(lease(), limits, 0, [])
    assert refused.refusal is not None and refused.refusal.retry_after == pytest.approx(30.0)
    harness.advance(120.0)  # everything left: a whole fresh window
    for _ in range(2):
        assert (await harness.backend.acquire(lease(), limits, 0, [])).ok


async def test_tpm_reserve_then_settle_returns_unused_tokens(harness: Harness) -> None:
    limits = [RateLimit("key:tpm", rpm=100, tpm=1000)]
    first_lease = lease()
    first = await harness.backend.acquire(first_lease, limits, 600, [])
    assert first.ok and first.windows[0].tokens_remaining == 400
    refused = await harness.backend.acquire(lease(), limits, 600, [])
    assert refused.refusal is not None and refused.refusal.kind == "tpm"
    assert (refused.refusal.limit, refused.refusal.used) == (1000, 600)
    assert refused.refusal.retry_after is not None and 59.0 < refused.refusal.retry_after <= 61.0
    await harness.backend.settle(first_lease, limits, first.at, 600, 150, [], 0)
    second = await harness.backend.acquire(lease(), limits, 600, [])
    assert second.ok and second.windows[0].tokens_remaining == 1000 - 150 - 600
    assert second.windows[0].requests_remaining == 98


async def test_settle_correction_upwards_and_never_below_zero(harness: Harness) -> None:
    limits = [RateLimit("key:fix", tpm=1000)]
    up, down = lease(), lease()
    upper = await harness.backend.acquire(up, limits, 100, [])
    await harness.backend.settle(up, limits, upper.at, 100, 300, [], 0)
    lower = await harness.backend.acquire(down, limits, 100, [])
    assert lower.windows[0].tokens_remaining == 1000 - 300 - 100
    await harness.backend.settle(down, limits, lower.at, 100, 0, [], 0)
    probe = await harness.backend.acquire(lease(), limits, 0, [])
    assert probe.windows[0].tokens_remaining == 700

    alone = [RateLimit("key:fix-alone", tpm=1000)]
    only = lease()
    admission = await harness.backend.acquire(only, alone, 100, [])
    await harness.backend.settle(only, alone, admission.at, 500, 0, [], 0)  # -500: clamps to 0
    full = await harness.backend.acquire(lease(), alone, 1000, [])
    assert full.ok and full.windows[0].tokens_remaining == 0


@pytest.mark.parametrize("harness", ["memory"], indirect=True)
async def test_settle_after_the_bucket_left_corrects_nothing(harness: Harness) -> None:
    limits = [RateLimit("key:late", tpm=1000)]
    late = lease()
    admission = await harness.backend.acquire(late, limits, 100, [])
    harness.advance(61.0)
    await harness.backend.settle(late, limits, admission.at, 100, 900, [], 0)
    after = await harness.backend.acquire(lease(), limits, 1000, [])
    assert after.ok and after.windows[0].tokens_remaining == 0


async def test_oversized_request_runs_only_alone(harness: Harness) -> None:
    limits = [RateLimit("key:big", tpm=1000)]
    big = await harness.backend.acquire(lease(), limits, 5000, [])
    assert big.ok and big.windows[0].tokens_remaining == 0
    refused = await harness.backend.acquire(lease(), limits, 1, [])
    assert refused.refusal is not None and refused.refusal.kind == "tpm"
    assert refused.refusal.used == 5000
    other = [RateLimit("key:big2", tpm=1000)]
    assert (await harness.backend.acquire(lease(), other, 10, [])).ok
    refused = await harness.backend.acquire(lease(), other, 5000, [])
    assert refused.refusal is not None and refused.refusal.used == 10
    if harness.clock is not None:
        harness.advance(61.0)
        assert (await harness.backend.acquire(lease(), other, 5000, [])).ok


async def test_max_parallel_is_freed_by_settle(harness: Harness) -> None:
    limits = [RateLimit("deployment:d1", max_parallel=2)]
    leases = [lease(), lease()]
    admissions = [await harness.backend.acquire(x, limits, 0, []) for x in leases]
    assert all(a.ok for a in admissions) and admissions[0].windows == ()
    refused = await harness.backend.acquire(lease(), limits, 0, [])
    assert refused.refusal is not None
    assert (refused.refusal.kind, refused.refusal.retry_after) == ("parallel", None)
    assert (refused.refusal.limit, refused.refusal.used) == (2, 2)
    await harness.backend.settle(leases[0], limits, admissions[0].at, 0, 0, [], 0)
    assert (await harness.backend.acquire(lease(), limits, 0, [])).ok


async def test_in_flight_leases_are_kept_alive(harness: Harness) -> None:
    if harness.clock is not None:
        limits = [RateLimit("deployment:alive", max_parallel=1)]
        assert (await harness.backend.acquire(lease(), limits, 0, [])).ok
        harness.advance(3600.0)
    else:  # renewed every lease_ttl / 3 by the owning process
        owner = await harness.another(lease_ttl=1.0)
        limits = [RateLimit("deployment:alive", max_parallel=1)]
        assert (await owner.acquire(lease(), limits, 0, [])).ok
        await asyncio.sleep(2.0)
    refused = await harness.backend.acquire(lease(), limits, 0, [])
    assert refused.refusal is not None and refused.refusal.kind == "parallel"


async def test_leases_not_renewed_expire(harness: Harness) -> None:
    limits = [RateLimit("deployment:crash", max_parallel=1)]
    holds = [BudgetHold("key:crash", "daily", 100, 60)]
    if harness.clock is not None:
        assert (await harness.backend.acquire(lease(), limits, 0, holds)).ok
        await harness.backend.close()  # forgets its in-flight leases, like a process that died
        harness.advance(59.0)
        assert not (await harness.backend.acquire(lease(), limits, 0, [])).ok
        harness.advance(1.0)
    else:
        crashed = await harness.another(lease_ttl=1.0)
        assert (await crashed.acquire(lease(), limits, 0, holds)).ok
        await crashed.close()
        assert not (await harness.backend.acquire(lease(), limits, 0, [])).ok
        await asyncio.sleep(1.2)
    admission = await harness.backend.acquire(lease(), limits, 0, holds)
    assert admission.ok and admission.budget_used == (("key:crash", 60),)


async def test_a_refusal_changes_nothing(harness: Harness) -> None:
    key = RateLimit("key:aon", rpm=10, tpm=1000, max_parallel=5)
    deployment = RateLimit("deployment:aon", max_parallel=1)
    budget = BudgetHold("key:aon", "monthly", 1000, 100)
    busy = await harness.backend.acquire(lease(), [deployment], 0, [])
    assert busy.ok
    refused = await harness.backend.acquire(lease(), [key, deployment], 50, [budget])
    assert refused.refusal is not None
    assert (refused.refusal.scope, refused.refusal.kind) == ("deployment:aon", "parallel")
    assert refused.windows[0].requests_remaining == 10 and refused.windows[0].requests_reset == 0
    over = BudgetHold("key:aon", "monthly", 1000, 1001)
    refused = await harness.backend.acquire(lease(), [key], 50, [over])
    assert refused.refusal is not None and refused.refusal.kind == "budget"
    admitted = await harness.backend.acquire(lease(), [key], 50, [budget])
    assert admitted.ok and admitted.budget_used == (("key:aon", 100),)
    (window,) = admitted.windows
    assert (window.requests_remaining, window.tokens_remaining) == (9, 950)
    assert await harness.backend.spent("key:aon", "monthly") == 0


async def test_budget_hold_refusal_and_settle(harness: Harness) -> None:
    holds = [BudgetHold("partner:p1", "daily", 100, 30), BudgetHold("key:b1", "total", 10**12, 30)]
    leases = [lease() for _ in range(3)]
    used = []
    for x in leases:
        admission = await harness.backend.acquire(x, [], 0, holds)
        assert admission.ok
        used.append(admission.budget_used)
    assert [u[0] for u in used] == [("partner:p1", 30), ("partner:p1", 60), ("partner:p1", 90)]
    refused = await harness.backend.acquire(lease(), [], 0, holds)
    assert refused.refusal is not None
    assert (refused.refusal.scope, refused.refusal.kind) == ("partner:p1", "budget")
    assert (refused.refusal.limit, refused.refusal.used) == (100, 90)
    until_midnight = seconds_until_end("daily", datetime.now(UTC))
    assert refused.refusal.retry_after == pytest.approx(until_midnight, abs=5)
    spends = await harness.backend.settle(leases[0], [], 0.0, 0, 0, holds, 7)
    assert [(s.scope, s.period, s.spent_nano, s.limit_nano) for s in spends] == [
        ("partner:p1", "daily", 7, 100),
        ("key:b1", "total", 7, 10**12),
    ]
    assert await harness.backend.spent("partner:p1", "daily") == 7
    admission = await harness.backend.acquire(lease(), [], 0, holds)  # 7 + 60 + 30 <= 100
    assert admission.ok and admission.budget_used[0] == ("partner:p1", 97)


async def test_amount_over_the_whole_budget_is_refused_without_retry_for_total(
    harness: Harness,
) -> None:
    refused = await harness.backend.acquire(
        lease(), [], 0, [BudgetHold("key:tiny", "total", 100, 101)]
    )
    assert refused.refusal is not None and refused.refusal.kind == "budget"
    assert (refused.refusal.retry_after, refused.refusal.used) == (None, 0)


async def test_concurrent_acquires_never_overrun_a_budget(harness: Harness) -> None:
    holds = [BudgetHold("key:race", "weekly", 1000, 7)]
    limits = [RateLimit("key:race", rpm=10_000)]
    admissions = await asyncio.gather(
        *(harness.backend.acquire(lease(), limits, 1, holds) for _ in range(200))
    )
    assert sum(a.ok for a in admissions) == math.floor(1000 / 7)
    assert max(a.budget_used[0][1] for a in admissions if a.ok) == 7 * 142
    probe = await harness.backend.acquire(lease(), limits, 0, [])
    assert probe.windows[0].requests_remaining == 10_000 - 142 - 1


async def test_seed_spend_takes_the_larger(harness: Harness) -> None:
    await harness.backend.seed_spend("key:seed", "monthly", 50)
    assert await harness.backend.spent("key:seed", "monthly") == 50
    await harness.backend.seed_spend("key:seed", "monthly", 30)
    assert await harness.backend.spent("key:seed", "monthly") == 50
    await harness.backend.seed_spend("key:seed", "monthly", 80)
    assert await harness.backend.spent("key:seed", "monthly") == 80
    assert await harness.backend.spent("key:seed", "daily") == 0
    refused = await harness.backend.acquire(
        lease(), [], 0, [BudgetHold("key:seed", "monthly", 100, 21)]
    )
    assert refused.refusal is not None and refused.refusal.used == 80


async def test_release_undoes_an_acquire(harness: Harness) -> None:
    limits = [RateLimit("key:undo", rpm=3, tpm=100, max_parallel=1)]
    holds = [BudgetHold("key:undo", "daily", 100, 100)]
    undone = lease()
    admission = await harness.backend.acquire(undone, limits, 100, holds)
    assert admission.ok
    await harness.backend.release(undone, limits, admission.at, 100, holds)
    again = await harness.backend.acquire(lease(), limits, 100, holds)
    assert again.ok and again.budget_used == (("key:undo", 100),)
    (window,) = again.windows
    assert (window.requests_remaining, window.tokens_remaining) == (2, 0)
    assert await harness.backend.spent("key:undo", "daily") == 0


@pytest.mark.parametrize("harness", ["redis"], indirect=True)
async def test_two_redis_backends_share_counts(harness: Harness) -> None:
    other = await harness.another()
    limits = [RateLimit("global", rpm=4, max_parallel=3)]
    holds = [BudgetHold("key:shared", "daily", 100, 40)]
    first = await harness.backend.acquire("lease-a", limits, 0, holds)
    second = await other.acquire("lease-b", limits, 0, holds)
    assert first.ok and second.ok and second.budget_used == (("key:shared", 80),)
    refused = await harness.backend.acquire(lease(), limits, 0, holds)
    assert refused.refusal is not None and refused.refusal.kind == "budget"
    spends = await harness.backend.settle("lease-b", limits, second.at, 0, 0, holds, 25)
    assert spends[0].spent_nano == 25
    assert await other.spent("key:shared", "daily") == 25
    third = await other.acquire(lease(), limits, 0, [])
    assert third.ok and third.windows[0].requests_remaining == 1


@pytest.mark.parametrize("harness", ["redis"], indirect=True)
async def test_redis_keys_carry_ttls(harness: Harness) -> None:
    limits = [RateLimit("key:ttl", rpm=5, max_parallel=5)]
    holds = [BudgetHold("key:ttl", "daily", 100, 5), BudgetHold("key:ttl", "total", 100, 5)]
    x = lease()
    admission = await harness.backend.acquire(x, limits, 1, holds)
    await harness.backend.settle(x, limits, admission.at, 1, 1, holds, 1)
    await harness.backend.acquire(lease(), limits, 1, holds)
    client = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        ttls = {key: await client.ttl(key) async for key in client.scan_iter(f"{harness.prefix}*")}
    finally:
        await client.aclose()
    assert all(key.startswith(f"{harness.prefix}{{g}}:") for key in ttls)
    spent_total = [k for k in ttls if k.endswith(":total:spent")]
    assert len(spent_total) == 1 and ttls[spent_total[0]] == -1
    # Match on the part after the random test prefix, which may itself contain ":d".
    daily = [k for k in ttls if ":d" in k.removeprefix(harness.prefix) and k.endswith(":spent")]
    assert len(daily) == 1 and 35 * 86400 < ttls[daily[0]] <= 36 * 86400
    others = {k: v for k, v in ttls.items() if not k.endswith(":spent")}
    assert others and all(0 < ttl <= 120 for ttl in others.values()), others


# -- failover: Redis unreachable --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dead_redis() -> RedisBackend:
    return RedisBackend(f"redis://:hunter2@127.0.0.1:{free_port()}/0", timeout=0.3)


async def test_closed_mode_refuses_while_redis_is_down() -> None:
    backend = FailoverBackend(dead_redis(), MemoryBackend(), "closed")
    await backend.start()
    try:
        with pytest.raises(LimitStoreUnavailable) as caught:
            await backend.acquire(lease(), [RateLimit("global", rpm=5)], 0, [])
        assert "hunter2" not in str(caught.value) and "127.0.0.1" in str(caught.value)
        assert not backend.available() and backend.name == "redis"
    finally:
        await backend.close()


async def test_open_mode_admits_and_settles_in_process(caplog: pytest.LogCaptureFixture) -> None:
    fallback = MemoryBackend()
    backend = FailoverBackend(dead_redis(), fallback, "open")
    limits = [RateLimit("global", rpm=2, max_parallel=1)]
    holds = [BudgetHold("key:open", "daily", 100, 10)]
    caplog.set_level(logging.INFO, logger="sluicegate.limits")
    await backend.start()
    try:
        x = lease()
        admission = await backend.acquire(x, limits, 0, holds)
        assert admission.ok
        refused = await backend.acquire(lease(), limits, 0, holds)
        assert refused.refusal is not None and refused.refusal.kind == "parallel"
        spends = await backend.settle(x, limits, admission.at, 0, 0, holds, 4)
        assert spends[0].spent_nano == 4 and await fallback.spent("key:open", "daily") == 4
        assert (await backend.acquire(lease(), limits, 0, [])).ok
        assert await backend.spent("key:open", "daily") == 4
        # Seeding must be retried until Redis has it, so it raises even in open mode.
        with pytest.raises(LimitStoreUnavailable):
            await backend.seed_spend("key:open", "daily", 50)
        assert await fallback.spent("key:open", "daily") == 50
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "hunter2" not in warnings[0].getMessage()
        assert not backend.available()
    finally:
        await backend.close()


@dataclass
class RedisServer:
    """A private redis-server on a free port (no persistence), to stop and start at will."""

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(
            [self.binary, *args, "--dir", str(self.workdir)], stdout=subprocess.DEVNULL
        )

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        _unavailable("redis-server binary not found")
    server = RedisServer(str(binary), tmp_path)
    server.start()
    yield server
    server.kill()


async def _eventually(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(100):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached within 5 s")


async def test_open_mode_outage_and_recovery(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    primary = RedisBackend(redis_server.url, timeout=0.3)
    fallback = MemoryBackend()
    backend = FailoverBackend(primary, fallback, "open")
    limits = [RateLimit("global", rpm=100, max_parallel=1)]
    holds = [BudgetHold("key:outage", "daily", 100, 10)]
    caplog.set_level(logging.INFO, logger="sluicegate.limits")

    async def primary_answers() -> bool:
        try:
            await primary.start()
        except LimitStoreUnavailable:
            return False
        return True

    try:
        await _eventually(primary_answers)
        await backend.start()
        in_redis = await backend.acquire("in-redis", limits, 0, holds)
        assert in_redis.ok and backend.available()
        first_run = await primary.run_id()

        redis_server.kill()
        local = await backend.acquire("in-process", limits, 0, holds)
        assert local.ok and not backend.available()  # the fallback had no lease yet
        assert not (await backend.acquire(lease(), limits, 0, holds)).ok
        assert await backend.settle("in-redis", limits, in_redis.at, 0, 0, holds, 3) == []
        spends = await backend.settle("in-process", limits, local.at, 0, 0, holds, 4)
        assert spends[0].spent_nano == 4 and await fallback.spent("key:outage", "daily") == 4
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]

        redis_server.start()

        async def recovered() -> bool:
            admission = await backend.acquire(lease(), [], 0, [])
            return admission.ok and backend.available()

        await _eventually(recovered)
        assert await primary.run_id() != first_run  # a restart: counters must be re-seeded
        infos = [r for r in caplog.records if r.levelno == logging.INFO]
        assert len(infos) == 1 and "answers again" in infos[0].getMessage()
    finally:
        await backend.close()

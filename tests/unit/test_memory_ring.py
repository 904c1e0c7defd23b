"""The in-process backend's ring of 1-second buckets at its edges: a long idle gap, a
clock that steps back, and the reset reported for the oldest counted bucket."""

from __future__ import annotations

from sluicegate.state.base import WINDOW_BUCKETS, RateLimit
from sluicegate.state.memory import MemoryBackend


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


LIMIT = RateLimit("key:ring", rpm=3, tpm=1000)


async def test_counts_expire_after_a_gap_longer_than_the_window() -> None:
    clock = Clock(1_000.2)
    backend = MemoryBackend(clock=clock)
    for n in range(3):
        assert (await backend.acquire(f"a{n}", [LIMIT], 10, [])).ok
    assert not (await backend.acquire("a3", [LIMIT], 10, [])).ok
    clock.now += WINDOW_BUCKETS * 5  # idle for minutes: the whole ring is stale
    admission = await backend.acquire("b", [LIMIT], 10, [])
    assert admission.ok
    (state,) = admission.windows
    assert state.requests_remaining == 2 and state.tokens_remaining == 990


async def test_counts_leave_exactly_when_their_bucket_leaves() -> None:
    clock = Clock(2_000.5)
    backend = MemoryBackend(clock=clock)
    assert (await backend.acquire("a", [LIMIT], 1, [])).ok
    clock.now = 2_010.5
    assert (await backend.acquire("b", [LIMIT], 1, [])).ok
    first = await backend.acquire("c", [LIMIT], 1, [])
    # The oldest counted bucket is 2000: it stops counting at 2000 + 61.
    assert first.windows[0].requests_reset == 2_000 + WINDOW_BUCKETS - clock.now
    clock.now = 2_000 + WINDOW_BUCKETS + 0.1  # bucket 2000 left, 2010 still counts
    refused = await backend.acquire("d", [LIMIT], 1, [])
    assert refused.ok and refused.windows[0].requests_remaining == 0
    assert refused.windows[0].requests_reset == 2_010 + WINDOW_BUCKETS - clock.now


async def test_a_clock_stepping_back_loses_no_counts() -> None:
    clock = Clock(3_000.0)
    backend = MemoryBackend(clock=clock)
    assert (await backend.acquire("a", [LIMIT], 1, [])).ok
    clock.now = 2_990.0  # NTP stepped the clock back ten seconds
    assert (await backend.acquire("b", [LIMIT], 1, [])).ok
    assert (await backend.acquire("c", [LIMIT], 1, [])).ok
    refused = await backend.acquire("d", [LIMIT], 1, [])
    assert not refused.ok and refused.refusal is not None and refused.refusal.kind == "rpm"


async def test_settle_corrects_the_bucket_counted_in_even_seconds_later() -> None:
    clock = Clock(4_000.9)
    backend = MemoryBackend(clock=clock)
    admission = await backend.acquire("a", [LIMIT], 600, [])
    clock.now = 4_030.0
    await backend.settle("a", [LIMIT], admission.at, 600, 100, [], 0)
    check = await backend.acquire("b", [LIMIT], 1, [])
    assert check.windows[0].tokens_remaining == 1000 - 100 - 1

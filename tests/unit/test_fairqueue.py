"""The fair queue in front of shared capacity, over the real in-process limit backend."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter

from sluicegate.policy.fairqueue import FairQueue
from sluicegate.state.base import Admission, RateLimit
from sluicegate.state.memory import MemoryBackend

CAPACITY = RateLimit("deployment:slow", max_parallel=2)
_leases = itertools.count()


def _shared(admission: Admission) -> bool:
    refusal = admission.refusal
    return refusal is not None and refusal.scope.startswith("deployment:")


async def _run_partner(
    queue: FairQueue,
    backend: MemoryBackend,
    partner: str,
    weight: float,
    served: Counter[str],
    stop_at: float,
    limits: tuple[RateLimit, ...] = (CAPACITY,),
) -> None:
    while time.monotonic() < stop_at:
        lease = f"lease-{next(_leases)}"
        admission = await queue.admit(
            "slow",
            partner,
            weight,
            lambda lease=lease: backend.acquire(lease, limits, 1, ()),  # type: ignore[misc]
            lambda adm, lease=lease: backend.release(lease, limits, adm.at, 1, ()),  # type: ignore[misc]
            None,
        )
        if not admission.ok:
            await asyncio.sleep(0.001)
            continue
        await asyncio.sleep(0.01)  # the upstream call
        await backend.settle(lease, limits, admission.at, 1, 1, (), 0)
        served[partner] += 1
        queue.notify()


async def test_weights_one_to_three_share_saturated_capacity_one_to_three() -> None:
    backend = MemoryBackend()
    queue = FairQueue(max_wait=10, max_size=1000, is_shared=_shared)
    served: Counter[str] = Counter()
    stop_at = time.monotonic() + 2.0
    # Both partners push far more than the capacity (2 in flight), with equal pressure.
    tasks = [
        _run_partner(queue, backend, partner, weight, served, stop_at)
        for partner, weight in (("a", 1.0), ("b", 3.0))
        for _ in range(12)
    ]
    await asyncio.gather(*tasks)
    await queue.close()
    ratio = served["b"] / served["a"]
    assert served["a"] + served["b"] > 100
    assert 2.5 <= ratio <= 3.5, served


async def test_a_burst_of_one_partner_does_not_starve_another() -> None:
    backend = MemoryBackend()
    queue = FairQueue(max_wait=10, max_size=1000, is_shared=_shared)
    served: Counter[str] = Counter()
    stop_at = time.monotonic() + 1.5
    tasks = [_run_partner(queue, backend, "burst", 1.0, served, stop_at) for _ in range(40)]
    tasks.append(_run_partner(queue, backend, "quiet", 1.0, served, stop_at))
    await asyncio.gather(*tasks)
    await queue.close()
    # The quiet partner has one request at a time; it is served about as often as it asks
    # (every other admission at most), not once per 40 of the burst.
    assert served["quiet"] >= served["burst"] / 3, served


async def test_wait_is_bounded_and_answers_the_latest_refusal() -> None:
    backend = MemoryBackend()
    queue = FairQueue(max_wait=0.2, max_size=1000, is_shared=_shared)
    held = await backend.acquire("h1", (RateLimit("deployment:slow", max_parallel=1),), 1, ())
    assert held.ok
    limits = (RateLimit("deployment:slow", max_parallel=1),)
    started = time.monotonic()
    admission = await queue.admit(
        "slow",
        "a",
        1.0,
        lambda: backend.acquire("w1", limits, 1, ()),
        lambda adm: backend.release("w1", limits, adm.at, 1, ()),
        None,
    )
    waited = time.monotonic() - started
    assert not admission.ok
    assert admission.refusal is not None and admission.refusal.kind == "parallel"
    assert 0.15 <= waited < 2.0
    assert queue.depth("slow") == 0  # at once, not a loop turn later
    await queue.close()


async def test_client_deadline_shortens_the_wait_and_a_full_queue_refuses_at_once() -> None:
    backend = MemoryBackend()
    limits = (RateLimit("deployment:slow", max_parallel=1),)
    assert (await backend.acquire("h1", limits, 1, ())).ok
    queue = FairQueue(max_wait=30, max_size=1, is_shared=_shared)

    def admit(lease: str, deadline: float | None) -> asyncio.Task[Admission]:
        return asyncio.create_task(
            queue.admit(
                "slow",
                "a",
                1.0,
                lambda: backend.acquire(lease, limits, 1, ()),
                lambda adm: backend.release(lease, limits, adm.at, 1, ()),
                deadline,
            )
        )

    first = admit("w1", time.monotonic() + 0.3)
    await asyncio.sleep(0.05)
    started = time.monotonic()
    second = await admit("w2", None)  # the queue (size 1) is full: refused at once
    assert not second.ok and time.monotonic() - started < 0.1
    assert not (await first).ok  # the client's deadline passed before capacity freed
    await queue.close()


async def test_admission_after_release_in_order() -> None:
    backend = MemoryBackend()
    limits = (RateLimit("deployment:slow", max_parallel=1),)
    first_hold = await backend.acquire("h1", limits, 1, ())
    queue = FairQueue(max_wait=5, max_size=10, is_shared=_shared)
    order: list[str] = []

    async def wait(lease: str) -> None:
        admission = await queue.admit(
            "slow",
            "p-" + lease,
            1.0,
            lambda: backend.acquire(lease, limits, 1, ()),
            lambda adm: backend.release(lease, limits, adm.at, 1, ()),
            None,
        )
        assert admission.ok
        order.append(lease)
        await backend.settle(lease, limits, admission.at, 1, 1, (), 0)
        queue.notify()

    waiters = [asyncio.create_task(wait(f"w{i}")) for i in range(3)]
    await asyncio.sleep(0.05)
    assert order == []
    await backend.settle("h1", limits, first_hold.at, 1, 1, (), 0)
    queue.notify()
    await asyncio.wait_for(asyncio.gather(*waiters), 5)
    assert order == ["w0", "w1", "w2"]
    await queue.close()


async def test_newcomers_right_after_waiters_gave_up_are_answered_not_crashed() -> None:
    """Waiters that time out and newcomers that arrive in the same loop turn: every call
    returns an admission or a refusal (a stale waiting count once raised instead)."""
    backend = MemoryBackend()
    limits = (RateLimit("deployment:slow", rpm=1),)
    queue = FairQueue(max_wait=0.002, max_size=1000, is_shared=_shared)
    answers: Counter[bool] = Counter()
    stop_at = time.monotonic() + 0.5

    async def loop() -> None:
        while time.monotonic() < stop_at:
            lease = f"lease-{next(_leases)}"
            admission = await queue.admit(
                "slow",
                "a",
                1.0,
                lambda lease=lease: backend.acquire(lease, limits, 1, ()),  # type: ignore[misc]
                lambda adm, lease=lease: backend.release(lease, limits, adm.at, 1, ()),  # type: ignore[misc]
                None,
            )
            answers[admission.ok] += 1

    # One client alone is the sharpest case: its own expired wait is all the queue holds.
    await loop()
    await queue.close()
    assert answers[True] == 1 and answers[False] > 50

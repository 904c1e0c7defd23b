"""Weighted-fair admission to saturated shared capacity (the global limit, a deployment's).

When an acquire is refused by a shared scope, the request waits in this process's queue for
its deployment instead of failing at once. The queue hands the freed capacity out in
weighted-fair order across partners (virtual finish tags, as in weighted fair queuing): a
request arriving for partner ``p`` gets the tag ``max(V, last[p]) + 1/weight`` and the
smallest tag goes next, so under saturation partners share admissions in proportion to their
weights however hard any one of them pushes. While a queue holds anyone, newcomers join it
rather than overtake it.

One dispatcher task per non-empty queue retries the head's acquire when a request settles in
this process (``notify``) or after the refusal's hint; the capacity itself lives in the limit
backend, so with Redis the limit holds across processes and the order is fair within each.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sluicegate.state.base import Admission

Attempt = Callable[[], Awaitable[Admission]]
Release = Callable[[Admission], Awaitable[None]]
IsShared = Callable[[Admission], bool]

MIN_RETRY = 0.005
MAX_PARALLEL_RETRY = 0.05  # another process may free a slot without telling us
MAX_RETRY = 1.0


@dataclass(slots=True)
class _Waiter:
    attempt: Attempt
    release: Release
    future: asyncio.Future[Admission]
    last: Admission
    waiting: bool = True  # until admitted, refused or given up


@dataclass(slots=True)
class _Queue:
    heap: list[tuple[float, int, _Waiter]] = field(default_factory=list)
    virtual_time: float = 0.0
    last_tag: dict[str, float] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    waiting: int = 0  # waiters still waiting (the heap may also hold ones that gave up)

    def retire(self, waiter: _Waiter) -> None:
        """``waiter`` stops waiting (now, not on a later loop turn: newcomers decide by
        this count whether they may try at once)."""
        if waiter.waiting:
            waiter.waiting = False
            self.waiting -= 1

    def latest_refusal(self) -> Admission | None:
        """What a newcomer behind waiting requests "got": the latest refusal of one of them."""
        for _, _, waiter in self.heap:
            if waiter.waiting:
                return waiter.last
        return None


class FairQueue:
    def __init__(self, max_wait: float, max_size: int, is_shared: IsShared) -> None:
        self._max_wait = max_wait
        self._max_size = max_size
        self._is_shared = is_shared
        # Capacity name -> its queue, only while it holds anyone: an empty dict is what
        # the governor checks per request (read it, never change it from outside).
        self.queues: dict[str, _Queue] = {}
        self._seq = itertools.count()

    def depths(self) -> dict[str, int]:
        """Waiting requests per capacity (for metrics)."""
        return {name: queue.waiting for name, queue in self.queues.items()}

    def depth(self, name: str) -> int:
        queue = self.queues.get(name)
        return 0 if queue is None else queue.waiting

    async def admit(
        self,
        name: str,
        partner: str,
        weight: float,
        attempt: Attempt,
        release: Release,
        deadline: float | None,
        first: Admission | None = None,
    ) -> Admission:
        """Admission for one request to the capacity ``name``: at once when it is free,
        else after a fair wait; a refusal when the wait would pass ``max_wait``, the
        client's ``deadline`` (monotonic) or the queue is full. ``first``: the refusal of
        an attempt the caller already made."""
        queue = self.queues.get(name)
        # Behind waiting requests, don't even try: that could overtake them.
        ahead = queue.latest_refusal() if queue is not None and queue.waiting else None
        if first is not None:
            admission = first
        elif ahead is not None:
            admission = ahead
        else:
            admission = await attempt()
        if admission.ok or not self._is_shared(admission):
            return admission
        wait = self._max_wait
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
        queue = self.queues.get(name)
        if wait <= 0 or (0 if queue is None else queue.waiting) >= self._max_size:
            return admission
        if queue is None:  # made only for a waiter: ``queues`` holds no idle queue
            queue = self.queues[name] = _Queue()
        tag = max(queue.virtual_time, queue.last_tag.get(partner, 0.0)) + 1.0 / weight
        queue.last_tag[partner] = tag
        waiter = _Waiter(attempt, release, asyncio.get_running_loop().create_future(), admission)
        queue.waiting += 1
        heapq.heappush(queue.heap, (tag, next(self._seq), waiter))
        if queue.task is None or queue.task.done():
            queue.task = asyncio.create_task(self._dispatch(name, queue))
        queue.wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), wait)
        except TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled():
                return waiter.future.result()  # admitted in the same instant: keep it
            queue.retire(waiter)
            waiter.future.cancel()
            return waiter.last
        except BaseException:  # the client went away: the dispatcher frees what it got
            queue.retire(waiter)
            waiter.future.cancel()
            raise

    def notify(self) -> None:
        """Capacity may have been freed in this process: let every queue retry its head."""
        for queue in self.queues.values():
            if queue.heap:
                queue.wake.set()

    async def close(self) -> None:
        for queue in self.queues.values():
            if queue.task is not None:
                queue.task.cancel()
            for _, _, waiter in queue.heap:
                if not waiter.future.done():
                    waiter.future.cancel()
        self.queues.clear()

    async def _dispatch(self, name: str, queue: _Queue) -> None:
        while queue.heap:
            tag, _, head = queue.heap[0]
            if head.future.done():  # gave up waiting
                heapq.heappop(queue.heap)
                continue
            queue.wake.clear()
            admission = await head.attempt()
            if admission.ok or not self._is_shared(admission):
                heapq.heappop(queue.heap)
                queue.retire(head)
                queue.virtual_time = tag
                if head.future.done():  # gave up while we were acquiring for it
                    if admission.ok:
                        await head.release(admission)
                else:
                    head.future.set_result(admission)
                continue
            head.last = admission
            await self._pause(queue, admission)
        if queue.task is asyncio.current_task():
            queue.task = None
        if not queue.heap and self.queues.get(name) is queue:
            del self.queues[name]

    @staticmethod
    async def _pause(queue: _Queue, refused: Admission) -> None:
        refusal = refused.refusal
        hint = refusal.retry_after if refusal is not None else None
        if hint is None:
            hint = MAX_PARALLEL_RETRY
        hint = min(max(hint, MIN_RETRY), MAX_RETRY)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(queue.wake.wait(), hint)

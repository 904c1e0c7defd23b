"""In-process limit backend: one process's counts, atomic because nothing awaits inside.

Each scope keeps its 1-second buckets in a ring with running sums, so a check costs O(1)
instead of summing 61 buckets; an acquire remembers the scope objects it counted in, so its
settle needs no lookups. The bucket layout and the checks mirror the Redis script
(redis.py) so both backends answer alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sluicegate.state.base import (
    WINDOW_BUCKETS,
    Admission,
    BudgetHold,
    BudgetSpend,
    RateLimit,
    Refusal,
    WindowState,
    leaves_window_in,
)
from sluicegate.state.periods import CurrentPeriods, seconds_until_end


class _Scope:
    """One scope's counts and leases. The counts live in a ring of ``WINDOW_BUCKETS``
    one-second buckets ending at ``head`` (the newest second seen), with running sums, so
    a check or an add is a few integer operations and the ring is swept once per second,
    not per request."""

    __slots__ = ("first", "head", "leases", "requests", "sum_requests", "sum_tokens", "tokens")

    def __init__(self) -> None:
        self.head = 0
        # No bucket before ``first`` holds a count: the scan for the oldest counted bucket
        # (for the reset headers) starts there, so it is O(1) amortised.
        self.first = 1
        self.requests = [0] * WINDOW_BUCKETS
        self.tokens = [0] * WINDOW_BUCKETS
        self.sum_requests = 0
        self.sum_tokens = 0
        self.leases: dict[str, float] = {}  # lease -> expiry (scopes with max_parallel)

    def advance(self, bucket: int) -> None:
        """Move the window's end to ``bucket``, dropping the buckets that left it. A clock
        that stepped back keeps the head where it is: counts are never lost."""
        head = self.head
        if bucket <= head:
            return
        requests, tokens = self.requests, self.tokens
        if bucket - head >= WINDOW_BUCKETS:
            if self.sum_requests or self.sum_tokens:
                requests[:] = tokens[:] = [0] * WINDOW_BUCKETS
                self.sum_requests = self.sum_tokens = 0
        else:
            for second in range(head + 1, bucket + 1):
                slot = second % WINDOW_BUCKETS
                if requests[slot] or tokens[slot]:
                    self.sum_requests -= requests[slot]
                    self.sum_tokens -= tokens[slot]
                    requests[slot] = tokens[slot] = 0
        self.head = bucket

    def add(self, tokens: int) -> int:
        """Count one request and ``tokens`` in the newest bucket; the bucket counted in."""
        slot = self.head % WINDOW_BUCKETS
        if self.first > self.head:
            self.first = self.head
        self.requests[slot] += 1
        self.tokens[slot] += tokens
        self.sum_requests += 1
        self.sum_tokens += tokens
        return self.head

    def correct(self, bucket: int, requests: int, tokens: int) -> None:
        """Adjust ``bucket``'s counts, never below 0, if it is still in the ring."""
        if bucket <= self.head - WINDOW_BUCKETS or bucket > self.head:
            return
        slot = bucket % WINDOW_BUCKETS
        if requests:
            updated = max(0, self.requests[slot] + requests)
            self.sum_requests += updated - self.requests[slot]
            self.requests[slot] = updated
        if tokens:
            updated = max(0, self.tokens[slot] + tokens)
            self.sum_tokens += updated - self.tokens[slot]
            self.tokens[slot] = updated

    def oldest_with(self, counts: list[int]) -> int | None:
        """The oldest bucket with a count in ``counts`` (requests or tokens)."""
        requests, tokens = self.requests, self.tokens
        second = max(self.first, self.head - WINDOW_BUCKETS + 1)
        while second <= self.head:  # move ``first`` to the oldest bucket holding anything
            slot = second % WINDOW_BUCKETS
            if requests[slot] or tokens[slot]:
                break
            second += 1
        self.first = second
        while second <= self.head:
            if counts[second % WINDOW_BUCKETS] > 0:
                return second
            second += 1
        return None

    def freed_at(self, counts: list[int], total: int, fits: Callable[[int], bool]) -> int | None:
        """The bucket whose leaving makes ``fits(remaining)`` true; None if nothing does."""
        remaining = total
        for second in range(self.head - WINDOW_BUCKETS + 1, self.head + 1):
            count = counts[second % WINDOW_BUCKETS]
            if count:
                remaining -= count
                if fits(remaining):
                    return second
        return None

    def state(self, limit: RateLimit, now: float) -> WindowState:
        rpm, tpm = limit.rpm, limit.tpm
        return WindowState(
            limit.scope,
            rpm,
            None if rpm is None else max(0, rpm - self.sum_requests),
            None if rpm is None else leaves_window_in(self.oldest_with(self.requests), now),
            tpm,
            None if tpm is None else max(0, tpm - self.sum_tokens),
            None if tpm is None else leaves_window_in(self.oldest_with(self.tokens), now),
        )


@dataclass(slots=True)
class _Budget:
    spent: int = 0
    held: int = 0
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)  # lease -> amount, expiry


@dataclass(slots=True)
class _Inflight:
    """What one unsettled acquire counted, so that settle finds it without lookups."""

    scopes: list[_Scope]
    bucket: int  # the bucket its request and tokens were counted in
    budgets: list[_Budget]
    period_ids: tuple[str, ...]


class MemoryBackend:
    """Process-local limits. In-flight leases never expire; those forgotten by close() do."""

    name = "memory"

    def __init__(self, lease_ttl: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self._lease_ttl = lease_ttl
        self._clock = clock
        self._scopes: dict[str, _Scope] = {}
        self._budgets: dict[tuple[str, str, str], _Budget] = {}  # (scope, period, id)
        self._inflight: dict[str, _Inflight] = {}  # lease -> what it counted
        self._periods = CurrentPeriods()
        self._pruned_day = -1

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        # Like a process that stopped renewing: its unsettled leases now expire by TTL.
        self._inflight.clear()

    def available(self) -> bool:
        return True

    async def acquire(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        tokens: int,
        holds: Sequence[BudgetHold],
    ) -> Admission:
        now = self._clock()
        bucket = math.floor(now)
        scopes = self._scopes_of(limits)
        refusal: Refusal | None = None
        for limit, scope in zip(limits, scopes, strict=True):
            if limit.windowed:  # every window is brought up to date, for the headers
                scope.advance(bucket)
                if refusal is None:
                    refusal = _window_refusal(limit, scope, tokens, now)
            if limit.max_parallel is not None and refusal is None:
                refusal = self._parallel_refusal(limit, scope, limit.max_parallel, now)
        ids: tuple[str, ...] = ()
        budgets: list[_Budget] = []
        if holds:  # most requests hold no budget: keep the date work off their path
            period_of = self._periods.id
            ids = tuple([period_of(hold.period) for hold in holds])
            if self._periods.day != self._pruned_day:
                self._prune_periods()
            budgets = [self._budget(h.scope, h.period, i) for h, i in zip(holds, ids, strict=True)]
            refusal = refusal or self._check_holds(holds, budgets, now)
        if refusal is not None:
            return Admission(False, now, refusal, self._window_states(limits, scopes, now))

        expiry = now + self._lease_ttl
        counted_in = bucket
        for limit, scope in zip(limits, scopes, strict=True):
            if limit.windowed:
                counted_in = scope.add(tokens)
            if limit.max_parallel is not None:
                scope.leases[lease] = expiry
        used_after: list[tuple[str, int]] = []
        for hold, budget in zip(holds, budgets, strict=True):
            amount = budget.holds.get(lease, (0, 0.0))[0] + hold.amount_nano
            budget.holds[lease] = (amount, expiry)
            budget.held += hold.amount_nano
            used_after.append((hold.scope, budget.spent + budget.held))
        self._inflight[lease] = _Inflight(scopes, counted_in, budgets, ids)
        windows = self._window_states(limits, scopes, now)
        return Admission(True, now, None, windows, tuple(used_after))

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
        budgets = self._finish(lease, limits, at, 0, actual_tokens - reserved_tokens, holds)
        spends = []
        for hold, budget in zip(holds, budgets, strict=True):
            budget.spent += actual_nano
            spends.append(BudgetSpend(hold.scope, hold.period, budget.spent, hold.limit_nano))
        return spends

    async def release(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        at: float,
        reserved_tokens: int,
        holds: Sequence[BudgetHold],
    ) -> None:
        self._finish(lease, limits, at, -1, -reserved_tokens, holds)

    async def seed_spend(self, scope: str, period: str, spent_nano: int) -> None:
        budget = self._budget(scope, period, self._periods.id(period))
        budget.spent = max(budget.spent, spent_nano)

    async def spent(self, scope: str, period: str) -> int:
        budget = self._budgets.get((scope, period, self._periods.id(period)))
        return 0 if budget is None else budget.spent

    def _scopes_of(self, limits: Sequence[RateLimit]) -> list[_Scope]:
        scopes = self._scopes
        found = []
        for limit in limits:
            scope = scopes.get(limit.scope)
            if scope is None:
                scope = scopes[limit.scope] = _Scope()
            found.append(scope)
        return found

    def _finish(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        at: float,
        requests: int,
        tokens: int,
        holds: Sequence[BudgetHold],
    ) -> list[_Budget]:
        """Free the lease and holds and correct the acquire's bucket; the holds' budgets."""
        inflight = self._inflight.pop(lease, None)
        if inflight is None or len(inflight.scopes) != len(limits):
            # Not acquired here (or forgotten by close()): the hold's period is the current one.
            scopes, bucket = self._scopes_of(limits), math.floor(at)
            budgets = [
                self._budget(hold.scope, hold.period, self._periods.id(hold.period))
                for hold in holds
            ]
        else:
            scopes, bucket = inflight.scopes, inflight.bucket
            budgets = inflight.budgets
            if len(budgets) != len(holds):
                budgets = [
                    self._budget(hold.scope, hold.period, pid)
                    for hold, pid in zip(holds, inflight.period_ids, strict=False)
                ]
        if requests or tokens:
            for limit, scope in zip(limits, scopes, strict=True):
                if limit.windowed:
                    scope.correct(bucket, requests, tokens)
        for scope in scopes:
            if scope.leases:
                scope.leases.pop(lease, None)
        for budget in budgets:
            amount, _ = budget.holds.pop(lease, (0, 0.0))
            budget.held -= amount
        return budgets

    def _check_holds(
        self, holds: Sequence[BudgetHold], budgets: list[_Budget], now: float
    ) -> Refusal | None:
        for hold, budget in zip(holds, budgets, strict=True):
            if budget.spent + budget.held + hold.amount_nano > hold.limit_nano:
                self._purge_holds(budget, now)
                used = budget.spent + budget.held
                if used + hold.amount_nano > hold.limit_nano:
                    retry = seconds_until_end(hold.period, datetime.now(UTC))
                    return Refusal(hold.scope, "budget", retry, hold.limit_nano, used)
        return None

    def _parallel_refusal(
        self, limit: RateLimit, scope: _Scope, max_parallel: int, now: float
    ) -> Refusal | None:
        leases = scope.leases
        if len(leases) + 1 > max_parallel:
            # Purging only when full keeps the common path free of a scan over the leases.
            for lease in [k for k, exp in leases.items() if exp <= now and k not in self._inflight]:
                del leases[lease]
        if len(leases) + 1 > max_parallel:
            return Refusal(limit.scope, "parallel", None, max_parallel, len(leases))
        return None

    def _purge_holds(self, budget: _Budget, now: float) -> None:
        for lease, (amount, expiry) in list(budget.holds.items()):
            if expiry <= now and lease not in self._inflight:
                del budget.holds[lease]
                budget.held -= amount

    def _budget(self, scope: str, period: str, pid: str) -> _Budget:
        budget = self._budgets.get((scope, period, pid))
        if budget is None:
            budget = self._budgets[(scope, period, pid)] = _Budget()
        return budget

    def _prune_periods(self) -> None:
        """Once a day, forget counters of periods that ended and hold nothing."""
        self._pruned_day = self._periods.day
        for key in [k for k, b in self._budgets.items() if not b.holds]:
            _, period, pid = key
            if pid != self._periods.id(period):
                del self._budgets[key]

    @staticmethod
    def _window_states(
        limits: Sequence[RateLimit], scopes: list[_Scope], now: float
    ) -> tuple[WindowState, ...]:
        """The header state of the tightest scope for requests and for tokens (the headers
        report only those): a full state costs more than picking by the running sums."""
        by_requests: tuple[RateLimit, _Scope] | None = None
        by_tokens: tuple[RateLimit, _Scope] | None = None
        least_requests = least_tokens = 0
        for limit, scope in zip(limits, scopes, strict=True):
            if limit.rpm is not None and (
                by_requests is None or limit.rpm - scope.sum_requests < least_requests
            ):
                by_requests, least_requests = (limit, scope), limit.rpm - scope.sum_requests
            if limit.tpm is not None and (
                by_tokens is None or limit.tpm - scope.sum_tokens < least_tokens
            ):
                by_tokens, least_tokens = (limit, scope), limit.tpm - scope.sum_tokens
        if by_requests is None:
            return () if by_tokens is None else (by_tokens[1].state(by_tokens[0], now),)
        first = by_requests[1].state(by_requests[0], now)
        if by_tokens is None or by_tokens[1] is by_requests[1]:
            return (first,)
        return (first, by_tokens[1].state(by_tokens[0], now))


def _window_refusal(limit: RateLimit, scope: _Scope, tokens: int, now: float) -> Refusal | None:
    requests, used_tokens = scope.sum_requests, scope.sum_tokens
    if limit.rpm is not None and requests + 1 > limit.rpm:
        rpm = limit.rpm
        freed = scope.freed_at(scope.requests, requests, lambda left: left + 1 <= rpm)
        retry = None if freed is None else leaves_window_in(freed, now)
        return Refusal(limit.scope, "rpm", retry, rpm, requests)
    if limit.tpm is not None and used_tokens > 0 and used_tokens + tokens > limit.tpm:
        tpm = limit.tpm
        freed = scope.freed_at(
            scope.tokens, used_tokens, lambda left: left == 0 or left + tokens <= tpm
        )
        retry = None if freed is None else leaves_window_in(freed, now)
        return Refusal(limit.scope, "tpm", retry, tpm, used_tokens)
    return None

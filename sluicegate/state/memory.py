"""In-process limit backend: one process's counts, atomic because nothing awaits inside.

Windows keep running sums over their 1-second buckets and drop buckets as they leave, so a
check costs O(1) amortised instead of summing 61 buckets. The bucket layout and the checks
mirror the Redis script (redis.py) so both backends answer alike.
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

REQUESTS, TOKENS = 0, 1  # indexes into a bucket's [requests, tokens]


class _Window:
    """Buckets ``oldest .. newest`` (only those that hold counts exist) and their sums."""

    __slots__ = ("buckets", "newest", "oldest", "sums")

    def __init__(self) -> None:
        self.buckets: dict[int, list[int]] = {}
        self.oldest = 0
        self.newest = 0
        self.sums = [0, 0]

    def expire(self, bucket: int) -> None:
        """Drop buckets that left the window at ``bucket``, and empty ones at the front."""
        if not self.buckets:
            return
        first_counted = bucket - WINDOW_BUCKETS + 1
        if self.newest < first_counted:
            self.buckets.clear()
            self.sums = [0, 0]
            return
        while self.oldest <= self.newest:
            entry = self.buckets.get(self.oldest)
            if entry is not None:
                if self.oldest >= first_counted and (entry[REQUESTS] or entry[TOKENS]):
                    break
                del self.buckets[self.oldest]
                self.sums[REQUESTS] -= entry[REQUESTS]
                self.sums[TOKENS] -= entry[TOKENS]
            self.oldest += 1

    def add(self, bucket: int, requests: int, tokens: int) -> None:
        if not self.buckets:
            self.oldest = self.newest = bucket
        else:
            # min/max rather than append-only: a clock stepping back must not lose counts.
            self.oldest = min(self.oldest, bucket)
            self.newest = max(self.newest, bucket)
        entry = self.buckets.setdefault(bucket, [0, 0])
        entry[REQUESTS] += requests
        entry[TOKENS] += tokens
        self.sums[REQUESTS] += requests
        self.sums[TOKENS] += tokens

    def correct(self, bucket: int, now_bucket: int, requests: int, tokens: int) -> None:
        """Adjust a bucket still inside the window, never below 0."""
        entry = self.buckets.get(bucket)
        if entry is None or bucket < now_bucket - WINDOW_BUCKETS + 1:
            return
        if requests:
            updated = max(0, entry[REQUESTS] + requests)
            self.sums[REQUESTS] += updated - entry[REQUESTS]
            entry[REQUESTS] = updated
        if tokens:
            updated = max(0, entry[TOKENS] + tokens)
            self.sums[TOKENS] += updated - entry[TOKENS]
            entry[TOKENS] = updated

    def oldest_with(self, index: int) -> int | None:
        for bucket in range(self.oldest, self.newest + 1):
            entry = self.buckets.get(bucket)
            if entry is not None and entry[index] > 0:
                return bucket
        return None

    def freed_at(self, index: int, fits: Callable[[int], bool]) -> int | None:
        """The bucket whose leaving makes ``fits(remaining)`` true; None if nothing does."""
        remaining = self.sums[index]
        for bucket in range(self.oldest, self.newest + 1):
            entry = self.buckets.get(bucket)
            if entry is not None and entry[index]:
                remaining -= entry[index]
                if fits(remaining):
                    return bucket
        return None

    def state(self, limit: RateLimit, now: float) -> WindowState:
        requests, tokens = self.sums
        rpm, tpm = limit.rpm, limit.tpm
        front = self.buckets.get(self.oldest)  # after expire(): the oldest bucket held
        requests_reset = tokens_reset = None
        if rpm is not None:
            oldest = self.oldest if front and front[REQUESTS] else self.oldest_with(REQUESTS)
            requests_reset = leaves_window_in(oldest, now)
        if tpm is not None:
            oldest = self.oldest if front and front[TOKENS] else self.oldest_with(TOKENS)
            tokens_reset = leaves_window_in(oldest, now)
        return WindowState(
            limit.scope,
            rpm,
            None if rpm is None else max(0, rpm - requests),
            requests_reset,
            tpm,
            None if tpm is None else max(0, tpm - tokens),
            tokens_reset,
        )


@dataclass(slots=True)
class _Budget:
    spent: int = 0
    held: int = 0
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)  # lease -> amount, expiry


class MemoryBackend:
    """Process-local limits. In-flight leases never expire; those forgotten by close() do."""

    name = "memory"

    def __init__(self, lease_ttl: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self._lease_ttl = lease_ttl
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._leases: dict[str, dict[str, float]] = {}  # scope -> lease -> expiry
        self._budgets: dict[tuple[str, str, str], _Budget] = {}  # (scope, period, id)
        self._inflight: dict[str, tuple[str, ...]] = {}  # lease -> period id of each hold
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
        refusal = self._check_limits(limits, tokens, now, bucket)
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
            return Admission(False, now, refusal, self._window_states(limits, now))

        expiry = now + self._lease_ttl
        for limit in limits:
            if limit.windowed:
                self._windows[limit.scope].add(bucket, 1, tokens)
            if limit.max_parallel is not None:
                self._leases[limit.scope][lease] = expiry
        used_after: list[tuple[str, int]] = []
        for hold, budget in zip(holds, budgets, strict=True):
            amount = budget.holds.get(lease, (0, 0.0))[0] + hold.amount_nano
            budget.holds[lease] = (amount, expiry)
            budget.held += hold.amount_nano
            used_after.append((hold.scope, budget.spent + budget.held))
        self._inflight[lease] = ids
        return Admission(True, now, None, self._window_states(limits, now), tuple(used_after))

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
        ids = self._finish(lease, limits, at, 0, actual_tokens - reserved_tokens, holds)
        spends = []
        for hold, pid in zip(holds, ids, strict=True):
            budget = self._budget(hold.scope, hold.period, pid)
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

    def _finish(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        at: float,
        requests: int,
        tokens: int,
        holds: Sequence[BudgetHold],
    ) -> tuple[str, ...]:
        """Free the lease and holds and correct the acquire's bucket; the holds' period ids."""
        now_bucket = math.floor(self._clock())
        for limit in limits:
            window = self._windows.get(limit.scope)
            if limit.windowed and window is not None:
                window.correct(math.floor(at), now_bucket, requests, tokens)
            if limit.max_parallel is not None:
                self._leases.get(limit.scope, {}).pop(lease, None)
        ids = self._inflight.pop(lease, None)
        if ids is None or len(ids) != len(holds):
            # Not acquired here (or forgotten by close()): the hold's period is the current one.
            ids = tuple(self._periods.id(hold.period) for hold in holds)
        for hold, pid in zip(holds, ids, strict=True):
            budget = self._budget(hold.scope, hold.period, pid)
            amount, _ = budget.holds.pop(lease, (0, 0.0))
            budget.held -= amount
        return ids

    def _check_limits(
        self, limits: Sequence[RateLimit], tokens: int, now: float, bucket: int
    ) -> Refusal | None:
        refusal: Refusal | None = None
        for limit in limits:  # every window is brought up to date, for the headers
            if limit.windowed:
                window = self._windows.get(limit.scope)
                if window is None:
                    window = self._windows[limit.scope] = _Window()
                window.expire(bucket)
                refusal = refusal or _window_refusal(limit, window, tokens, now)
            if limit.max_parallel is not None and refusal is None:
                refusal = self._parallel_refusal(limit, limit.max_parallel, now)
        return refusal

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

    def _parallel_refusal(self, limit: RateLimit, max_parallel: int, now: float) -> Refusal | None:
        leases = self._leases.setdefault(limit.scope, {})
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

    def _window_states(self, limits: Sequence[RateLimit], now: float) -> tuple[WindowState, ...]:
        """The header state of the tightest scope for requests and for tokens (the headers
        report only those): a full state costs more than picking by the running sums."""
        by_requests: RateLimit | None = None
        by_tokens: RateLimit | None = None
        least_requests = least_tokens = 0
        windows = self._windows
        for limit in limits:
            if not limit.windowed:
                continue
            requests, tokens = windows[limit.scope].sums
            if limit.rpm is not None and (
                by_requests is None or limit.rpm - requests < least_requests
            ):
                by_requests, least_requests = limit, limit.rpm - requests
            if limit.tpm is not None and (by_tokens is None or limit.tpm - tokens < least_tokens):
                by_tokens, least_tokens = limit, limit.tpm - tokens
        if by_requests is None:
            if by_tokens is None:
                return ()
            return (windows[by_tokens.scope].state(by_tokens, now),)
        first = windows[by_requests.scope].state(by_requests, now)
        if by_tokens is None or by_tokens is by_requests:
            return (first,)
        return (first, windows[by_tokens.scope].state(by_tokens, now))


def _window_refusal(limit: RateLimit, window: _Window, tokens: int, now: float) -> Refusal | None:
    requests, used_tokens = window.sums
    if limit.rpm is not None and requests + 1 > limit.rpm:
        rpm = limit.rpm
        freed = window.freed_at(REQUESTS, lambda left: left + 1 <= rpm)
        retry = None if freed is None else leaves_window_in(freed, now)
        return Refusal(limit.scope, "rpm", retry, rpm, requests)
    if limit.tpm is not None and used_tokens > 0 and used_tokens + tokens > limit.tpm:
        tpm = limit.tpm
        freed = window.freed_at(TOKENS, lambda left: left == 0 or left + tokens <= tpm)
        retry = None if freed is None else leaves_window_in(freed, now)
        return Refusal(limit.scope, "tpm", retry, tpm, used_tokens)
    return None

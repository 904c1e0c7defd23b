"""In-process limit backend: one process's counts, atomic because nothing awaits inside.

Each scope keeps its 1-second buckets in a ring with running sums (state.scope_window), so
a check costs O(1) instead of summing 61 buckets; an acquire remembers the scope objects and
budget counters it counted in, so its settle needs no lookups. The checks mirror the Redis
script (redis.py) so both backends answer alike.
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
    BudgetLimit,
    BudgetSpend,
    RateLimit,
    Refusal,
)
from sluicegate.state.periods import CurrentPeriods, seconds_until_end
from sluicegate.state.scope_window import (
    ScopeWindow,
    Windowed,
    tightest,
    window_refusal,
    window_states,
)


@dataclass(slots=True)
class _Budget:
    spent: int = 0
    held: int = 0  # by in-flight acquires (their amounts are in MemoryBackend._inflight) ...
    # ... and by the leases close() forgot, until they expire: lease -> amount, expiry
    orphans: dict[str, tuple[int, float]] = field(default_factory=dict)


# A limit that is not set, as a number no count reaches: the checks need no None tests.
_UNLIMITED = 1 << 62


class _Plan:
    """What an acquire needs of one sequence of limits, resolved once: the scope objects,
    the limits as plain numbers, and the budget counters its holds used today. The
    governor passes the same tuple for every request of a key to a deployment, so the
    plan is found by the tuple's identity (see ``MemoryBackend._plan_of``)."""

    __slots__ = (
        "budgets",
        "held_for",
        "hold_day",
        "limits",
        "parallel",
        "period_ids",
        "scopes",
        "windowed",
    )

    def __init__(self, limits: Sequence[RateLimit], scopes: list[ScopeWindow]) -> None:
        self.limits = limits
        self.scopes = scopes
        pairs = [(limit, scope) for limit, scope in zip(limits, scopes, strict=True)]
        # (scope, rpm, tpm, limit) of each windowed limit and (scope, max_parallel) of each
        # concurrency limit, in the limits' order.
        self.windowed = tuple(
            (scope, _number(limit.rpm), _number(limit.tpm), limit)
            for limit, scope in pairs
            if limit.windowed
        )
        self.parallel = tuple(
            (scope, limit.max_parallel) for limit, scope in pairs if limit.max_parallel is not None
        )
        # The counters of the last budgets held with these limits (``held_for``, the
        # sequence itself), valid on ``hold_day``.
        self.hold_day = -1
        self.held_for: object = None
        self.budgets: list[_Budget] = []
        self.period_ids: tuple[str, ...] = ()


def _number(limit: int | None) -> int:
    return _UNLIMITED if limit is None else limit


# What one unsettled acquire counted, so that settle finds it without lookups: the plan,
# the bucket its request and tokens were counted in, its budgets' counters and period ids,
# the amounts held on them, and when the lease would expire.
_Inflight = tuple[_Plan, int, list[_Budget], tuple[str, ...], Sequence[int], float]
_PLANS_KEPT = 4096  # plans are a few hundred bytes; a new key-table load makes new ones


class MemoryBackend:
    """Process-local limits. In-flight leases never expire; those forgotten by close() do."""

    name = "memory"

    def __init__(self, lease_ttl: float = 60.0, clock: Callable[[], float] = time.time) -> None:
        self._lease_ttl = lease_ttl
        self._clock = clock
        self._scopes: dict[str, ScopeWindow] = {}
        self._budgets: dict[tuple[str, str, str], _Budget] = {}  # (scope, period, id)
        self._inflight: dict[str, _Inflight] = {}  # lease -> what it counted
        self._plans: dict[int, _Plan] = {}  # id(limits tuple) -> its plan
        self._day_clock = time.time  # the clock of the budget periods
        self._periods = CurrentPeriods(self._day_clock)
        self._pruned_day = -1

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        # Like a process that stopped renewing: its unsettled leases now expire by TTL
        # (concurrency leases carry their expiry already; holds become orphans).
        for lease, (_, _, counters, _, amounts, expiry) in self._inflight.items():
            for index, counter in enumerate(counters):
                counter.orphans[lease] = (amounts[index], expiry)
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
        return self.acquire_now(lease, limits, tokens, holds, [h.amount_nano for h in holds])

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
        spent = self.settle_now(
            lease, limits, at, reserved_tokens, actual_tokens, holds, actual_nano
        )
        return [
            BudgetSpend(hold.scope, hold.period, value, hold.limit_nano)
            for hold, value in zip(holds, spent, strict=True)
        ]

    # The work itself, synchronous: the governor calls these directly (nothing here awaits),
    # with its principals' budgets as they are and the amount held on each (no BudgetHold
    # per request). A lease is acquired once.

    def acquire_now(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        tokens: int,
        budgets: Sequence[BudgetLimit],
        amounts: Sequence[int],
    ) -> Admission:
        """:meth:`acquire` with ``holds`` given as the budgets and the amount for each."""
        now = self._clock()
        bucket = math.floor(now)
        plan = self._plans.get(id(limits))
        if plan is None or plan.limits is not limits:
            plan = self._plan_of(limits)
        # The common case first: nothing near a limit. Anything that might refuse goes the
        # full way (_admit), which finds the refusal the same way whichever check saw it.
        # Meanwhile the tightest scope for requests and for tokens is picked for the headers
        # (every scope counts the same request and tokens, so the commit keeps the order).
        by_requests: Windowed | None = None
        by_tokens: Windowed | None = None
        least_requests = least_tokens = _UNLIMITED
        for entry in plan.windowed:
            scope, rpm, tpm, limit = entry
            if bucket > scope.head:
                scope.advance(bucket)
            left = rpm - scope.sum_requests
            used = scope.sum_tokens
            if left <= 0 or (used and used + tokens > tpm):
                return self._admit(lease, plan, tokens, budgets, amounts, now, bucket)
            if left < least_requests and limit.rpm is not None:
                by_requests, least_requests = entry, left
            if tpm - used < least_tokens and limit.tpm is not None:
                by_tokens, least_tokens = entry, tpm - used
        for scope, most in plan.parallel:
            if len(scope.leases) >= most:
                return self._admit(lease, plan, tokens, budgets, amounts, now, bucket)
        counters: list[_Budget] = []
        ids: tuple[str, ...] = ()
        if budgets:
            counters, ids = self._budgets_of(plan, budgets)
            # (Hot loops over budgets index their counters: a strict zip costs more.)
            for index, counter in enumerate(counters):
                if counter.spent + counter.held + amounts[index] > budgets[index].limit_nano:
                    return self._admit(lease, plan, tokens, budgets, amounts, now, bucket)
        used_after = self._commit(lease, plan, tokens, budgets, amounts, counters, ids, now, bucket)
        return Admission(True, now, None, tightest(by_requests, by_tokens, now), used_after)

    def settle_now(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        at: float,
        reserved_tokens: int,
        actual_tokens: int,
        budgets: Sequence[BudgetLimit],
        actual_nano: int,
    ) -> list[int]:
        """:meth:`settle`: each budget's spend after it, in the budgets' order."""
        inflight = self._inflight.get(lease)
        if inflight is None or inflight[0].limits is not limits or len(inflight[2]) != len(budgets):
            counters = self._finish(lease, limits, at, 0, actual_tokens - reserved_tokens, budgets)
        else:  # acquired here with these limits: what it counted is at hand
            del self._inflight[lease]
            plan, bucket, counters, _, amounts, _ = inflight
            delta = actual_tokens - reserved_tokens
            if delta:
                # scope.correct(bucket, 0, delta), inlined: nearly every request has a delta.
                slot = bucket % WINDOW_BUCKETS
                for scope, _, _, _ in plan.windowed:
                    head = scope.head
                    if head - WINDOW_BUCKETS < bucket <= head:
                        counts = scope.tokens
                        updated = counts[slot] + delta
                        if updated < 0:
                            updated = 0
                        scope.sum_tokens += updated - counts[slot]
                        counts[slot] = updated
            for scope, _ in plan.parallel:
                scope.leases.pop(lease, None)
            for index, counter in enumerate(counters):
                counter.held -= amounts[index]
        spent = []
        for counter in counters:
            counter.spent += actual_nano
            spent.append(counter.spent)
        return spent

    async def release(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        at: float,
        reserved_tokens: int,
        holds: Sequence[BudgetHold],
    ) -> None:
        self._finish(lease, limits, at, -1, -reserved_tokens, holds)  # a hold is a BudgetLimit

    async def seed_spend(self, scope: str, period: str, spent_nano: int) -> None:
        budget = self._budget(scope, period, self._periods.id(period))
        budget.spent = max(budget.spent, spent_nano)

    async def spent(self, scope: str, period: str) -> int:
        budget = self._budgets.get((scope, period, self._periods.id(period)))
        return 0 if budget is None else budget.spent

    def _plan_of(self, limits: Sequence[RateLimit]) -> _Plan:
        plan = _Plan(limits, self._scopes_of(limits))
        if type(limits) is tuple:  # kept only for immutable limits (the governor's)
            if len(self._plans) >= _PLANS_KEPT:
                self._plans.clear()
            self._plans[id(limits)] = plan  # the plan holds the tuple: its id stays unique
        return plan

    def _budgets_of(
        self, plan: _Plan, budgets: Sequence[BudgetLimit]
    ) -> tuple[list[_Budget], tuple[str, ...]]:
        """The counters of ``budgets`` in their current periods, and the period ids."""
        # Today's counters for the same budgets as last time (the governor passes the same
        # sequence for every request of a key): what CurrentPeriods (same clock) would find.
        if plan.held_for is budgets and plan.hold_day == int(self._day_clock() // 86400):
            return plan.budgets, plan.period_ids
        periods = self._periods
        ids = tuple([periods.id(budget.period) for budget in budgets])
        if periods.day != self._pruned_day:
            self._prune_periods()
        counters = [self._budget(b.scope, b.period, i) for b, i in zip(budgets, ids, strict=True)]
        # Replaced, never changed in place: in-flight acquires keep the lists they got.
        plan.held_for, plan.hold_day = budgets, periods.day
        plan.budgets, plan.period_ids = counters, ids
        return counters, ids

    def _admit(
        self,
        lease: str,
        plan: _Plan,
        tokens: int,
        budgets: Sequence[BudgetLimit],
        amounts: Sequence[int],
        now: float,
        bucket: int,
    ) -> Admission:
        """The full check: the first refusal in the limits' order, then the budgets', with
        every window brought up to date for the headers; commits when nothing refuses."""
        refusal: Refusal | None = None
        for limit, scope in zip(plan.limits, plan.scopes, strict=True):
            if limit.windowed:
                scope.advance(bucket)
                if refusal is None:
                    refusal = window_refusal(limit, scope, tokens, now)
            if limit.max_parallel is not None and refusal is None:
                refusal = self._parallel_refusal(limit, scope, limit.max_parallel, now)
        ids: tuple[str, ...] = ()
        counters: list[_Budget] = []
        if budgets:
            counters, ids = self._budgets_of(plan, budgets)
            refusal = refusal or self._check_holds(budgets, amounts, counters, now)
        if refusal is not None:
            return Admission(False, now, refusal, window_states(plan.windowed, now))
        used_after = self._commit(lease, plan, tokens, budgets, amounts, counters, ids, now, bucket)
        return Admission(True, now, None, window_states(plan.windowed, now), used_after)

    def _commit(
        self,
        lease: str,
        plan: _Plan,
        tokens: int,
        budgets: Sequence[BudgetLimit],
        amounts: Sequence[int],
        counters: list[_Budget],
        ids: tuple[str, ...],
        now: float,
        bucket: int,
    ) -> tuple[tuple[str, int], ...]:
        """Count the request, take the leases and holds; each budget's use after its hold."""
        expiry = now + self._lease_ttl
        counted_in = bucket
        # One request and the tokens, counted in each window's newest bucket.
        for scope, _, _, _ in plan.windowed:
            head = counted_in = scope.head
            slot = head % WINDOW_BUCKETS
            if scope.first > head:
                scope.first = head
            scope.requests[slot] += 1
            scope.tokens[slot] += tokens
            scope.sum_requests += 1
            scope.sum_tokens += tokens
        for scope, _ in plan.parallel:
            scope.leases[lease] = expiry
        used_after: list[tuple[str, int]] = []
        for index, counter in enumerate(counters):
            counter.held += amounts[index]
            used_after.append((budgets[index].scope, counter.spent + counter.held))
        self._inflight[lease] = (plan, counted_in, counters, ids, amounts, expiry)
        return tuple(used_after)

    def _scopes_of(self, limits: Sequence[RateLimit]) -> list[ScopeWindow]:
        scopes = self._scopes
        found = []
        for limit in limits:
            scope = scopes.get(limit.scope)
            if scope is None:
                scope = scopes[limit.scope] = ScopeWindow()
            found.append(scope)
        return found

    def _finish(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        at: float,
        requests: int,
        tokens: int,
        budgets: Sequence[BudgetLimit],
    ) -> list[_Budget]:
        """Free the lease and holds and correct the acquire's bucket; the budgets' counters
        (in the periods held in, else the current ones)."""
        inflight = self._inflight.pop(lease, None)
        if inflight is not None:  # what it held is released whatever is given here
            _, _, held_in, _, amounts, _ = inflight
            for index, counter in enumerate(held_in):
                counter.held -= amounts[index]
        if inflight is None or len(inflight[0].scopes) != len(limits):
            # Not acquired here (or forgotten by close()): the period is the current one.
            scopes, bucket = self._scopes_of(limits), math.floor(at)
            counters = [
                self._budget(budget.scope, budget.period, self._periods.id(budget.period))
                for budget in budgets
            ]
        else:
            plan, bucket, counters, period_ids, _, _ = inflight
            scopes = plan.scopes
            if len(counters) != len(budgets):
                counters = [
                    self._budget(budget.scope, budget.period, pid)
                    for budget, pid in zip(budgets, period_ids, strict=False)
                ]
        if requests or tokens:
            for limit, scope in zip(limits, scopes, strict=True):
                if limit.windowed:
                    scope.correct(bucket, requests, tokens)
        for scope in scopes:
            if scope.leases:
                scope.leases.pop(lease, None)
        for counter in counters:  # a hold close() forgot
            orphan = counter.orphans.pop(lease, None)
            if orphan is not None:
                counter.held -= orphan[0]
        return counters

    def _check_holds(
        self,
        budgets: Sequence[BudgetLimit],
        amounts: Sequence[int],
        counters: list[_Budget],
        now: float,
    ) -> Refusal | None:
        for index, budget in enumerate(budgets):
            counter, amount, limit = counters[index], amounts[index], budget.limit_nano
            if counter.spent + counter.held + amount > limit:
                self._purge_holds(counter, now)
                used = counter.spent + counter.held
                if used + amount > limit:
                    retry = seconds_until_end(budget.period, datetime.now(UTC))
                    return Refusal(budget.scope, "budget", retry, limit, used)
        return None

    def _parallel_refusal(
        self, limit: RateLimit, scope: ScopeWindow, max_parallel: int, now: float
    ) -> Refusal | None:
        leases = scope.leases
        if len(leases) + 1 > max_parallel:
            # Purging only when full keeps the common path free of a scan over the leases.
            for lease in [k for k, exp in leases.items() if exp <= now and k not in self._inflight]:
                del leases[lease]
        if len(leases) + 1 > max_parallel:
            return Refusal(limit.scope, "parallel", None, max_parallel, len(leases))
        return None

    def _purge_holds(self, counter: _Budget, now: float) -> None:
        """Release the expired holds of leases close() forgot."""
        for lease, (amount, expiry) in list(counter.orphans.items()):
            if expiry <= now:
                del counter.orphans[lease]
                counter.held -= amount

    def _budget(self, scope: str, period: str, pid: str) -> _Budget:
        budget = self._budgets.get((scope, period, pid))
        if budget is None:
            budget = self._budgets[(scope, period, pid)] = _Budget()
        return budget

    def _prune_periods(self) -> None:
        """Once a day, forget counters of periods that ended and hold nothing."""
        self._pruned_day = self._periods.day
        for key in [k for k, b in self._budgets.items() if not b.held]:
            _, period, pid = key
            if pid != self._periods.id(period):
                del self._budgets[key]

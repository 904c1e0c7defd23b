"""Budgets: what a key or partner may spend per period, the refusal, the soft alert and the
seeding of counters from the ledger (at start-up and when budgets appear; never per request).

Counters live in the limit backend (see :mod:`sluicegate.state`); this module only says what
they are for. docs/governance.md has the semantics.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sluicegate.errors import BudgetExceeded
from sluicegate.state.base import BudgetSpend, LimitBackend, Refusal
from sluicegate.state.periods import period_end, period_id, period_start
from sluicegate.store.ledger import LedgerStore

NANO_PER_USD = 10**9
LedgerColumn = Literal["key_id", "partner_id"]
log = logging.getLogger("sluicegate.budgets")


@dataclass(frozen=True, slots=True)
class Budget:
    scope: str  # "key:<id>" | "partner:<id>"
    period: str  # daily | weekly | monthly | total
    limit_nano: int
    label: str  # "key 'acme-app'", for messages and alerts

    @classmethod
    def of(cls, scope: str, label: str, usd: float | None, period: str | None) -> Budget | None:
        if usd is None:
            return None
        return cls(scope, period or "monthly", round(usd * NANO_PER_USD), label)


def usd(nano: int) -> str:
    return f"${nano / NANO_PER_USD:,.2f}"


def budget_refusal(budget: Budget, refusal: Refusal, worst_nano: int) -> BudgetExceeded:
    now = datetime.now(UTC)
    period = "lifetime" if budget.period == "total" else budget.period
    end = period_end(budget.period, now)
    resets = f" It resets at {end:%Y-%m-%dT%H:%M:%SZ}." if end is not None else ""
    spent = max(refusal.used, 0)
    return BudgetExceeded(
        f"Budget exceeded: {budget.label} has used {usd(spent)} of its {usd(budget.limit_nano)} "
        f"{period} budget, and this request could cost up to {usd(worst_nano)} "
        f"(lower max_tokens to need less).{resets}",
        retry_after=refusal.retry_after,
    )


class SoftThresholdAlerts:
    """Logs ``budget.soft_threshold`` once per budget and period when spend crosses it."""

    def __init__(self, fraction: float) -> None:
        self._fraction = fraction
        self._raised: set[tuple[str, str]] = set()
        # Budget (nano-USD) -> the least spend at or past the threshold: an integer compare
        # per settle instead of a float product of a large integer.
        self._thresholds: dict[int, int] = {}

    def threshold(self, limit_nano: int) -> int:
        """The least spend (nano-USD) that reaches the soft threshold of ``limit_nano``."""
        threshold = self._thresholds.get(limit_nano)
        if threshold is None:
            # spent >= fraction * limit  <=>  spent >= ceil(fraction * limit), for integers
            threshold = math.ceil(self._fraction * limit_nano)
            if len(self._thresholds) >= 10_000:
                self._thresholds.clear()
            self._thresholds[limit_nano] = threshold
        return threshold

    def check(self, spends: Iterable[BudgetSpend], budgets: Iterable[Budget]) -> None:
        for spend in spends:
            if spend.spent_nano < self.threshold(spend.limit_nano):
                continue
            labels = {b.scope: b.label for b in budgets}
            marker = (spend.scope, period_id(spend.period, datetime.now(UTC)))
            if marker in self._raised:
                continue
            self._raised.add(marker)
            label = labels.get(spend.scope, spend.scope)
            log.warning(
                "budget.soft_threshold",
                extra={
                    "alert": "budget.soft_threshold",
                    "subject": label,  # what the alert sink deduplicates by and names
                    "scope": label,
                    "spent_usd": spend.spent_nano / NANO_PER_USD,
                    "limit_usd": spend.limit_nano / NANO_PER_USD,
                    "period": spend.period,
                },
            )


class BudgetSeeder:
    """Seeds budget counters from the ledger: at start-up, for budgets that appear later
    (a key given a budget mid-month keeps what it already spent), and again when the shared
    store lost its data (Redis restarted)."""

    def __init__(self, backend: LimitBackend, ledger: LedgerStore) -> None:
        self._backend = backend
        self._ledger = ledger
        self._seeded: set[tuple[str, str]] = set()  # (scope, period id)

    def forget(self) -> None:
        """The shared store restarted: seed everything again."""
        self._seeded.clear()

    async def seed(self, budgets: Iterable[Budget]) -> None:
        now = datetime.now(UTC)
        todo = [b for b in budgets if (b.scope, period_id(b.period, now)) not in self._seeded]
        if not todo:
            return
        sums: dict[tuple[LedgerColumn, datetime | None], dict[str, float]] = {}
        for budget in todo:
            kind, _, ident = budget.scope.partition(":")
            column: LedgerColumn = "key_id" if kind == "key" else "partner_id"
            since = period_start(budget.period, now)
            if (column, since) not in sums:
                sums[(column, since)] = await self._ledger.spend_since(column, since)
            spent = sums[(column, since)].get(ident, 0.0)
            await self._backend.seed_spend(budget.scope, budget.period, round(spent * NANO_PER_USD))
            self._seeded.add((budget.scope, period_id(budget.period, now)))

"""The governor: admit a request against every limit and budget that applies, settle it after.

``admit`` (before the upstream call) reserves, in one atomic acquire of the limit backend:
one request and the estimated tokens in each rate window (key, partner, deployment, global),
a concurrency lease, and the worst-case cost against each budget (key, partner). A refusal by
a shared scope (global, deployment capacity) waits in the fair queue; any other refusal is a
429 at once. ``settle`` (after the answer) corrects the tokens to the reported usage,
releases the lease and holds, charges the actual cost and wakes the queue.
Requests with nothing to enforce never touch the backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sluicegate.api.sse import Usage
from sluicegate.errors import GatewayError, LimitsUnavailable, RateLimited
from sluicegate.observe.cost import Price, PriceBook
from sluicegate.policy.budgets import NANO_PER_USD, Budget, SoftThresholdAlerts, budget_refusal
from sluicegate.policy.estimate import estimate_input_tokens
from sluicegate.policy.fairqueue import FairQueue
from sluicegate.state.base import (
    Admission,
    BudgetHold,
    BudgetSpend,
    LimitBackend,
    LimitStoreUnavailable,
    RateLimit,
    Refusal,
    WindowState,
)
from sluicegate.state.memory import MemoryBackend

if TYPE_CHECKING:
    from sluicegate.api.anthropic import ParsedRequest
    from sluicegate.policy.auth import Principal
    from sluicegate.routing.router import Deployment, Route

GLOBAL_SCOPE = "global"
DEPLOYMENT_PREFIX = "deployment:"
log = logging.getLogger("sluicegate.limits")


@dataclass(slots=True)
class Ticket:
    """What one admitted request holds, to be settled when it ends."""

    lease: str
    limits: tuple[RateLimit, ...] = ()
    tokens: int = 0
    held: tuple[Budget, ...] = ()  # the budgets the request's worst-case cost is held on
    hold_nano: int = 0  # that worst case (nano-USD), held on each of them
    budgets: tuple[Budget, ...] = ()
    price: Price | None = None
    admission: Admission | None = None
    settled: bool = field(default=False)
    waited: float = 0.0  # seconds in the fair queue
    _holds: tuple[BudgetHold, ...] | None = field(default=None, repr=False)

    @property
    def windows(self) -> tuple[WindowState, ...]:
        return self.admission.windows if self.admission is not None else ()

    @property
    def holds(self) -> tuple[BudgetHold, ...]:
        """The holds as LimitBackend takes them, made once per request when first asked
        (the in-process backend is given the budgets and amounts as they are)."""
        if self._holds is None:
            amount = self.hold_nano
            self._holds = tuple(
                [BudgetHold(b.scope, b.period, b.limit_nano, amount) for b in self.held]
            )
        return self._holds


@dataclass(frozen=True, slots=True)
class _Plan:
    own: tuple[RateLimit, ...]  # the principal's limits (the key's and its partner's)
    deployment: Deployment
    limits: tuple[RateLimit, ...]  # own + the deployment's capacity + the global limit
    shared: bool  # whether any shared scope (capacity, global) is among the limits


_PLANS_KEPT = 4096
_SPENDS_KEPT = 10_000  # budgets reported by the gauge (its series limit as well)


def is_shared(scope: str) -> bool:
    return scope == GLOBAL_SCOPE or scope.startswith(DEPLOYMENT_PREFIX)


def _shared_refusal(admission: Admission) -> bool:
    refusal = admission.refusal
    return refusal is not None and refusal.kind != "budget" and is_shared(refusal.scope)


class Governor:
    def __init__(
        self,
        backend: LimitBackend,
        prices: PriceBook,
        *,
        global_limit: RateLimit | None,
        capacities: dict[str, RateLimit],
        max_wait: float,
        max_queue: int,
        soft_threshold: float,
    ) -> None:
        """``capacities``: deployment name -> its shared limit (only those with one)."""
        self.backend = backend
        # The in-process backend answers at once: called directly, not awaited (a
        # coroutine per call is a measurable part of what governing a request costs).
        self._memory = backend if isinstance(backend, MemoryBackend) else None
        self.prices = prices
        self._global = global_limit
        self._capacities = capacities
        # (id of a principal's limits, id of a deployment) -> what its requests count against
        self._plans: dict[tuple[int, int], _Plan] = {}
        self.queue = FairQueue(max_wait, max_queue, _shared_refusal)
        self._alerts = SoftThresholdAlerts(soft_threshold)
        self._unpriced: set[str] = set()
        # Budget scope -> the budget and its spend (nano-USD) as of its latest settle: read
        # by the remaining-budget gauge at scrape time, not per settle.
        self._latest_spends: dict[str, tuple[Budget, int]] = {}
        # Observer (metrics): a fair-queue wait (deployment, seconds, admitted).
        self.on_queue_wait: Callable[[str, float, bool], None] | None = None

    def set_capacities(self, capacities: dict[str, RateLimit]) -> None:
        """Replace the deployment capacities (deployments defined in the database changed).
        Requests admitted before keep what they hold; their leases settle as usual."""
        self._capacities = capacities
        self._plans = {}

    async def admit(
        self,
        principal: Principal,
        route: Route,
        parsed: ParsedRequest,
        lease: str,
        deadline: float | None = None,
    ) -> Ticket:
        """Reserve what this request may use, or raise a GatewayError (429 or 503)."""
        deployment = route.deployment
        price = self._price(parsed.model, route.upstream_model)
        plan = self._plans.get((id(principal.limits), id(deployment)))
        if plan is None or plan.own is not principal.limits or plan.deployment is not deployment:
            plan = self._plan(principal.limits, deployment)
        limits = plan.limits
        budgets = principal.budgets if price is not None else ()
        if not limits and not budgets:  # nothing to enforce: no backend call at all
            return Ticket(lease, price=price)
        input_tokens = estimate_input_tokens(parsed.raw, parsed.payload)
        max_output = parsed.max_tokens or deployment.default_max_tokens
        held: tuple[Budget, ...] = ()
        worst = 0
        if budgets and price is not None:
            worst = self.prices.worst_case_nano(price, input_tokens, max_output)
            if worst > 0:  # zero-priced models never meet a budget
                held = budgets
        ticket = Ticket(lease, limits, input_tokens + max_output, held, worst, budgets, price)
        if not limits and not held:
            return ticket
        queue = self.queue
        try:
            # Straight to the backend unless others wait for this capacity (then the fair
            # queue decides, and a newcomer must not overtake them).
            queued = plan.shared and bool(queue.queues) and queue.depth(deployment.name) > 0
            admission: Admission | None
            if queued:
                admission = None
            elif self._memory is not None:
                amounts = (worst,) * len(held)
                admission = self._memory.acquire_now(lease, limits, ticket.tokens, held, amounts)
            else:
                admission = await self.backend.acquire(lease, limits, ticket.tokens, ticket.holds)
            if admission is None or (admission.refusal is not None and _shared_refusal(admission)):
                queued_at = time.perf_counter()
                admission = await queue.admit(
                    deployment.name,
                    principal.fairness_group,
                    principal.weight,
                    lambda: self._acquire(ticket),
                    lambda admission: self._undo(ticket, admission),
                    deadline,
                    first=admission,
                )
                ticket.waited = time.perf_counter() - queued_at
                if self.on_queue_wait is not None:
                    self.on_queue_wait(deployment.name, ticket.waited, admission.ok)
        except LimitStoreUnavailable:
            raise LimitsUnavailable(
                "The gateway's rate-limit store is unavailable; try again shortly."
            ) from None
        ticket.admission = admission
        if not admission.ok:
            ticket.settled = True
            raise self._refusal_error(principal, ticket, admission)
        return ticket

    async def _acquire(self, ticket: Ticket) -> Admission:
        return await self.backend.acquire(ticket.lease, ticket.limits, ticket.tokens, ticket.holds)

    async def _undo(self, ticket: Ticket, admission: Admission) -> None:
        """A queued request was admitted just after its client gave up: give it all back."""
        with contextlib.suppress(LimitStoreUnavailable):  # else they expire by themselves
            await self.backend.release(
                ticket.lease, ticket.limits, admission.at, ticket.tokens, ticket.holds
            )
        self.queue.notify()

    async def settle(self, ticket: Ticket, usage: Usage | None) -> float:
        """Charge what the request used; returns its cost in USD. Called at the end of
        every admitted request, also while its task is being cancelled (shutdown): the
        cancellation is absorbed so the ledger row still gets written (a lease whose
        settle it interrupted expires by its TTL)."""
        cost_nano = 0
        if ticket.price is not None and usage is not None:
            cost_nano = self.prices.cost_nano(ticket.price, usage)
        if ticket.settled or ticket.admission is None:
            return cost_nano / 1e9
        ticket.settled = True
        used_tokens = 0
        if usage is not None:
            used_tokens = (
                usage.input_tokens
                + usage.output_tokens
                + usage.cache_read_input_tokens
                + usage.cache_creation_input_tokens
            )
        lease, limits, at, held = ticket.lease, ticket.limits, ticket.admission.at, ticket.held
        spent: list[int]  # each held budget's spend after this settle, in their order
        try:
            if self._memory is not None:
                spent = self._memory.settle_now(
                    lease, limits, at, ticket.tokens, used_tokens, held, cost_nano
                )
            else:
                spends = await self.backend.settle(
                    lease, limits, at, ticket.tokens, used_tokens, ticket.holds, cost_nano
                )
                spent = [spend.spent_nano for spend in spends]
        except (LimitStoreUnavailable, asyncio.CancelledError):
            spent = []  # the leases expire by themselves; the ledger keeps the cost
        if self.queue.queues:  # someone waits: the capacity freed may be theirs
            self.queue.notify()
        if spent:
            self._spent(held, spent)
        return cost_nano / 1e9

    def _spent(self, budgets: tuple[Budget, ...], spent: list[int]) -> None:
        """A settle's budget spends: kept for the remaining-budget gauge, and checked
        against the soft threshold."""
        alerts, latest = self._alerts, self._latest_spends
        for index, budget in enumerate(budgets):
            value, scope = spent[index], budget.scope
            if len(latest) < _SPENDS_KEPT or scope in latest:
                latest[scope] = (budget, value)
            if value >= alerts.threshold(budget.limit_nano):  # alerted once per period
                spend = BudgetSpend(scope, budget.period, value, budget.limit_nano)
                alerts.check((spend,), budgets)

    def budgets_left(self) -> list[tuple[tuple[str, str], float]]:
        """(budget label, period) -> USD left, as of each budget's latest settle in this
        process (the remaining-budget gauge reads it at scrape time)."""
        series = []
        for budget, spent in list(self._latest_spends.values()):
            left = max(budget.limit_nano - spent, 0) / NANO_PER_USD
            series.append(((budget.label, budget.period), left))
        return series

    def reprice(self, ticket: Ticket, alias: str, upstream_model: str | None) -> None:
        """The request was served by another deployment than the one it was admitted for
        (a fallback): charge that one's price. Its hold stays the one admitted."""
        if upstream_model is not None:
            ticket.price = self._price(alias, upstream_model)

    def _price(self, alias: str, upstream_model: str) -> Price | None:
        price = self.prices.price_for(alias, upstream_model)
        if price is None and upstream_model not in self._unpriced and len(self._unpriced) < 1000:
            self._unpriced.add(upstream_model)
            log.warning(
                "model %s has no price: its cost is recorded as 0 (set prices: in the config)",
                upstream_model[:100],
            )
        return price

    def _plan(self, own: tuple[RateLimit, ...], deployment: Deployment) -> _Plan:
        """What a principal with the limits ``own`` counts against on ``deployment``: kept
        per limits tuple and Deployment object, so a key-table load or a routing change
        (new objects) leaves the old plans unused."""
        capacity = self._capacities.get(deployment.name)
        shared = tuple(x for x in (capacity, self._global) if x is not None)
        plan = _Plan(own, deployment, own + shared if shared else own, bool(shared))
        if len(self._plans) >= _PLANS_KEPT:
            self._plans.clear()
        self._plans[(id(own), id(deployment))] = plan  # the plan holds both: ids stay unique
        return plan

    def _refusal_error(
        self, principal: Principal, ticket: Ticket, admission: Admission
    ) -> GatewayError:
        refusal = admission.refusal
        assert refusal is not None
        if refusal.kind == "budget":
            budget = next(b for b in ticket.budgets if b.scope == refusal.scope)
            error: GatewayError = budget_refusal(budget, refusal, ticket.hold_nano)
        else:
            error = RateLimited(
                _rate_message(principal, refusal),
                retry_after=refusal.retry_after if refusal.retry_after is not None else 1.0,
                tokens=refusal.kind == "tpm",
            )
        error.windows = admission.windows
        error.limit = (refusal.kind, refusal.scope.partition(":")[0])
        return error


_KIND_TEXT = {
    "rpm": "{limit} requests per minute",
    "tpm": "{limit} tokens per minute",
    "parallel": "{limit} concurrent requests",
}


def _rate_message(principal: Principal, refusal: Refusal) -> str:
    what = _KIND_TEXT[refusal.kind].format(limit=f"{refusal.limit:,}")
    scope = refusal.scope
    if scope.startswith("key:"):
        who = f"this API key ({principal.key_name!r}) allows"
    elif scope.startswith("partner:"):
        who = f"your partner account ({principal.partner_name!r}) allows"
    elif scope == GLOBAL_SCOPE:
        who = "the gateway is at its limit of"
    else:
        who = (
            f"the model deployment {scope.removeprefix(DEPLOYMENT_PREFIX)!r} is at its capacity of"
        )
    return f"Rate limit exceeded: {who} {what}. Retry after the retry-after header's delay."


def deadline_from(header: str | None) -> float | None:
    """The client's own timeout (``x-stainless-timeout``, seconds) as a monotonic deadline,
    less a second so that the answer still reaches it."""
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        return None
    if not 0 < seconds < 1e6:
        return None
    return time.monotonic() + seconds - 1.0

"""The rate-limit and budget store contract shared by the memory and Redis backends.

Semantics are in docs/governance.md ("Rate-limit semantics", "Budgets", "Redis failure").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

RefusalKind = Literal["rpm", "tpm", "parallel", "budget"]

# Requests and tokens are counted in 1-second buckets; a check at bucket b counts b-60 .. b,
# so bucket b' stops counting at b' + WINDOW_BUCKETS.
WINDOW_BUCKETS = 61


@dataclass(frozen=True, slots=True)
class RateLimit:
    scope: str  # "key:key_…", "partner:ptn_…", "deployment:NAME", "global"
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    # Whether requests and tokens are counted for this scope (derived; read per request).
    windowed: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "windowed", self.rpm is not None or self.tpm is not None)


class BudgetLimit(Protocol):
    """A budget as the in-process backend's hot path takes it: a BudgetHold without its
    amount, or the policy's Budget itself (so no hold is built per request)."""

    @property
    def scope(self) -> str: ...

    @property
    def period(self) -> str: ...

    @property
    def limit_nano(self) -> int: ...


@dataclass(slots=True)  # made per request: plain (frozen ones cost 5x to build)
class BudgetHold:
    scope: str  # "key:…" | "partner:…"
    period: str  # "daily" | "weekly" | "monthly" | "total"
    limit_nano: int  # the budget, nano-USD (1 USD = 10**9)
    amount_nano: int  # worst-case cost held by this request (> 0)


@dataclass(slots=True)  # made per request: plain (frozen ones cost 5x to build)
class WindowState:
    """Per RateLimit with rpm or tpm, for the response headers."""

    scope: str
    requests_limit: int | None
    requests_remaining: int | None  # after this request was counted (on refusal: as it stands)
    requests_reset: float | None  # seconds until the oldest counted bucket leaves the window
    tokens_limit: int | None
    tokens_remaining: int | None
    tokens_reset: float | None


@dataclass(slots=True)  # made per request: plain (frozen ones cost 5x to build)
class Refusal:
    scope: str
    kind: RefusalKind
    retry_after: float | None  # rpm/tpm: until enough buckets leave; budget: period end
    limit: int  # the limit that refused (rpm/tpm/max_parallel, or budget nano)
    used: int  # what was counted (or spent + held) at the time


@dataclass(slots=True)  # made per request: plain (frozen ones cost 5x to build)
class Admission:
    ok: bool
    at: float  # backend time (unix seconds) of this acquire; settle() and release() need it
    refusal: Refusal | None
    # Header state: at least the tightest scope for requests and for tokens (the memory
    # backend reports only those; Redis reports every windowed scope).
    windows: tuple[WindowState, ...]
    budget_used: tuple[tuple[str, int], ...] = ()  # (scope, spent + held after this hold)


@dataclass(slots=True)  # made per request: plain (frozen ones cost 5x to build)
class BudgetSpend:
    scope: str
    period: str
    spent_nano: int  # after this settle
    limit_nano: int


class LimitStoreUnavailable(Exception):
    """The limit store cannot be reached (Redis down or timing out). No secrets in the text."""


class LimitBackend(Protocol):
    name: str  # "memory" | "redis"

    async def start(self) -> None:
        """Connect, load scripts, start lease renewal."""

    async def close(self) -> None:
        """Stop renewing; leases not settled expire by their TTL."""

    async def acquire(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        tokens: int,
        holds: Sequence[BudgetHold],
    ) -> Admission:
        """Check every limit and hold, then commit all of them, or nothing."""

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
        """Free the lease and holds, correct the tokens, add the actual cost to each spend."""

    async def release(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        at: float,
        reserved_tokens: int,
        holds: Sequence[BudgetHold],
    ) -> None:
        """Undo an acquire entirely: nothing counted, nothing spent."""

    async def seed_spend(self, scope: str, period: str, spent_nano: int) -> None:
        """Set the current period's spent counter to max(current, spent_nano)."""

    async def spent(self, scope: str, period: str) -> int:
        """Nano-USD spent in the current period (holds not included)."""

    def available(self) -> bool:
        """Whether the last contact with the store succeeded (for readiness)."""


def leaves_window_in(bucket: int | None, now: float) -> float:
    """Seconds until ``bucket`` stops counting; 0.0 when nothing is counted."""
    if bucket is None:
        return 0.0
    left = bucket + WINDOW_BUCKETS - now
    return left if left > 0.0 else 0.0


def window_state(
    limit: RateLimit,
    requests: int,
    tokens: int,
    oldest_requests: int | None,
    oldest_tokens: int | None,
    now: float,
) -> WindowState:
    """Header state of one scope from its counted sums and oldest counted buckets."""
    rpm, tpm = limit.rpm, limit.tpm
    return WindowState(
        scope=limit.scope,
        requests_limit=rpm,
        requests_remaining=None if rpm is None else max(0, rpm - requests),
        requests_reset=None if rpm is None else leaves_window_in(oldest_requests, now),
        tokens_limit=tpm,
        tokens_remaining=None if tpm is None else max(0, tpm - tokens),
        tokens_reset=None if tpm is None else leaves_window_in(oldest_tokens, now),
    )

"""Rate-limit, concurrency and budget counters: in-process or shared through Redis."""

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

__all__ = [
    "Admission",
    "BudgetHold",
    "BudgetSpend",
    "LimitBackend",
    "LimitStoreUnavailable",
    "RateLimit",
    "Refusal",
    "WindowState",
]

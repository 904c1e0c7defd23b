"""Settings of the governance layer: rate limits, fair queue, budgets, ledger and prices.

Kept apart from :mod:`sluicegate.settings` (which composes them) so each module stays small.
See docs/governance.md for what each setting does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True
    )


class RateLimits(Strict):
    """Requests per minute, tokens (input + output) per minute, requests in flight."""

    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    max_parallel: int | None = Field(None, ge=1)

    @property
    def any(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.max_parallel is not None


class QueueSettings(Strict):
    max_wait: float = Field(
        30.0, ge=0, description="longest wait for a saturated shared limit before a 429"
    )
    max_size: int = Field(1000, ge=0, description="requests waiting per deployment, at most")


class LimitSettings(Strict):
    backend: Literal["auto", "memory", "redis"] = Field(
        "auto", description="auto: redis when redis_url is set, else memory (one process)"
    )
    on_redis_failure: Literal["open", "closed"] = Field(
        "open",
        description="open: fall back to per-process limits while Redis is down; "
        "closed: refuse inference requests with 503",
    )
    redis_timeout: float = Field(0.5, gt=0, le=30)
    lease_ttl: float = Field(
        60.0, ge=3, description="a crashed process's concurrency and budget holds free after this"
    )
    global_: RateLimits = Field(default_factory=RateLimits, alias="global")
    queue: QueueSettings = QueueSettings()


class BudgetSettings(Strict):
    soft_threshold: float = Field(
        0.8, gt=0, le=1, description="fraction of a budget that raises an alert event"
    )


class LedgerSettings(Strict):
    enabled: bool = Field(True, description="write one usage_ledger row per request")
    flush_interval: float = Field(1.0, gt=0, le=60)
    batch_size: int = Field(1000, ge=1)
    max_buffer: int = Field(100_000, ge=1)


class PriceSetting(Strict):
    """USD per million tokens; cache prices default to Anthropic's ratios of ``input``."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float | None = Field(None, ge=0)
    cache_write_1h: float | None = Field(None, ge=0)
    cache_read: float | None = Field(None, ge=0)

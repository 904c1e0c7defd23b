"""Settings of delivery: deployment choice, fallbacks, retries, circuit breakers.

Kept apart from :mod:`sluicegate.settings` (which composes them) so each module stays small.
See docs/delivery.md for what each setting does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sluicegate.settings_policy import Strict


class RetrySettings(Strict):
    max_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="upstream calls per client request at most, the first and every retry "
        "or fallback included",
    )
    base_delay: float = Field(0.5, ge=0, description="first backoff ceiling, seconds")
    max_delay: float = Field(8.0, ge=0, description="longest backoff between two attempts")
    max_retry_after: float = Field(
        30.0,
        ge=0,
        description="an upstream retry-after longer than this is not waited for: the next "
        "deployment is tried, or the answer goes to the client",
    )
    budget_ratio: float = Field(
        0.2, ge=0, le=10, description="retries may add at most this share of recent requests"
    )
    budget_min_per_second: float = Field(
        5.0, ge=0, description="...plus this many retries per second, whatever the traffic"
    )


class BreakerSettingsModel(Strict):
    enabled: bool = True
    consecutive_failures: int = Field(5, ge=1)
    error_ratio: float = Field(0.5, gt=0, le=1)
    min_requests: int = Field(20, ge=1)
    window: float = Field(30.0, gt=0, description="seconds over which the error ratio counts")
    cooldown: float = Field(10.0, gt=0, description="seconds open before a half-open probe")
    shared: Literal["auto", "yes", "no"] = Field(
        "auto", description="share openings through Redis (auto: when redis_url is set)"
    )


class RoutingSettings(Strict):
    strategy: Literal["weighted", "least-busy", "lowest-latency"] = Field(
        "weighted", description="how one alias's deployments are ordered for a request"
    )
    fallbacks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="alias -> aliases tried in order when all of its deployments fail "
        "with a retryable error or are unavailable (breaker open)",
    )
    context_window_fallbacks: dict[str, list[str]] = Field(
        default_factory=dict,
        description="alias -> aliases tried when the request does not fit its context window",
    )
    request_timeout: float = Field(
        600.0,
        gt=0,
        description="one deadline per client request covering every attempt, backoff and "
        "fallback (shortened by the client's x-stainless-timeout)",
    )
    upstream_low_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="a deployment whose reported upstream rate-limit remaining is at or below "
        "this share of its limit is tried last until its reset",
    )
    retries: RetrySettings = RetrySettings()
    breaker: BreakerSettingsModel = BreakerSettingsModel()

    @model_validator(mode="after")
    def _no_self_fallback(self) -> RoutingSettings:
        for table in ("fallbacks", "context_window_fallbacks"):
            for alias, targets in getattr(self, table).items():
                if alias in targets:
                    raise ValueError(f"{table}.{alias}: an alias cannot fall back to itself")
        return self

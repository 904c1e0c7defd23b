"""Settings of what the gateway shows: Prometheus metrics, OpenTelemetry traces, alerts.

Kept apart from :mod:`sluicegate.settings` (which composes them). See docs/observability.md
for what each setting does.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sluicegate.secret import SecretRef
from sluicegate.settings_policy import Strict


class MetricsSettings(Strict):
    """Prometheus exposition of the gateway's counters and histograms."""

    enabled: bool = True
    path: str = Field("/metrics", pattern=r"^/[A-Za-z0-9/_.-]*$")
    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="serve /metrics on this port (on server.host) instead of the API port",
    )
    auth: Literal["none", "admin_token"] = Field(
        "none", description="admin_token: scrapes must send Authorization: Bearer <admin token>"
    )
    max_series: int = Field(
        10_000,
        ge=100,
        description="label combinations kept per metric; beyond it new ones count as 'other'",
    )


class TracingSettings(Strict):
    """OpenTelemetry spans for each request and upstream attempt, exported over OTLP/HTTP."""

    otlp_endpoint: str | None = Field(
        None,
        pattern=r"^https?://",
        description="OTLP/HTTP traces URL, e.g. http://collector:4318/v1/traces; "
        "unset: no spans are made",
    )
    headers: dict[str, SecretRef] = Field(
        default_factory=dict, description="sent with every export (e.g. an auth header)"
    )
    service_name: str = "sluicegate"
    sample_ratio: float = Field(
        1.0, ge=0, le=1, description="share of new traces kept (a client's sampled flag wins)"
    )


class AnomalySettings(Strict):
    """Per-partner anomaly detection against the partner's own recent baseline."""

    enabled: bool = True
    baseline_half_life: float = Field(
        1800.0, gt=0, description="seconds; how fast the baseline forgets (EWMA half-life)"
    )
    window: float = Field(60.0, gt=0, description="seconds of recent traffic compared")
    min_requests: int = Field(
        20, ge=1, description="requests in the window before error rate or latency is judged"
    )
    error_rate_factor: float = Field(3.0, gt=1)
    error_rate_floor: float = Field(
        0.2, gt=0, le=1, description="error rate never alerts below this, whatever the baseline"
    )
    latency_factor: float = Field(3.0, gt=1)
    spend_factor: float = Field(5.0, gt=1)
    spend_floor_usd: float = Field(
        1.0, ge=0, description="spend in one window never alerts below this"
    )


class AlertSettings(Strict):
    """Where alert events go besides the log, and how often."""

    webhook_url: SecretRef | None = Field(
        None, description="Slack-compatible incoming webhook (a secret: the URL is the key)"
    )
    min_interval: float = Field(
        600.0, ge=0, description="seconds before the same alert (kind and subject) is sent again"
    )
    max_per_minute: int = Field(20, ge=1, description="webhook posts per minute, all alerts")
    anomaly: AnomalySettings = AnomalySettings()

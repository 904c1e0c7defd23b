"""The gateway's metrics: what they are called, their labels, and how a finished request
updates them.

Names follow the OpenTelemetry GenAI semantic conventions where one exists
(``gen_ai.server.request.duration`` -> ``gen_ai_server_request_duration_seconds``, label
``gen_ai_request_model``, ``gen_ai_provider_name``, ``gen_ai_token_type``); the rest are the
gateway's own (``sluicegate_*``). docs/observability.md lists them all.

``gen_ai_request_model`` is the model alias as configured (``model_name``, patterns included),
never the string a client sent: clients cannot grow the label space.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sluicegate.observe.metrics import (
    LATENCY_BUCKETS,
    OVERHEAD_BUCKETS,
    WAIT_BUCKETS,
    Cell,
    Counter,
    Gauge,
    GaugeMerge,
    Histogram,
    Labels,
    MetricSet,
)
from sluicegate.record import RequestRecord

SURFACES = {"messages": "anthropic", "count_tokens": "anthropic", "models": "any"}
BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_M = TypeVar("_M", Counter, Histogram, Gauge)
Source = Callable[[], Iterable[tuple[Labels, float]]]


class GatewayMetrics:
    def __init__(self, max_series: int = 10_000) -> None:
        self.set = MetricSet()
        self._handles: dict[tuple[Any, ...], _Handle] = {}
        self._max_handles = max_series
        n = max_series
        request = ("surface", "endpoint", "gen_ai_request_model", "deployment")
        self.requests = self._add(
            Counter(
                "sluicegate_requests_total",
                "Requests answered, by surface, model alias, deployment, partner, key name, "
                "status and error type.",
                (*request, "gen_ai_provider_name", "partner", "key_name",
                 "http_response_status_code", "error_type"),
                n,
            )
        )
        self.duration = self._add(
            Histogram(
                "gen_ai_server_request_duration_seconds",
                "Time from the request's arrival to its last byte.",
                (*request, "stream"),
                LATENCY_BUCKETS,
                n,
            )
        )
        self.ttft = self._add(
            Histogram(
                "gen_ai_server_time_to_first_token_seconds",
                "Time from the request's arrival to the first generated token (streams).",
                request,
                LATENCY_BUCKETS,
                n,
            )
        )
        self.overhead = self._add(
            Histogram(
                "sluicegate_gateway_overhead_seconds",
                "The gateway's own time per request: arrival until the upstream call, plus "
                "the upstream's answer until it went to the client (no queue wait).",
                ("surface", "endpoint", "stream"),
                OVERHEAD_BUCKETS,
                n,
            )
        )
        usage = ("gen_ai_request_model", "deployment", "partner", "key_name")
        self.tokens = self._add(
            Counter(
                "sluicegate_tokens_total",
                "Tokens reported by upstreams, by type (input, output, cache_read, "
                "cache_write).",
                (*usage, "gen_ai_token_type"),
                n,
            )
        )
        self.cost = self._add(
            Counter("sluicegate_cost_usd_total", "Cost charged, in US dollars.", usage, n)
        )
        self.rejections = self._add(
            Counter(
                "sluicegate_rate_limit_rejections_total",
                "Requests refused by a rate limit or budget, by limit (rpm, tpm, parallel, "
                "budget) and scope (key, partner, deployment, global).",
                ("limit", "scope", "partner", "key_name"),
                n,
            )
        )
        self.queue_wait = self._add(
            Histogram(
                "sluicegate_admission_wait_seconds",
                "Time requests waited in the fair queue for shared capacity.",
                ("deployment", "admitted"),
                WAIT_BUCKETS,
                n,
            )
        )
        self.attempts = self._add(
            Counter(
                "sluicegate_upstream_attempts_total",
                "Upstream calls, by deployment and outcome (HTTP status, or transport_error).",
                ("deployment", "outcome"),
                n,
            )
        )
        self.retries = self._add(
            Counter(
                "sluicegate_retries_total",
                "Upstream calls beyond the first for a request.",
                ("gen_ai_request_model",),
                n,
            )
        )
        self.fallbacks = self._add(
            Counter(
                "sluicegate_fallbacks_total",
                "Requests answered by a fallback model alias.",
                ("gen_ai_request_model", "served_by"),
                n,
            )
        )
        self.in_flight = self._add(
            Gauge(
                "sluicegate_requests_in_flight",
                "Requests being served.",
                ("surface",),
                max_series=n,
            )
        )
        self.streams = self._add(
            Gauge(
                "sluicegate_streams_in_flight",
                "Streams being relayed to clients.",
                ("surface",),
                max_series=n,
            )
        )
        self.budget_remaining = self._add(
            Gauge(
                "sluicegate_budget_remaining_usd",
                "What a key's or partner's budget has left this period (as of its last "
                "request).",
                ("budget", "period"),
                merge="min",
                max_series=n,
            )
        )

    def _add(self, metric: _M) -> _M:
        self.set.add(metric)
        return metric

    def add_source(
        self,
        name: str,
        documentation: str,
        labelnames: Labels,
        source: Source,
        merge: GaugeMerge,
    ) -> None:
        """A gauge read at scrape time (breaker states, queue depths)."""
        self.set.add(Gauge(name, documentation, labelnames, merge, source))

    def request_done(self, record: RequestRecord) -> None:
        """Count one finished request (called once per request, at settle).

        The series a request touches depend only on its labels: they are looked up once per
        label combination and kept in ``_handles``, so a request costs one dict lookup and
        a few additions instead of a dozen label tuples and lookups."""
        model = record.alias or ""
        key = (
            record.surface,
            record.endpoint,
            model,
            # Before routing (unknown model, bad request) the deployment is not known either.
            (record.deployment or "") if model else "",
            record.provider,
            record.partner_name or "",
            record.key_name or "",
            record.status,
            record.error_type or "",
            record.stream,
        )
        handle = self._handles.get(key)
        if handle is None:
            handle = self._handle(key)
        handle.requests[0] += 1
        self.duration.observe_in(handle.duration, record.finished_at - record.started)
        # The series below only exist for requests that have such a value (a refusal has
        # no time to first token and no tokens): made at first use.
        if record.first_token_at is not None:
            if handle.ttft is None:
                handle.ttft = self.ttft.series(handle.request)
            self.ttft.observe_in(handle.ttft, record.first_token_at - record.started)
        if record.overhead is not None:
            if handle.overhead is None:
                handle.overhead = self.overhead.series(
                    (handle.request[0], handle.request[1], handle.stream)
                )
            self.overhead.observe_in(handle.overhead, record.overhead)
        usage = record.usage
        if usage is not None:
            cells = handle.usage_cells
            if cells is None:  # the four token types, then the cost
                cells = handle.usage_cells = (
                    *(self.tokens.cell((*handle.usage, kind)) for kind in TOKEN_TYPES),
                    self.cost.cell(handle.usage),
                )
            cells[0][0] += usage.input_tokens
            cells[1][0] += usage.output_tokens
            cells[2][0] += usage.cache_read_input_tokens
            cells[3][0] += usage.cache_creation_input_tokens
            cells[4][0] += record.cost_usd
        if record.limited is not None:
            self.rejections.inc((*record.limited, key[5], key[6]))
        if record.attempts > 1:
            self.retries.inc((model,), record.attempts - 1)
        served = record.served_alias
        if served is not None and served != model:
            self.fallbacks.inc((model, served))

    def _handle(self, key: tuple[Any, ...]) -> _Handle:
        surface, endpoint, model, deployment, provider, partner, key_name, status, error = key[:9]
        stream = "true" if key[9] else "false"
        request = (surface, endpoint, model, deployment)
        usage = (model, deployment, partner, key_name)
        handle = _Handle(
            request,
            usage,
            stream,
            self.requests.cell((*request, provider, partner, key_name, str(status), error)),
            self.duration.series((*request, stream)),
        )
        if len(self._handles) >= self._max_handles:
            self._handles.clear()  # a cache only: the series stay in their metrics
        self._handles[key] = handle
        return handle


TOKEN_TYPES = ("input", "output", "cache_read", "cache_write")


class _Handle:
    """The series one label combination of finished requests updates."""

    __slots__ = (
        "duration",
        "overhead",
        "request",
        "requests",
        "stream",
        "ttft",
        "usage",
        "usage_cells",
    )

    def __init__(
        self,
        request: Labels,
        usage: Labels,
        stream: str,
        requests: Cell,
        duration: list[float],
    ) -> None:
        self.request, self.usage, self.stream = request, usage, stream
        self.requests = requests
        self.duration = duration
        self.ttft: list[float] | None = None
        self.overhead: list[float] | None = None
        self.usage_cells: tuple[Cell, ...] | None = None  # four token types, then cost

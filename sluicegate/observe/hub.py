"""One place the data path reports to: metrics, traces, the anomaly detector.

The pipeline calls :meth:`Observability.started` when a request arrives and
:meth:`Observability.finished` once when it settles; the deliverer reports each upstream
call to :meth:`Observability.attempted`. A traced request's upstream calls go through
:meth:`Observability.traced` (a span each). Without tracing each is a few cell additions.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping

from sluicegate.api.asgi import Request
from sluicegate.observe.anomaly import AnomalyDetector
from sluicegate.observe.gateway_metrics import BREAKER_VALUES, GatewayMetrics
from sluicegate.observe.metrics import Cell, Labels
from sluicegate.observe.metrics_export import METRICS_DIR_ENV, MetricsExporter
from sluicegate.observe.tracing import Tracing
from sluicegate.providers.base import UpstreamCall, UpstreamResponse
from sluicegate.record import RequestRecord
from sluicegate.settings import Settings

SURFACE_NAMES = ("anthropic", "openai")
SendUpstream = Callable[[UpstreamCall], Awaitable[UpstreamResponse]]
# What counts as a failure for anomaly detection: the gateway or an upstream failed
# (5xx, 529 overloaded, 502/504 transport). Client errors and the gateway's own rate-limit
# refusals are the partner's doing, not an anomaly of the service.
_FAILED_FROM = 500


class Observability:
    def __init__(self, settings: Settings) -> None:
        self.metrics = GatewayMetrics(settings.metrics.max_series)
        self.exporter = MetricsExporter(self.metrics.set, os.environ.get(METRICS_DIR_ENV))
        self.tracing = Tracing(settings.tracing)
        anomaly = settings.alerts.anomaly
        self.anomalies = AnomalyDetector(anomaly) if anomaly.enabled else None
        # Cells kept for the request path: bumped in place, no label lookups.
        in_flight, streams = self.metrics.in_flight, self.metrics.streams
        self._in_flight = {s: in_flight.cell((s,)) for s in SURFACE_NAMES}
        self._streams = {s: streams.cell((s,)) for s in SURFACE_NAMES}
        self._attempt_cells: dict[tuple[str, int | None], Cell] = {}

    async def start(self) -> None:
        await self.exporter.start()

    async def close(self) -> None:
        await self.exporter.close()
        self.tracing.shutdown()

    # -- scrape-time sources -----------------------------------------------------------

    def watch_breakers(self, states: Callable[[], Mapping[str, str]]) -> None:
        def source() -> Iterable[tuple[Labels, float]]:
            return [((name,), BREAKER_VALUES[state]) for name, state in states().items()]

        self.metrics.add_source(
            "sluicegate_breaker_state",
            "Circuit breaker per deployment: 0 closed, 1 half-open, 2 open.",
            ("deployment",),
            source,
            "max",
        )

    def watch_budgets(self, left: Callable[[], list[tuple[tuple[str, str], float]]]) -> None:
        """What each budget has left (label, period -> USD), read at scrape time."""
        self.metrics.budget_remaining.source = left

    def watch_queues(self, depths: Callable[[], dict[str, int]]) -> None:
        self.metrics.add_source(
            "sluicegate_admission_queue_depth",
            "Requests waiting in the fair queue for a shared capacity.",
            ("deployment",),
            lambda: [((name,), float(depth)) for name, depth in depths().items()],
            "sum",
        )

    # -- the request path ----------------------------------------------------------------

    def started(self, record: RequestRecord, surface: str, request: Request | None) -> None:
        """``request``: where a client's trace context is read from (None: not traced)."""
        self._in_flight[surface][0] += 1
        if self.tracing.enabled and request is not None:
            record.trace = self.tracing.start_request(
                record.endpoint,
                surface,
                request.header("traceparent"),
                request.header("tracestate"),
            )

    def stream_started(self, surface: str) -> None:
        self._streams[surface][0] += 1

    def stream_ended(self, surface: str) -> None:
        self._streams[surface][0] -= 1

    def attempted(self, deployment: str, status: int | None) -> None:
        """One upstream call ended: its status, or None for a transport failure (the
        deliverer reports every attempt here)."""
        cell = self._attempt_cells.get((deployment, status))
        if cell is None:
            outcome = "transport_error" if status is None else str(status)
            cell = self.metrics.attempts.cell((deployment, outcome))
            if len(self._attempt_cells) < 10_000:
                self._attempt_cells[(deployment, status)] = cell
        cell[0] += 1

    def traced(self, record: RequestRecord, send: SendUpstream) -> SendUpstream:
        """``send`` with a span per upstream call, its trace context sent upstream (only
        for requests being traced)."""
        trace = record.trace
        assert trace is not None

        async def traced_send(call: UpstreamCall) -> UpstreamResponse:
            record.attempts += 1
            span = trace.start_attempt(
                call.deployment.name, call.deployment.provider, _upstream_model(call),
                record.attempts,
            )
            call = dataclasses.replace(call, client_headers=span.apply_to(call.client_headers))
            try:
                upstream = await send(call)
            except BaseException as exc:
                span.finish(None, getattr(exc, "error_type", type(exc).__name__))
                raise
            span.finish(upstream.status, None)
            return upstream

        return traced_send

    def finished(self, record: RequestRecord) -> None:
        self._in_flight[record.surface][0] -= 1
        record.finished_at = time.perf_counter()
        self.metrics.request_done(record)
        if record.trace is not None:
            record.trace.finish(record)
        if self.anomalies is not None and record.key_id is not None:
            subject = record.partner_name or f"key {record.key_name}"
            self.anomalies.observe(
                subject,
                record.status >= _FAILED_FROM,
                record.finished_at - record.started,
                record.cost_usd,
            )

    def queue_waited(self, deployment: str, seconds: float, admitted: bool) -> None:
        self.metrics.queue_wait.observe((deployment, "true" if admitted else "false"), seconds)



def _upstream_model(call: UpstreamCall) -> str:
    return call.deployment.upstream_model or call.deployment.alias

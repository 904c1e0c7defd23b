"""OpenTelemetry traces: one SERVER span per request, one CLIENT span per upstream attempt.

Spans follow the GenAI semantic conventions (``gen_ai.*``) plus a few ``sluicegate.*``
attributes; they carry names and numbers only: never a body, a header value or a key.
They go to an OTLP/HTTP collector in batches, from the SDK's own thread, so the event loop
never waits on the collector.

The tracer provider is this gateway's own, not the process-global one: nothing else in the
process (a library that instruments itself through the global API) can add spans to, or
change the sampling of, the gateway's traces.

A client's W3C ``traceparent``/``tracestate`` makes the request span a child of the
client's span; an invalid one starts a new trace (never an error). Each attempt's headers
name the attempt span, so the provider's side of the trace hangs under the call that
reached it.

With ``tracing.otlp_endpoint`` unset nothing of the SDK is imported or built and
:meth:`Tracing.start_request` returns None: the data path pays one None check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from sluicegate.providers.anthropic import TRACE_HEADERS
from sluicegate.settings_observe import TracingSettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from sluicegate.record import RequestRecord

log = logging.getLogger("sluicegate.tracing")

SHUTDOWN_TIMEOUT = 5.0  # seconds shutdown waits for pending spans to reach the collector
# gen_ai.operation.name per endpoint. Token counting has no value in the conventions; they
# ask for the provider's own name then, and Anthropic calls it count_tokens.
OPERATIONS = {"messages": "chat", "chat_completions": "chat", "count_tokens": "count_tokens"}

_PROPAGATOR = TraceContextTextMapPropagator()
# Parent of a request without a traceparent: explicitly empty, so a span that happens to be
# current in the task's context can never become the parent of a request.
_NO_PARENT = Context()
# The SDK logs a warning per span it drops when its queue is full (a collector that is down
# under load): one line per request. These loggers get a throttle (see _Throttle).
_THROTTLED_LOGGERS = (
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)
LOG_INTERVAL = 60.0  # seconds between two log lines with the same message from those loggers


class _Throttle(logging.Filter):
    """Lets each distinct message (its format string) through once per interval."""

    def __init__(self, interval: float) -> None:
        super().__init__()
        self._interval = interval
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now, key = time.monotonic(), str(record.msg)
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return False
        self._last[key] = now
        return True


_THROTTLE = _Throttle(LOG_INTERVAL)


class Tracing:
    """The gateway's tracer: builds the SDK pipeline once, hands out request traces.

    ``exporter`` replaces the OTLP exporter and ``schedule_delay`` the batch interval
    (seconds; default: the SDK's 5 s or ``OTEL_BSP_SCHEDULE_DELAY``); both are for tests.
    Tracing is on only when ``settings.otlp_endpoint`` is set, whatever the exporter.
    """

    def __init__(
        self,
        settings: TracingSettings,
        *,
        exporter: SpanExporter | None = None,
        schedule_delay: float | None = None,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    ) -> None:
        self.enabled = settings.otlp_endpoint is not None
        self._shutdown_timeout = shutdown_timeout
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None
        if not self.enabled:
            return
        # Imported here: the SDK and the exporter (protobuf, requests) cost ~0.1 s to import
        # and nothing at all when tracing is off.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

        if exporter is None:
            exporter = OTLPSpanExporter(
                endpoint=settings.otlp_endpoint,
                headers={name: value.reveal() for name, value in settings.headers.items()},
            )
        provider = TracerProvider(
            # A client's sampled flag wins; the ratio applies to traces the gateway starts.
            sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
            resource=Resource.create({"service.name": settings.service_name}),
            # The gateway flushes at its own shutdown, within a bound (see shutdown); an
            # atexit hook would wait up to 30 s more on a collector that is down.
            shutdown_on_exit=False,
        )
        delay_ms = None if schedule_delay is None else schedule_delay * 1000
        provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=delay_ms))
        for name in _THROTTLED_LOGGERS:
            logger = logging.getLogger(name)
            if _THROTTLE not in logger.filters:
                logger.addFilter(_THROTTLE)
        self._provider = provider
        self._tracer = provider.get_tracer("sluicegate")

    def start_request(
        self, endpoint: str, surface: str, traceparent: str | None, tracestate: str | None
    ) -> RequestTrace | None:
        """The trace of one request (None when tracing is off or shut down)."""
        tracer = self._tracer
        if tracer is None:
            return None
        parent = _NO_PARENT
        if traceparent is not None:
            carrier = {"traceparent": traceparent}
            if tracestate:
                carrier["tracestate"] = tracestate
            # An invalid traceparent yields an empty context: the request starts a new trace.
            parent = _PROPAGATOR.extract(carrier)
        operation = OPERATIONS.get(endpoint, endpoint)
        span = tracer.start_span(
            operation,  # renamed "{operation} {model}" at finish, once the model is known
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": operation,
                "sluicegate.endpoint": endpoint,
                "sluicegate.surface": surface,
            },
        )
        return RequestTrace(tracer, span, operation)

    def flush(self, timeout: float = SHUTDOWN_TIMEOUT) -> bool:
        """Export the spans ended so far now (tests, admin). False if it did not finish."""
        provider = self._provider
        return provider is None or provider.force_flush(int(timeout * 1000))

    def shutdown(self) -> None:
        """Export pending spans (waiting at most ``shutdown_timeout``) and stop; never raises.

        Blocks the caller for up to that time; spans started afterwards are not made."""
        provider, self._provider, self._tracer = self._provider, None, None
        self.enabled = False
        if provider is None:
            return

        def stop() -> None:
            try:
                provider.shutdown()
            except Exception:
                log.exception("tracing: shutting the exporter down failed")

        # The SDK's own shutdown waits up to 30 s for a collector; a daemon thread bounds
        # it, and whatever is left is dropped when the process exits.
        thread = threading.Thread(target=stop, name="sluicegate-tracing-shutdown", daemon=True)
        thread.start()
        thread.join(self._shutdown_timeout)
        if thread.is_alive():
            log.warning(
                "tracing: pending spans not exported within %.0f s; dropped",
                self._shutdown_timeout,
            )


class RequestTrace:
    """The SERVER span of one request and the attempts made under it."""

    __slots__ = ("_attempts", "_context", "_ended", "_operation", "_provider", "_span", "_tracer")

    def __init__(self, tracer: Tracer, span: Span, operation: str) -> None:
        self._tracer = tracer
        self._span = span
        self._context = set_span_in_context(span, _NO_PARENT)  # the attempts' parent
        self._operation = operation
        self._provider: str | None = None
        self._attempts: list[AttemptTrace] = []
        self._ended = False

    @property
    def trace_id(self) -> str:
        """The trace id, 32 hex digits (for the request's log line)."""
        return format(self._span.get_span_context().trace_id, "032x")

    def start_attempt(
        self, deployment: str, provider: str, upstream_model: str, attempt: int
    ) -> AttemptTrace:
        """A CLIENT span, child of the request span, for one upstream call (1-based)."""
        self._provider = provider
        span = self._tracer.start_span(
            f"{self._operation} {upstream_model}",
            context=self._context,
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": self._operation,
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": upstream_model,
                "sluicegate.deployment": deployment,
                "sluicegate.attempt": attempt,
            },
        )
        trace = AttemptTrace(span)
        self._attempts.append(trace)
        return trace

    def finish(self, record: RequestRecord) -> None:
        """Set the attributes the record holds, the status, and end the span (once).

        The status is ERROR when the gateway or upstream failed (status >= 500) or when an
        answer that began well failed later (a stream's error event: status < 400 with an
        ``error_type``). A 4xx is the client's doing and leaves the status unset, as the
        HTTP conventions ask of server spans; its ``error.type`` is still set. Attempts
        not finished by now end here, unchanged."""
        if self._ended:
            return
        self._ended = True
        for attempt in self._attempts:
            attempt.end()
        span = self._span
        if span.is_recording():  # an unsampled request costs no attribute building
            span.set_attributes(_request_attributes(record, record.provider or self._provider))
            if record.model:
                span.update_name(f"{self._operation} {record.model}")
            status = record.status
            if status >= 500 or (status < 400 and record.error_type):
                span.set_status(Status(StatusCode.ERROR, record.error_type or str(status)))
        span.end()


class AttemptTrace:
    """The CLIENT span of one upstream call."""

    __slots__ = ("_ended", "_span")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._ended = False

    def headers(self) -> dict[str, str]:
        """``traceparent`` (and ``tracestate`` when there is one) naming this attempt's
        span, for the upstream request. Also when the span is not sampled: its flag then
        tells the provider not to record it either."""
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=set_span_in_context(self._span, _NO_PARENT))
        return carrier

    def apply_to(self, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` with any trace context in them replaced by this attempt's: a
        client's ``tracestate`` must not travel beside a ``traceparent`` it does not
        belong to (e.g. when the client's traceparent was invalid)."""
        merged = {name: value for name, value in headers.items() if name not in TRACE_HEADERS}
        merged.update(self.headers())
        return merged

    def finish(self, status: int | None, error_type: str | None) -> None:
        """End the span with the upstream's HTTP status (None: no answer, a transport
        error). ERROR when there was no answer, a status >= 400 (a client span's rule) or
        an ``error_type`` (e.g. a stream whose first event is an error)."""
        if self._ended:
            return
        self._ended = True
        span = self._span
        if span.is_recording():
            failed = status is None or status >= 400 or error_type is not None
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            if failed:
                # "_OTHER" is the conventions' value when no better one is known.
                kind = error_type or (str(status) if status is not None else "_OTHER")
                span.set_attribute("error.type", kind)
                span.set_status(Status(StatusCode.ERROR, kind))
        span.end()

    def end(self) -> None:
        """End the span as it is, if :meth:`finish` was not called (request ended first)."""
        if not self._ended:
            self._ended = True
            self._span.end()


def _request_attributes(
    record: RequestRecord, provider: str | None
) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {
        "sluicegate.request_id": record.request_id,
        "sluicegate.stream": record.stream,
        "sluicegate.attempts": record.attempts,
    }
    if record.status:
        attributes["http.response.status_code"] = record.status
    if record.error_type or record.status >= 400:
        attributes["error.type"] = record.error_type or str(record.status)
    if provider:
        attributes["gen_ai.provider.name"] = provider
    if record.model:
        attributes["gen_ai.request.model"] = record.model
    if record.upstream_model and record.committed:  # an upstream's answer was relayed
        attributes["gen_ai.response.model"] = record.upstream_model
    # Names only: the key's name, never the key.
    for name, value in (
        ("sluicegate.deployment", record.deployment),
        ("sluicegate.partner", record.partner_name),
        ("sluicegate.key_name", record.key_name),
    ):
        if value:
            attributes[name] = value
    usage = record.usage
    if usage is not None:
        # The conventions' input count includes cached tokens; Anthropic's (and so the
        # record's) excludes them, so the cache reads and writes are added back.
        attributes["gen_ai.usage.input_tokens"] = (
            usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
        )
        attributes["gen_ai.usage.output_tokens"] = usage.output_tokens
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_input_tokens
        attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_creation_input_tokens
        attributes["sluicegate.cost_usd"] = record.cost_usd
    if record.first_token_at is not None:
        attributes["sluicegate.ttft_ms"] = round((record.first_token_at - record.started) * 1000, 2)
    return attributes

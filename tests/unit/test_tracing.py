"""observe/tracing: request and attempt spans, W3C propagation, attributes, export.

Most tests read spans from the SDK's in-memory exporter; one sends them over real
OTLP/HTTP to the test receiver (tests/otlp_receiver.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from sluicegate.api.sse import Usage
from sluicegate.observe.tracing import Tracing
from sluicegate.providers.anthropic import AnthropicProvider
from sluicegate.providers.base import UpstreamCall
from sluicegate.providers.openai import OpenAIProvider
from sluicegate.record import RequestRecord
from sluicegate.routing.router import Router
from sluicegate.settings import Timeouts, settings_from_mapping
from sluicegate.settings_observe import TracingSettings
from tests.otlp_receiver import OTLPReceiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
CLIENT_TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN}-01"
UNUSED_ENDPOINT = "http://127.0.0.1:9/v1/traces"  # never reached: the exporter is replaced
GATEWAY_KEY = "sk-sg-0123456789abcdef0123456789abcdef"
EXPORT_SECRET = "Bearer otlp-secret-7f3a9c"


def settings(**values: Any) -> TracingSettings:
    return TracingSettings.model_validate({"otlp_endpoint": UNUSED_ENDPOINT, **values})


@pytest.fixture
def memory() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(memory: InMemorySpanExporter) -> Iterator[Tracing]:
    t = Tracing(settings(), exporter=memory)
    yield t
    t.shutdown()


def exported(tracing: Tracing, memory: InMemorySpanExporter) -> list[ReadableSpan]:
    assert tracing.flush()
    return list(memory.get_finished_spans())


def one(spans: list[ReadableSpan], kind: SpanKind) -> ReadableSpan:
    [span] = [s for s in spans if s.kind is kind]
    return span


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def served_record(**values: Any) -> RequestRecord:
    usage = Usage(
        input_tokens=10, output_tokens=7, cache_read_input_tokens=100, cache_creation_input_tokens=5
    )
    record = RequestRecord("req-1", "messages", key_id="k1", key_name="my-app")
    record.partner_name = "acme"
    record.model, record.upstream_model = "team-alias", "claude-opus-4-7"
    record.deployment, record.provider, record.attempts = "team-alias#0", "anthropic", 1
    record.status, record.usage, record.cost_usd = 200, usage, 0.0123
    record.committed = True  # an upstream's answer was relayed
    record.first_token_at = record.started + 0.25
    for name, value in values.items():
        setattr(record, name, value)
    return record


# -- off ----------------------------------------------------------------------------------


def test_disabled_builds_nothing_and_returns_none() -> None:
    tracing = Tracing(TracingSettings())
    assert tracing.enabled is False
    assert tracing.start_request("messages", "anthropic", CLIENT_TRACEPARENT, None) is None
    assert tracing.flush()
    tracing.shutdown()  # harmless


def test_no_request_trace_after_shutdown(tracing: Tracing) -> None:
    tracing.shutdown()
    assert tracing.enabled is False
    assert tracing.start_request("messages", "anthropic", None, None) is None


# -- spans and their relation -------------------------------------------------------------


def test_request_and_attempt_spans(tracing: Tracing, memory: InMemorySpanExporter) -> None:
    trace = tracing.start_request("messages", "anthropic", None, None)
    assert trace is not None
    attempt = trace.start_attempt("team-alias#0", "anthropic", "claude-opus-4-7", 1)
    headers = attempt.headers()
    attempt.finish(200, None)
    trace.finish(served_record())

    spans = exported(tracing, memory)
    assert len(spans) == 2
    server, client = one(spans, SpanKind.SERVER), one(spans, SpanKind.CLIENT)
    assert server.parent is None  # no traceparent: a new trace
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    trace_id, client_id = hex_ids(client)
    assert hex_ids(server)[0] == trace_id == trace.trace_id
    # The upstream sees the attempt span as its parent. Flags: sampled (01), and "random
    # trace id" (02, W3C Trace Context level 2) on a trace the gateway started.
    assert headers == {"traceparent": f"00-{trace_id}-{client_id}-03"}
    assert server.name == "chat team-alias"
    assert client.name == "chat claude-opus-4-7"
    assert client.end_time is not None and server.end_time is not None
    assert client.end_time <= server.end_time


def test_request_attributes(tracing: Tracing, memory: InMemorySpanExporter) -> None:
    trace = tracing.start_request("messages", "anthropic", None, None)
    assert trace is not None
    trace.start_attempt("team-alias#0", "anthropic", "claude-opus-4-7", 1).finish(200, None)
    trace.finish(served_record())

    server = one(exported(tracing, memory), SpanKind.SERVER)
    attributes = dict(server.attributes or {})
    assert attributes.pop("sluicegate.ttft_ms") == pytest.approx(250, abs=1)
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.request.model": "team-alias",
        "gen_ai.response.model": "claude-opus-4-7",
        # The conventions count cached tokens in the input; Anthropic does not.
        "gen_ai.usage.input_tokens": 115,
        "gen_ai.usage.output_tokens": 7,
        "gen_ai.usage.cache_read.input_tokens": 100,
        "gen_ai.usage.cache_creation.input_tokens": 5,
        "http.response.status_code": 200,
        "sluicegate.endpoint": "messages",
        "sluicegate.surface": "anthropic",
        "sluicegate.request_id": "req-1",
        "sluicegate.stream": False,
        "sluicegate.attempts": 1,
        "sluicegate.deployment": "team-alias#0",
        "sluicegate.partner": "acme",
        "sluicegate.key_name": "my-app",
        "sluicegate.cost_usd": 0.0123,
    }
    assert server.status.status_code is StatusCode.UNSET


def test_attempt_attributes(tracing: Tracing, memory: InMemorySpanExporter) -> None:
    trace = tracing.start_request("chat_completions", "openai", None, None)
    assert trace is not None
    trace.start_attempt("gpt#0", "openai", "gpt-4o-mini", 2).finish(200, None)
    trace.finish(served_record(endpoint="chat_completions", provider="openai"))

    client = one(exported(tracing, memory), SpanKind.CLIENT)
    assert dict(client.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "sluicegate.deployment": "gpt#0",
        "sluicegate.attempt": 2,
        "http.response.status_code": 200,
    }
    assert client.status.status_code is StatusCode.UNSET


def test_count_tokens_operation(tracing: Tracing, memory: InMemorySpanExporter) -> None:
    trace = tracing.start_request("count_tokens", "anthropic", None, None)
    assert trace is not None
    trace.finish(served_record(endpoint="count_tokens", usage=None, model="claude-sonnet-4-6"))
    [server] = exported(tracing, memory)
    assert server.name == "count_tokens claude-sonnet-4-6"
    assert (server.attributes or {})["gen_ai.operation.name"] == "count_tokens"
    assert "gen_ai.usage.input_tokens" not in (server.attributes or {})


def test_refused_before_any_model_keeps_the_operation_name(
    tracing: Tracing, memory: InMemorySpanExporter
) -> None:
    trace = tracing.start_request("messages", "anthropic", None, None)
    assert trace is not None
    record = RequestRecord("req-2", "messages")
    record.status, record.error_type = 401, "authentication_error"
    record.upstream_model = "claude-sonnet-4-6"  # e.g. refused after routing: no answer
    trace.finish(record)
    [server] = exported(tracing, memory)
    assert server.name == "chat"
    attributes = server.attributes or {}
    assert attributes["error.type"] == "authentication_error"
    assert "gen_ai.response.model" not in attributes and "sluicegate.key_name" not in attributes
    assert server.status.status_code is StatusCode.UNSET  # a client error, not the server's


# -- W3C trace context --------------------------------------------------------------------


def test_client_traceparent_is_continued(tracing: Tracing, memory: InMemorySpanExporter) -> None:
    trace = tracing.start_request("messages", "anthropic", CLIENT_TRACEPARENT, "vendor=v1,o=2")
    assert trace is not None and trace.trace_id == TRACE_ID
    attempt = trace.start_attempt("d", "anthropic", "m", 1)
    headers = attempt.headers()
    attempt.finish(200, None)
    trace.finish(served_record())

    spans = exported(tracing, memory)
    server, client = one(spans, SpanKind.SERVER), one(spans, SpanKind.CLIENT)
    assert server.parent is not None and server.parent.is_remote
    assert format(server.parent.span_id, "016x") == CLIENT_SPAN
    assert hex_ids(server)[0] == hex_ids(client)[0] == TRACE_ID
    assert headers["traceparent"] == f"00-{TRACE_ID}-{hex_ids(client)[1]}-01"
    assert headers["tracestate"] == "vendor=v1,o=2"  # travels on with the trace


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        "",
        f"00-{'0' * 32}-{CLIENT_SPAN}-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE_ID}-{CLIENT_SPAN}-01",  # version ff is forbidden
        f"00-{TRACE_ID[:-1]}-{CLIENT_SPAN}-01",
        f"00-{TRACE_ID}-{CLIENT_SPAN}",
    ],
)
def test_invalid_traceparent_starts_a_new_trace(
    tracing: Tracing, memory: InMemorySpanExporter, traceparent: str
) -> None:
    trace = tracing.start_request("messages", "anthropic", traceparent, "vendor=v1")
    assert trace is not None
    attempt = trace.start_attempt("d", "anthropic", "m", 1)
    client_headers = {"traceparent": traceparent, "tracestate": "vendor=v1", "x-other": "1"}
    merged = attempt.apply_to(client_headers)
    attempt.finish(200, None)
    trace.finish(served_record())

    server = one(exported(tracing, memory), SpanKind.SERVER)
    assert server.parent is None
    assert trace.trace_id != TRACE_ID
    # The client's tracestate belonged to the trace that was not continued: it is dropped.
    assert "tracestate" not in merged
    assert merged["traceparent"].split("-")[1] == trace.trace_id
    assert merged["x-other"] == "1"


def test_unsampled_client_trace_is_propagated_but_not_recorded(
    tracing: Tracing, memory: InMemorySpanExporter
) -> None:
    trace = tracing.start_request("messages", "anthropic", f"00-{TRACE_ID}-{CLIENT_SPAN}-00", None)
    assert trace is not None
    attempt = trace.start_attempt("d", "anthropic", "m", 1)
    headers = attempt.headers()
    attempt.finish(200, None)
    trace.finish(served_record())
    assert exported(tracing, memory) == []
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert (version, trace_id, flags) == ("00", TRACE_ID, "00")
    assert span_id != CLIENT_SPAN  # the gateway's own (unrecorded) span


def test_sample_ratio_applies_to_new_traces_only(memory: InMemorySpanExporter) -> None:
    tracing = Tracing(settings(sample_ratio=0), exporter=memory)
    for traceparent in (None, CLIENT_TRACEPARENT):
        trace = tracing.start_request("messages", "anthropic", traceparent, None)
        assert trace is not None
        trace.finish(served_record())
    spans = exported(tracing, memory)
    tracing.shutdown()
    assert [hex_ids(s)[0] for s in spans] == [TRACE_ID]  # the client's sampled flag wins


# -- statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type", "span_status", "expected_type"),
    [
        (502, "api_error", StatusCode.ERROR, "api_error"),
        (500, None, StatusCode.ERROR, "500"),
        (429, "rate_limit_error", StatusCode.UNSET, "rate_limit_error"),
        (499, None, StatusCode.UNSET, "499"),  # the client left
        (200, "overloaded_error", StatusCode.ERROR, "overloaded_error"),  # stream failed late
        (200, None, StatusCode.UNSET, None),
    ],
)
def test_request_status(
    tracing: Tracing,
    memory: InMemorySpanExporter,
    status: int,
    error_type: str | None,
    span_status: StatusCode,
    expected_type: str | None,
) -> None:
    trace = tracing.start_request("messages", "anthropic", None, None)
    assert trace is not None
    trace.finish(served_record(status=status, error_type=error_type))
    [server] = exported(tracing, memory)
    assert server.status.status_code is span_status
    assert (server.attributes or {}).get("error.type") == expected_type
    assert (server.attributes or {})["http.response.status_code"] == status


@pytest.mark.parametrize(
    ("status", "error_type", "span_status", "expected_type"),
    [
        (None, "timeout_error", StatusCode.ERROR, "timeout_error"),
        (None, None, StatusCode.ERROR, "_OTHER"),
        (529, None, StatusCode.ERROR, "529"),
        (429, "rate_limit_error", StatusCode.ERROR, "rate_limit_error"),
        (200, "overloaded_error", StatusCode.ERROR, "overloaded_error"),  # first event failed
        (200, None, StatusCode.UNSET, None),
    ],
)
def test_attempt_status(
    tracing: Tracing,
    memory: InMemorySpanExporter,
    status: int | None,
    error_type: str | None,
    span_status: StatusCode,
    expected_type: str | None,
) -> None:
    trace = tracing.start_request("messages", "anthropic", None, None)
    assert trace is not None
    trace.start_attempt("d", "anthropic", "m", 1).finish(status, error_type)
    trace.finish(served_record())
    client = one(exported(tracing, memory), SpanKind.CLIENT)
    assert client.status.status_code is span_status
    attributes = client.attributes or {}
    assert attributes.get("error.type") == expected_type
    assert attributes.get("http.response.status_code") == status


def test_unfinished_attempt_ends_with_the_request_and_finish_is_once(
    tracing: Tracing, memory: InMemorySpanExporter
) -> None:
    trace = tracing.start_request("messages", "anthropic", None, None)
    assert trace is not None
    first = trace.start_attempt("d", "anthropic", "m", 1)
    first.finish(503, None)
    trace.start_attempt("d", "anthropic", "m", 2)  # e.g. cancelled before it was finished
    record = served_record(attempts=2)
    trace.finish(record)
    trace.finish(record)
    first.finish(200, None)
    spans = exported(tracing, memory)
    assert len(spans) == 3
    attempts = sorted(
        (s for s in spans if s.kind is SpanKind.CLIENT),
        key=lambda s: (s.attributes or {})["sluicegate.attempt"],
    )
    assert [s.status.status_code for s in attempts] == [StatusCode.ERROR, StatusCode.UNSET]
    assert (attempts[0].attributes or {})["http.response.status_code"] == 503


# -- secrets ------------------------------------------------------------------------------


def test_no_secret_or_key_in_any_attribute(memory: InMemorySpanExporter) -> None:
    tracing = Tracing(settings(headers={"authorization": EXPORT_SECRET}), exporter=memory)
    trace = tracing.start_request("messages", "anthropic", CLIENT_TRACEPARENT, None)
    assert trace is not None
    trace.start_attempt("d", "anthropic", "m", 1).finish(200, None)
    trace.finish(served_record(key_id="key-row-1"))
    spans = exported(tracing, memory)
    tracing.shutdown()
    texts = [
        str(value)
        for span in spans
        for value in [*(span.attributes or {}).values(), *span.resource.attributes.values()]
    ]
    for text in texts:
        assert EXPORT_SECRET not in text and "otlp-secret" not in text
        assert GATEWAY_KEY not in text and "sk-sg-" not in text
    assert all("key-row-1" not in text for text in texts)  # the key's name only


def test_sdk_warnings_are_throttled(tracing: Tracing, caplog: pytest.LogCaptureFixture) -> None:
    """A full queue makes the SDK warn once per dropped span: not once per request."""
    sdk_log = logging.getLogger("opentelemetry.sdk._shared_internal")
    message = f"Queue full, dropping %s. ({time.monotonic()})"  # unique to this run
    with caplog.at_level(logging.WARNING):
        for _ in range(100):
            sdk_log.warning(message, "span")
    assert [r.getMessage() for r in caplog.records] == [message % "span"]


# -- real OTLP/HTTP export ----------------------------------------------------------------


def test_spans_reach_an_otlp_http_receiver() -> None:
    with OTLPReceiver() as receiver:
        tracing = Tracing(
            TracingSettings.model_validate(
                {
                    "otlp_endpoint": receiver.traces_url,
                    "headers": {"authorization": EXPORT_SECRET},
                    "service_name": "sluicegate-test",
                }
            )
        )
        trace = tracing.start_request("messages", "anthropic", CLIENT_TRACEPARENT, None)
        assert trace is not None
        attempt = trace.start_attempt("team-alias#0", "anthropic", "claude-opus-4-7", 1)
        traceparent = attempt.headers()["traceparent"]
        attempt.finish(200, None)
        trace.finish(served_record())
        tracing.shutdown()  # flushes the batch

        spans = receiver.trace(TRACE_ID, 2, timeout=5)
        [server] = [s for s in spans if s.kind == "SERVER"]
        [client] = [s for s in spans if s.kind == "CLIENT"]
        assert server.parent_span_id == CLIENT_SPAN
        assert client.parent_span_id == server.span_id
        assert traceparent == f"00-{TRACE_ID}-{client.span_id}-01"
        assert server.name == "chat team-alias"
        assert server.resource["service.name"] == "sluicegate-test"
        assert server.attributes["gen_ai.usage.output_tokens"] == 7
        assert server.attributes["sluicegate.key_name"] == "my-app"
        assert client.attributes["gen_ai.provider.name"] == "anthropic"
        [headers] = receiver.export_headers()
        assert headers["content-type"] == "application/x-protobuf"
        assert headers["authorization"] == EXPORT_SECRET  # the configured export header


def test_shutdown_is_bounded_when_the_collector_is_down() -> None:
    with OTLPReceiver() as receiver:
        dead = receiver.traces_url  # a port that answers nothing once the receiver stops
    tracing = Tracing(TracingSettings.model_validate({"otlp_endpoint": dead}), shutdown_timeout=1)
    trace = tracing.start_request("messages", "anthropic", None, None)
    assert trace is not None
    trace.finish(served_record())
    started = time.monotonic()
    tracing.shutdown()  # the exporter retries with backoff; shutdown does not wait for it
    assert time.monotonic() - started < 3


# -- providers forward the trace context --------------------------------------------------


def _call(provider: str, client_headers: dict[str, str]) -> UpstreamCall:
    base = "http://h/v1" if provider == "openai" else "http://h"
    entry = {"model_name": "m", "provider": provider, "api_base": base, "api_key": "sk-up"}
    route = Router(settings_from_mapping({"model_list": [entry]}).model_list, Timeouts())
    deployment = route.resolve("m")[0].deployment
    return UpstreamCall(deployment, "/x", b"{}", client_headers, False)


TRACE_CONTEXT = {"traceparent": CLIENT_TRACEPARENT, "tracestate": "vendor=v1"}


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_providers_forward_the_trace_context(provider: str) -> None:
    sent = {"x-api-key": GATEWAY_KEY, "authorization": f"Bearer {GATEWAY_KEY}", **TRACE_CONTEXT}
    call = _call(provider, sent)
    if provider == "anthropic":
        headers = AnthropicProvider(None, "2023-06-01").headers_for(call)  # type: ignore[arg-type]
    else:
        headers = OpenAIProvider.headers_for(call)
    assert {k: headers[k] for k in TRACE_CONTEXT} == TRACE_CONTEXT
    assert GATEWAY_KEY not in str(headers)  # still never the client's credential


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_providers_send_no_trace_context_of_their_own(provider: str) -> None:
    call = _call(provider, {"x-api-key": GATEWAY_KEY})
    if provider == "anthropic":
        headers = AnthropicProvider(None, "2023-06-01").headers_for(call)  # type: ignore[arg-type]
    else:
        headers = OpenAIProvider.headers_for(call)
    assert "traceparent" not in headers and "tracestate" not in headers

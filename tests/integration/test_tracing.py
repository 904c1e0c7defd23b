"""Traces seen from the outside (docs/observability.md): the real gateway exports over
OTLP/HTTP to a receiver this module starts, continues a client's ``traceparent``, and
hands the upstream a ``traceparent`` naming its attempt span.

The module runs its own gateway (tracing on) against a private fake upstream; one test
uses the session gateway (tracing off) to check that a client's trace context then passes
through unchanged.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway, running_fake, start_gateway
from tests.integration.test_anthropic_support import (
    RawResponse,
    key_headers,
    message_body,
    raw_request,
)
from tests.otlp_receiver import OTLPReceiver, ReceivedSpan

SERVICE = "sluicegate-it"


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def traced_fake() -> Iterator[FakeUpstream]:
    with running_fake() as fake:
        yield fake


@pytest.fixture(scope="module")
def traced(
    receiver: OTLPReceiver, traced_fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    with pytest.MonkeyPatch.context() as env:
        # The SDK's batch interval (5 s by default): spans reach the receiver quickly.
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
        gateway = start_gateway(
            tmp_path_factory.mktemp("tracing"),
            traced_fake,
            extra_config={
                "tracing": {"otlp_endpoint": receiver.traces_url, "service_name": SERVICE}
            },
        )
    gateway.create_key("tracing")
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def clean(receiver: OTLPReceiver, traced_fake: FakeUpstream) -> None:
    receiver.clear()
    traced_fake.reset()


# -- helpers ------------------------------------------------------------------------------


def new_traceparent() -> tuple[str, str, str]:
    """(traceparent, trace id, parent span id) of a sampled client span."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


def post(gw: Gateway, path: str, body: dict[str, Any], **headers: str) -> RawResponse:
    sent = key_headers(gw.keys["tracing"], **headers)
    return raw_request(gw.url, "POST", path, json.dumps(body).encode(), sent)


def server_and_client(spans: list[ReceivedSpan]) -> tuple[ReceivedSpan, ReceivedSpan]:
    [server] = [s for s in spans if s.kind == "SERVER"]
    [client] = [s for s in spans if s.kind == "CLIENT"]
    return server, client


def spans_of_request(receiver: OTLPReceiver, request_id: str) -> list[ReceivedSpan]:
    """The request span (found by its request id) and the spans of its trace."""

    def server(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        for span in spans:
            if span.kind == "SERVER" and span.attributes.get("sluicegate.request_id") == request_id:
                return span
        return None

    found = server(receiver.wait_for(lambda spans: server(spans) is not None))
    assert found is not None
    return receiver.trace(found.trace_id, 2)


def assert_upstream_parent(call_headers: dict[str, str], trace_id: str, client: ReceivedSpan):
    """The upstream got a traceparent in the same trace, naming the attempt span."""
    version, got_trace, parent, flags = call_headers["traceparent"].split("-")
    assert (version, got_trace, parent) == ("00", trace_id, client.span_id)
    assert int(flags, 16) & 1  # sampled


def assert_no_key(gw: Gateway, spans: list[ReceivedSpan]) -> None:
    key = gw.keys["tracing"]
    for span in spans:
        for value in [*span.attributes.values(), *span.resource.values()]:
            assert key not in str(value)
            assert "sk-ant-upstream" not in str(value)


# -- tests --------------------------------------------------------------------------------


def test_client_trace_is_continued_and_propagated_upstream(
    traced: Gateway, receiver: OTLPReceiver, traced_fake: FakeUpstream
) -> None:
    traceparent, trace_id, client_span = new_traceparent()
    response = post(
        traced, "/v1/messages", message_body(), traceparent=traceparent, tracestate="vendor=v1"
    )
    assert response.status == 200, response.body
    usage = response.json()["usage"]

    spans = receiver.trace(trace_id, 2)
    server, client = server_and_client(spans)
    assert server.parent_span_id == client_span  # the client's span is the parent
    assert client.parent_span_id == server.span_id
    assert server.name == "chat claude-sonnet-4-6"
    assert server.status == "UNSET" and client.status == "UNSET"
    assert server.resource["service.name"] == SERVICE

    [call] = traced_fake.calls
    assert_upstream_parent(call.headers, trace_id, client)
    assert call.headers["tracestate"] == "vendor=v1"

    attributes = server.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["gen_ai.request.model"] == "claude-sonnet-4-6"
    assert attributes["gen_ai.response.model"] == "claude-sonnet-4-6"
    assert attributes["gen_ai.usage.input_tokens"] == (
        usage["input_tokens"]
        + usage["cache_read_input_tokens"]
        + usage["cache_creation_input_tokens"]
    )
    assert attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"]
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == usage["cache_read_input_tokens"]
    assert attributes["http.response.status_code"] == 200
    assert attributes["sluicegate.request_id"] == response.request_id
    assert attributes["sluicegate.key_name"] == "tracing"
    assert attributes["sluicegate.attempts"] == 1
    assert attributes["sluicegate.stream"] is False
    assert "error.type" not in attributes

    assert client.name == "chat claude-sonnet-4-6"
    assert client.attributes["gen_ai.provider.name"] == "anthropic"
    assert client.attributes["gen_ai.request.model"] == "claude-sonnet-4-6"
    assert client.attributes["sluicegate.attempt"] == 1
    assert client.attributes["http.response.status_code"] == 200
    assert client.attributes["sluicegate.deployment"] == attributes["sluicegate.deployment"]
    assert_no_key(traced, spans)


def test_sdk_stream_is_traced(
    traced: Gateway, receiver: OTLPReceiver, traced_fake: FakeUpstream
) -> None:
    traceparent, trace_id, client_span = new_traceparent()
    traced_fake.script(Behaviour(text="A streamed answer in several deltas, traced."))
    client = anthropic.Anthropic(
        base_url=traced.url,
        api_key=traced.keys["tracing"],
        max_retries=0,
        timeout=20.0,
        default_headers={"traceparent": traceparent},
    )
    with client.messages.stream(
        model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()

    server, attempt = server_and_client(receiver.trace(trace_id, 2))
    assert server.parent_span_id == client_span
    assert attempt.parent_span_id == server.span_id
    assert server.attributes["sluicegate.stream"] is True
    assert server.attributes["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert server.attributes["gen_ai.usage.input_tokens"] == final.usage.input_tokens
    assert server.attributes["sluicegate.ttft_ms"] >= 0
    [call] = traced_fake.calls
    assert call.json["stream"] is True
    assert_upstream_parent(call.headers, trace_id, attempt)


@pytest.mark.parametrize("traceparent", [None, "00-not-a-trace-01"])
def test_missing_or_invalid_traceparent_starts_a_new_trace(
    traced: Gateway, receiver: OTLPReceiver, traced_fake: FakeUpstream, traceparent: str | None
) -> None:
    headers = {} if traceparent is None else {"traceparent": traceparent, "tracestate": "v=1"}
    response = post(traced, "/v1/messages", message_body(), **headers)
    assert response.status == 200, response.body

    server, client = server_and_client(spans_of_request(receiver, response.request_id))
    assert server.parent_span_id == ""  # a root: the gateway started the trace
    [call] = traced_fake.calls
    assert_upstream_parent(call.headers, server.trace_id, client)
    # A tracestate belongs to the traceparent it came with: not to the new trace.
    assert "tracestate" not in call.headers


def test_openai_surface_and_provider(
    traced: Gateway, receiver: OTLPReceiver, traced_fake: FakeUpstream
) -> None:
    traceparent, trace_id, client_span = new_traceparent()
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    response = post(traced, "/v1/chat/completions", body, traceparent=traceparent)
    assert response.status == 200, response.body
    usage = response.json()["usage"]

    server, client = server_and_client(receiver.trace(trace_id, 2))
    assert server.parent_span_id == client_span
    assert server.name == "chat gpt-4o-mini"
    assert server.attributes["sluicegate.surface"] == "openai"
    assert server.attributes["gen_ai.provider.name"] == "openai"
    # OpenAI's prompt_tokens already include cached tokens, as the conventions' count does.
    assert server.attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert server.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert client.attributes["gen_ai.provider.name"] == "openai"
    [call] = traced_fake.calls
    assert_upstream_parent(call.headers, trace_id, client)


def test_upstream_failure_marks_both_spans(
    traced: Gateway, receiver: OTLPReceiver, traced_fake: FakeUpstream
) -> None:
    traceparent, trace_id, _ = new_traceparent()
    traced_fake.script(Behaviour(status=500))
    response = post(traced, "/v1/messages", message_body(), traceparent=traceparent)
    assert response.status == 500

    server, client = server_and_client(receiver.trace(trace_id, 2))
    assert server.status == "ERROR" and client.status == "ERROR"
    assert server.attributes["http.response.status_code"] == 500
    # The record's error type when the gateway knows one, else the status code.
    assert server.attributes["error.type"] in (response.json()["error"]["type"], "500")
    assert client.attributes["http.response.status_code"] == 500
    assert client.attributes["error.type"]


def test_without_tracing_the_client_trace_context_passes_through(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    """The session gateway has no tracing: the provider gets the client's own values."""
    traceparent, _, _ = new_traceparent()
    sent = key_headers(gateway.keys["full"], traceparent=traceparent, tracestate="vendor=v1")
    response = raw_request(
        gateway.url, "POST", "/v1/messages", json.dumps(message_body()).encode(), sent
    )
    assert response.status == 200, response.body
    [call] = fake.calls
    assert call.headers["traceparent"] == traceparent
    assert call.headers["tracestate"] == "vendor=v1"

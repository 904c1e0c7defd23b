"""Retries, fallbacks and first-event checks against scripted fake upstreams, counting the
upstream calls each client request caused. The gateway runs the delivery defaults (retries,
fallbacks, breakers), with short backoffs so the suite stays quick."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import openai
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway, free_port, model_entry, running_fake, start_gateway
from tests.integration.test_anthropic_support import RawResponse, key_headers, raw_request

ROUTING = {
    "retries": {"max_attempts": 3, "base_delay": 0.05, "max_delay": 0.2},
    # Many scripted failures in a row across tests: keep breakers out of these cases (the
    # breaker suite has its own gateway).
    "breaker": {"consecutive_failures": 1000, "min_requests": 1000},
    "fallbacks": {"down": ["backup"], "solo-openai": ["backup"], "down-2": ["solo-openai"]},
    "context_window_fallbacks": {"small-window": ["backup"]},
}


@pytest.fixture(scope="module")
def second() -> Iterator[FakeUpstream]:
    with running_fake() as fake:
        yield fake


@pytest.fixture(scope="module")
def delivery_gateway(
    upstream: FakeUpstream, second: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    entry = model_entry
    closed_port = f"http://127.0.0.1:{free_port()}"
    models = [
        entry("solo", upstream.url, model="claude-sonnet-4-6"),
        entry("down", closed_port, model="claude-sonnet-4-6", timeouts={"connect": 1.0}),
        entry("down-2", closed_port, model="claude-sonnet-4-6", timeouts={"connect": 1.0}),
        entry("small-window", upstream.url, model="claude-sonnet-4-6", context_window=50),
        entry("backup", second.url, model="claude-haiku-4-5", deployment_id="backup-east"),
        entry("solo-openai", upstream.url + "/v1", provider="openai", model="gpt-4o-mini"),
        entry("stalls", upstream.url, model="claude-sonnet-4-6", timeouts={"idle": 0.5}),
    ]
    gateway = start_gateway(
        tmp_path_factory.mktemp("delivery"),
        upstream,
        model_list=models,
        extra_config={"routing": ROUTING},
    )
    gateway.create_key("delivery")
    yield gateway
    gateway.stop()


@pytest.fixture
def key(delivery_gateway: Gateway) -> str:
    return delivery_gateway.create_key(f"k-{time.monotonic_ns()}")


@pytest.fixture
def both(fake: FakeUpstream, second: FakeUpstream) -> tuple[FakeUpstream, FakeUpstream]:
    second.reset()
    return fake, second


def client(gateway: Gateway, key: str) -> anthropic.Anthropic:
    # No SDK retries: every upstream call counted below comes from the gateway alone.
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=20)


def ask(
    gateway: Gateway, key: str, model: str, text: str = "hello", **extra: object
) -> RawResponse:
    body = {"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": text}]}
    return raw_request(
        gateway.url,
        "POST",
        "/v1/messages",
        json.dumps({**body, **extra}).encode(),
        key_headers(key),
    )


def test_529_twice_then_success_takes_three_calls(
    delivery_gateway: Gateway, key: str, fake: FakeUpstream
) -> None:
    fake.script(Behaviour(status=529), Behaviour(status=529), Behaviour(text="third time"))
    response = ask(delivery_gateway, key, "solo")
    assert response.status == 200
    assert response.json()["content"][0]["text"] == "third time"
    assert fake.call_count("messages") == 3
    assert response.headers["x-sluicegate-attempts"] == "3"
    assert response.headers["x-sluicegate-deployment"] == "solo"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, anthropic.BadRequestError),
        (401, anthropic.AuthenticationError),
        (403, anthropic.PermissionDeniedError),
        (404, anthropic.NotFoundError),
        (413, anthropic.APIStatusError),
    ],
)
def test_client_errors_are_never_retried(
    delivery_gateway: Gateway, key: str, fake: FakeUpstream, status: int, error: type
) -> None:
    fake.script(Behaviour(status=status), Behaviour(text="must not be reached"))
    with pytest.raises(error) as caught:
        client(delivery_gateway, key).messages.create(
            model="solo", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    assert fake.call_count("messages") == 1


def test_spend_limit_429_is_not_retried(
    delivery_gateway: Gateway, key: str, fake: FakeUpstream
) -> None:
    fake.script(Behaviour(status=429, headers={"x-should-retry": "false"}), Behaviour(text="no"))
    response = ask(delivery_gateway, key, "solo")
    assert response.status == 429
    assert fake.call_count("messages") == 1


def test_retry_after_is_honoured(delivery_gateway: Gateway, key: str, fake: FakeUpstream) -> None:
    fake.script(Behaviour(status=429, headers={"retry-after-ms": "700"}), Behaviour(text="ok"))
    started = time.monotonic()
    response = ask(delivery_gateway, key, "solo")
    waited = time.monotonic() - started
    assert response.status == 200 and fake.call_count("messages") == 2
    # Behaviour, not speed: the second call did not come before the upstream allowed it.
    first, again = fake.calls[:2]
    assert again.at - first.at >= 0.69, waited


def test_a_retry_after_longer_than_allowed_is_relayed_not_waited_for(
    delivery_gateway: Gateway, key: str, fake: FakeUpstream
) -> None:
    fake.script(Behaviour(status=429, headers={"retry-after": "3600"}), Behaviour(text="no"))
    started = time.monotonic()
    response = ask(delivery_gateway, key, "solo")
    assert response.status == 429 and response.headers["retry-after"] == "3600"
    assert fake.call_count("messages") == 1 and time.monotonic() - started < 5


def test_persistent_529_reaches_the_client_after_bounded_calls(
    delivery_gateway: Gateway, key: str, fake: FakeUpstream
) -> None:
    fake.script(*[Behaviour(status=529) for _ in range(10)])
    response = ask(delivery_gateway, key, "solo")
    assert response.status == 529
    assert response.json()["error"]["type"] == "overloaded_error"
    assert fake.call_count("messages") == 3
    fake.reset()


def test_fallback_to_another_alias_when_the_first_is_down(
    delivery_gateway: Gateway, key: str, both: tuple[FakeUpstream, FakeUpstream]
) -> None:
    _, second = both
    second.script(Behaviour(text="from the backup"))
    response = ask(delivery_gateway, key, "down")
    assert response.status == 200
    assert response.json()["content"][0]["text"] == "from the backup"
    assert response.headers["x-sluicegate-deployment"] == "backup-east"
    assert second.calls[0].json["model"] == "claude-haiku-4-5"  # the fallback's own model


def test_fallback_from_an_openai_deployment_to_an_anthropic_one(
    delivery_gateway: Gateway, key: str, both: tuple[FakeUpstream, FakeUpstream]
) -> None:
    first, second = both
    first.script(*[Behaviour(status=503) for _ in range(3)])
    second.script(Behaviour(text="anthropic answered"))
    answer = openai.OpenAI(
        base_url=delivery_gateway.url + "/v1", api_key=key, max_retries=0
    ).chat.completions.create(model="solo-openai", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "anthropic answered"
    # The Anthropic fallback got an Anthropic request (translated), not the OpenAI body.
    assert second.call_count("messages") == 1 and first.call_count("chat_completions") >= 1


def test_a_fallback_to_openai_drops_what_openai_would_reject(
    delivery_gateway: Gateway, key: str, fake: FakeUpstream
) -> None:
    """Anthropic thinking blocks carry signatures only Anthropic accepts: a fallback to an
    OpenAI deployment sends the conversation without them (docs/delivery.md)."""
    messages = [
        {"role": "user", "content": "what is 2+2?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "add them", "signature": "sig-abc123"},
                {"type": "text", "text": "4"},
            ],
        },
        {"role": "user", "content": "and 3+3?"},
    ]
    fake.script(Behaviour(text="6"))
    response = raw_request(
        delivery_gateway.url,
        "POST",
        "/v1/messages",
        json.dumps({"model": "down-2", "max_tokens": 32, "messages": messages}).encode(),
        key_headers(key),
    )
    assert response.status == 200, response.body
    assert response.json()["content"][0]["text"] == "6"
    assert response.headers["x-sluicegate-deployment"] == "solo-openai"
    (call,) = [c for c in fake.calls if c.route == "chat_completions"]
    assert b"sig-abc123" not in call.body and b"thinking" not in call.body
    assert [m["role"] for m in call.json["messages"]] == ["user", "assistant", "user"]


def test_a_request_too_large_for_the_window_goes_to_the_context_fallback(
    delivery_gateway: Gateway, key: str, both: tuple[FakeUpstream, FakeUpstream]
) -> None:
    first, second = both
    small = ask(delivery_gateway, key, "small-window", "hi")
    assert small.headers["x-sluicegate-deployment"] == "small-window"
    large = ask(delivery_gateway, key, "small-window", "word " * 400)
    assert large.status == 200
    assert large.headers["x-sluicegate-deployment"] == "backup-east"
    assert first.call_count("messages") == 1 and second.call_count("messages") == 1


def test_stream_cut_before_the_first_event_is_retried(
    delivery_gateway: Gateway, key: str, fake: FakeUpstream
) -> None:
    fake.script(Behaviour(cut_after_events=0), Behaviour(text="whole stream"))
    with client(delivery_gateway, key).messages.stream(
        model="solo", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "whole stream" and final.stop_reason == "end_turn"
    assert fake.call_count("messages") == 2


def test_stream_whose_first_event_is_overloaded_is_retried(
    delivery_gateway: Gateway, key: str, fake: FakeUpstream
) -> None:
    fake.script(Behaviour(error_event_after=0), Behaviour(text="second try"))
    with client(delivery_gateway, key).messages.stream(
        model="solo", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        assert "".join(stream.text_stream) == "second try"
    assert fake.call_count("messages") == 2


def test_stream_cut_after_the_first_byte_is_an_error_event_not_a_retry(
    delivery_gateway: Gateway, key: str, fake: FakeUpstream
) -> None:
    fake.script(Behaviour(text="a long answer that will be cut", cut_after_events=4))
    events = stream_events(delivery_gateway, key, "solo")
    assert events[-1][0] == "error"
    assert fake.call_count("messages") == 1


def test_a_stalled_stream_ends_with_an_error_event(
    delivery_gateway: Gateway, key: str, fake: FakeUpstream
) -> None:
    fake.script(Behaviour(stall_after_events=3, stall_seconds=5))
    started = time.monotonic()
    events = stream_events(delivery_gateway, key, "stalls")
    assert events[-1][0] == "error" and time.monotonic() - started < 4
    assert fake.call_count("messages") == 1


def stream_events(gateway: Gateway, key: str, model: str) -> list[tuple[str, str]]:
    """(event, data) pairs of a raw SSE answer."""
    response = ask(gateway, key, model, "x", stream=True)
    assert response.status == 200
    events = []
    for frame in response.body.decode().split("\n\n"):
        name = data = ""
        for line in frame.splitlines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data = line.split(":", 1)[1].strip()
        if name or data:
            events.append((name, data))
    return events


def test_the_retry_budget_stops_amplification(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeUpstream
) -> None:
    """An upstream failing for everyone: retries stop at the budget (here 1 per second over
    the 10 s window, no share of traffic), not at max_attempts per request."""
    routing = {
        "retries": {
            "max_attempts": 3,
            "base_delay": 0.01,
            "max_delay": 0.02,
            "budget_ratio": 0,
            "budget_min_per_second": 1,
        },
        "breaker": {"enabled": False},
    }
    models = [model_entry("failing", fake.url)]
    gateway = start_gateway(
        tmp_path_factory.mktemp("budget"),
        fake,
        model_list=models,
        extra_config={"routing": routing},
    )
    try:
        key = gateway.create_key("budget")
        fake.script(*[Behaviour(status=529) for _ in range(200)])
        statuses = [ask(gateway, key, "failing").status for _ in range(20)]
        assert statuses == [529] * 20
        # 20 first attempts + at most 10 retries (1/s x 10 s), not 20 x 3 = 60 calls.
        assert 20 < fake.call_count("messages") <= 30
    finally:
        gateway.stop()
        fake.reset()

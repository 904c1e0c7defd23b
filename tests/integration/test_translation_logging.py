"""The request log line of a translated exchange carries the tokens, in Anthropic's terms
(cached prompt tokens apart from input tokens), for JSON answers and for streams."""

from __future__ import annotations

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway
from tests.integration.test_anthropic_support import wait_for_log
from tests.integration.test_openai_support import anthropic_client, openai_client

HELLO = [{"role": "user", "content": "hello"}]
USAGE = {
    "input_tokens": 10,
    "cache_read_input_tokens": 5,
    "cache_creation_input_tokens": 2,
    "output_tokens": 7,
}


def test_openai_client_claude_json(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="logged", usage=USAGE))
    raw = openai_client(gateway).chat.completions.with_raw_response.create(
        model="team-alias", messages=HELLO
    )
    assert raw.parse().choices[0].message.content == "logged"

    entry = wait_for_log(gateway, raw.headers["request-id"])
    assert entry["endpoint"] == "chat_completions"
    assert entry["status"] == 200
    assert entry["key_name"] == "full"
    assert entry["model"] == "team-alias"
    assert entry["upstream_model"] == "claude-opus-4-7"
    assert entry["stream"] is False
    assert entry["input_tokens"] == 10
    assert entry["output_tokens"] == 7
    assert entry["cache_read_tokens"] == 5
    assert entry["cache_write_tokens"] == 2
    assert "error_type" not in entry


def test_openai_client_claude_stream(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="logged stream", usage=USAGE))
    with openai_client(gateway).chat.completions.with_streaming_response.create(
        model="claude-sonnet-4-6", messages=HELLO, stream=True
    ) as response:
        request_id = response.headers["request-id"]
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "logged stream"
    )

    entry = wait_for_log(gateway, request_id)
    assert entry["stream"] is True
    assert entry["status"] == 200
    assert entry["input_tokens"] == 10
    assert entry["output_tokens"] == 7
    assert entry["cache_read_tokens"] == 5
    assert entry["cache_write_tokens"] == 2
    assert "ttft_ms" in entry


def test_anthropic_client_openai_json(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(
        Behaviour(
            text="logged",
            usage={"input_tokens": 10, "cache_read_input_tokens": 4, "output_tokens": 6},
        )
    )
    raw = anthropic_client(gateway).messages.with_raw_response.create(
        model="gpt-4o-mini", max_tokens=50, messages=HELLO
    )
    assert raw.parse().content[0].text == "logged"  # type: ignore[union-attr]

    entry = wait_for_log(gateway, raw.headers["request-id"])
    assert entry["endpoint"] == "messages"
    assert entry["model"] == "gpt-4o-mini"
    assert entry["status"] == 200
    assert entry["input_tokens"] == 10
    assert entry["cache_read_tokens"] == 4
    assert entry["output_tokens"] == 6


def test_anthropic_client_openai_stream(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="logged stream", usage={"input_tokens": 12, "output_tokens": 3}))
    with anthropic_client(gateway).messages.with_streaming_response.create(
        model="gpt-4o-mini", max_tokens=50, messages=HELLO, stream=True
    ) as response:
        request_id = response.headers["request-id"]
        events = list(response.parse())
    assert events[-1].type == "message_stop"

    entry = wait_for_log(gateway, request_id)
    assert entry["stream"] is True
    assert entry["input_tokens"] == 12
    assert entry["output_tokens"] == 3
    assert "error_type" not in entry


def test_failed_translated_stream_is_logged_as_failed(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="this answer fails", error_event_after=3))
    with anthropic_client(gateway).messages.with_streaming_response.create(
        model="gpt-4o-mini", max_tokens=50, messages=HELLO, stream=True
    ) as response:
        request_id = response.headers["request-id"]
        response.read()

    entry = wait_for_log(gateway, request_id)
    assert entry.get("error_type"), entry


def test_failed_openai_client_stream_is_logged_as_failed(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    fake.script(Behaviour(text="this answer fails", error_event_after=3))
    with openai_client(gateway).chat.completions.with_streaming_response.create(
        model="claude-sonnet-4-6", messages=HELLO, stream=True
    ) as response:
        request_id = response.headers["request-id"]
        response.read()

    entry = wait_for_log(gateway, request_id)
    assert entry.get("error_type"), entry


def test_cut_translated_stream_is_logged_as_failed(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="this answer is cut", cut_after_events=3))
    with openai_client(gateway).chat.completions.with_streaming_response.create(
        model="claude-sonnet-4-6", messages=HELLO, stream=True
    ) as response:
        request_id = response.headers["request-id"]
        response.read()

    entry = wait_for_log(gateway, request_id)
    assert entry.get("error_type"), entry

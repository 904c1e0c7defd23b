"""The ``total`` timeout: enforced for non-streamed answers and, between chunks, for streams."""

from __future__ import annotations

import time

import anthropic
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway


def client(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=gateway.keys["full"], max_retries=0)


def test_total_bounds_a_non_streamed_answer(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(delay_before_headers=4))
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as caught:
        client(gateway).messages.create(
            model="short-total", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    elapsed = time.monotonic() - started
    assert caught.value.status_code == 504
    assert caught.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]
    assert 1.2 < elapsed < 3.5  # total is 1.5 s; the upstream would answer after 4 s
    assert fake.call_count() == 1


def test_total_ends_a_trickling_stream_with_an_error_event(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    # Events every 0.3 s never trip the idle timeout; the 1.5 s total must end the stream.
    fake.script(Behaviour(text="word " * 40, chunk_delay=0.3))
    started = time.monotonic()
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as caught,
        client(gateway).messages.stream(
            model="short-total", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        texts.extend(stream.text_stream)
    elapsed = time.monotonic() - started
    assert caught.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]
    assert texts, "the events before the deadline reached the client"
    assert 1.2 < elapsed < 3.5

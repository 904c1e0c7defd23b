"""Streams are charged for what they generated even when the final usage never reaches the
gateway's client: an OpenAI client that did not ask for usage, a client that walks away
mid-stream. Otherwise a partner could stream on someone else's budget."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway, start_gateway
from tests.integration.test_governance import (
    anthropic_entry,
    openai_entry,
    private_upstream,
    wait_ledger,
)

PRICE = {"input": 10, "output": 10}  # USD per million tokens


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    upstream = private_upstream()
    yield upstream
    upstream.stop_thread()


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(
        tmp_path_factory.mktemp("charging"),
        fake,
        extra_config={
            "ledger": {"flush_interval": 0.2},
            "prices": {"charged-claude": PRICE, "charged-gpt": PRICE},
        },
        model_list=[
            anthropic_entry("charged-claude", fake.url),
            openai_entry("charged-gpt", fake.url),
        ],
    )
    yield gateway
    gateway.stop()


def _post(gw: Gateway, path: str, key: str, body: dict[str, object]) -> http.client.HTTPResponse:
    url = urlparse(gw.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    conn.request(
        "POST",
        path,
        json.dumps(body),
        {"x-api-key": key, "content-type": "application/json", "anthropic-version": "2023-06-01"},
    )
    return conn.getresponse()


def test_openai_stream_without_include_usage_is_charged_and_usage_stays_hidden(
    gw: Gateway, fake: FakeUpstream
) -> None:
    key = gw.create_key("openai-stream")
    fake.script(Behaviour(text="one two three", usage={"input_tokens": 40, "output_tokens": 30}))
    response = _post(
        gw,
        "/v1/chat/completions",
        key,
        {"model": "charged-gpt", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    body = response.read()
    assert response.status == 200
    assert b'"usage"' not in body and body.rstrip().endswith(b"data: [DONE]")
    assert fake.calls[-1].json["stream_options"] == {"include_usage": True}
    (row,) = wait_ledger(gw, 1, key_name="openai-stream")
    assert (row["input_tokens"], row["output_tokens"]) == (40, 30)
    assert row["cost_usd"] == pytest.approx(70 * 10 / 1e6)


def test_a_stream_abandoned_by_its_client_is_charged_for_what_it_relayed(
    gw: Gateway, fake: FakeUpstream
) -> None:
    key = gw.create_key("walks-away")
    text = " ".join(f"word{i}" for i in range(400))  # ~2,800 characters of content
    fake.script(
        Behaviour(text=text, chunk_delay=0.01, usage={"input_tokens": 12, "output_tokens": 900})
    )
    response = _post(
        gw,
        "/v1/messages",
        key,
        {
            "model": "charged-claude",
            "max_tokens": 4000,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )
    assert response.status == 200
    received = b""
    while received.count(b"content_block_delta") < 30:
        received += response.read1(65536)
    response.close()  # the client leaves; the final usage (900 output tokens) never comes
    (row,) = wait_ledger(gw, 1, key_name="walks-away")
    # Charged by the relayed bytes: more than message_start's count, at most the whole text.
    assert 20 <= row["output_tokens"] <= len(text) // 4 + 10, row
    assert row["cost_usd"] > 0

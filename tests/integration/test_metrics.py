"""``/metrics`` after scripted traffic (docs/observability.md): the counts, token sums and
cost match what the clients were told; rejections, retries, fallbacks and breakers show;
client strings never become labels; the scrape can require the admin token, live on a port
of its own, and with ``--workers 2`` any worker's answer covers both."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import (
    ADMIN_TOKEN,
    UPSTREAM_KEY,
    Gateway,
    free_port,
    model_entry,
    running_fake,
    start_gateway,
)
from tests.integration.test_anthropic_support import key_headers, message_body, raw_request

PRICE = {"input": 3.0, "output": 15.0}  # USD per million tokens
USER = [{"role": "user", "content": "hello metrics"}]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def body_of(payload: object) -> bytes:
    return json.dumps(payload).encode()


def scrape(url: str, path: str = "/metrics", **headers: str) -> Samples:
    response = raw_request(url, "GET", path, headers=headers)
    assert response.status == 200, response.body[:300]
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with running_fake() as fake:
        yield fake


@pytest.fixture(scope="module")
def backup() -> Iterator[FakeUpstream]:
    with running_fake() as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream, backup: FakeUpstream
) -> Iterator[Gateway]:
    models = [
        model_entry("priced", upstream.url, model="claude-sonnet-4-6"),
        model_entry("gpt", upstream.url + "/v1", provider="openai", model="gpt-4o-mini"),
        model_entry("flaky", upstream.url, model="claude-sonnet-4-6"),
        model_entry("backup", backup.url, model="claude-sonnet-4-6"),
    ]
    gw = start_gateway(
        tmp_path_factory.mktemp("metrics"),
        upstream,
        model_list=models,
        extra_config={
            "prices": {"priced": PRICE, "gpt": PRICE},
            "routing": {
                "retries": {"max_attempts": 3, "base_delay": 0.01, "max_delay": 0.02},
                "fallbacks": {"flaky": ["backup"]},
                "breaker": {"consecutive_failures": 2, "cooldown": 60},
            },
        },
    )
    gw.cli("partners", "create", "acme", "--config", str(gw.config))
    yield gw
    gw.stop()


def test_scrape_after_traffic_counts_requests_tokens_and_cost(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    key = gateway.create_key("metered", "--partner", "acme")
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    chat = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
    inputs = outputs = 0
    overheads = []
    for _ in range(3):
        raw = client.messages.with_raw_response.create(
            model="priced", max_tokens=50, messages=USER
        )
        overheads.append(float(raw.headers["x-sluicegate-overhead-ms"]))
        message = raw.parse()
        inputs += message.usage.input_tokens
        outputs += message.usage.output_tokens
    for _ in range(2):
        with client.messages.stream(model="priced", max_tokens=50, messages=USER) as stream:
            final = stream.get_final_message()
        inputs += final.usage.input_tokens
        outputs += final.usage.output_tokens
    gpt_in = gpt_out = 0
    for _ in range(2):
        completion = chat.chat.completions.create(
            model="gpt", messages=[{"role": "user", "content": "hi"}]
        )
        assert completion.usage is not None
        gpt_in += completion.usage.prompt_tokens
        gpt_out += completion.usage.completion_tokens
    unknown = raw_request(
        gateway.url, "POST", "/v1/messages",
        body_of(message_body(model="no-such-model-7f3a")),
        key_headers(key),
    )
    assert unknown.status == 404
    assert all(0 < ms < 1000 for ms in overheads)

    got = scrape(gateway.url)
    mine = {"partner": "acme", "key_name": "metered"}
    assert total(
        got, "sluicegate_requests_total", gen_ai_request_model="priced", endpoint="messages",
        http_response_status_code="200", deployment="priced", surface="anthropic", **mine,
    ) == 5
    assert total(
        got, "sluicegate_requests_total", gen_ai_request_model="gpt", surface="openai",
        gen_ai_provider_name="openai", http_response_status_code="200", **mine,
    ) == 2
    assert total(
        got, "sluicegate_requests_total", gen_ai_request_model="",
        http_response_status_code="404", error_type="not_found_error", **mine,
    ) == 1

    def tokens(model: str, kind: str) -> float:
        return total(
            got, "sluicegate_tokens_total", gen_ai_request_model=model, gen_ai_token_type=kind,
            **mine,
        )

    assert (tokens("priced", "input"), tokens("priced", "output")) == (inputs, outputs)
    assert (tokens("gpt", "input"), tokens("gpt", "output")) == (gpt_in, gpt_out)
    cost = total(got, "sluicegate_cost_usd_total", **mine)
    expected = (inputs + gpt_in) * 3e-6 + (outputs + gpt_out) * 15e-6
    assert cost == pytest.approx(expected, rel=1e-9)
    ttft = "gen_ai_server_time_to_first_token_seconds_count"
    assert total(got, ttft, gen_ai_request_model="priced") == 2
    assert total(
        got, "gen_ai_server_request_duration_seconds_count", gen_ai_request_model="priced"
    ) == 5
    assert total(got, "sluicegate_gateway_overhead_seconds_count", endpoint="messages") >= 5
    assert total(got, "sluicegate_upstream_attempts_total", deployment="priced", outcome="200") == 5
    assert total(got, "sluicegate_requests_in_flight") == 0
    assert total(got, "sluicegate_streams_in_flight") == 0
    # Client strings never become label values, and no secret reaches the page.
    text = raw_request(gateway.url, "GET", "/metrics").body.decode()
    for leaked in ("no-such-model-7f3a", key, UPSTREAM_KEY, ADMIN_TOKEN):
        assert leaked not in text


def test_rejections_retries_fallbacks_and_breakers_show(
    gateway: Gateway, upstream: FakeUpstream, backup: FakeUpstream
) -> None:
    limited = gateway.create_key("limited", "--partner", "acme", "--rpm", "1")
    body = body_of(message_body(model="priced"))
    first = raw_request(gateway.url, "POST", "/v1/messages", body, key_headers(limited))
    assert first.status == 200
    refused = raw_request(gateway.url, "POST", "/v1/messages", body, key_headers(limited))
    assert refused.status == 429

    key = gateway.create_key("resilient", "--partner", "acme")
    upstream.reset()
    # Twice: flaky answers 529, the backup alias answers at once (the plan's next route).
    upstream.script(Behaviour(status=529), Behaviour(status=529))
    flaky = body_of(message_body(model="flaky"))
    for _ in range(2):
        answer = raw_request(gateway.url, "POST", "/v1/messages", flaky, key_headers(key))
        assert answer.status == 200, answer.body
        assert answer.headers["x-sluicegate-deployment"] == "backup"
        assert answer.headers["x-sluicegate-attempts"] == "2"

    got = scrape(gateway.url)
    assert total(
        got, "sluicegate_rate_limit_rejections_total", limit="rpm", scope="key",
        key_name="limited", partner="acme",
    ) == 1
    assert total(
        got, "sluicegate_requests_total", key_name="limited", http_response_status_code="429",
        error_type="rate_limit_error",
    ) == 1
    assert total(got, "sluicegate_upstream_attempts_total", deployment="flaky", outcome="529") == 2
    assert total(got, "sluicegate_retries_total", gen_ai_request_model="flaky") == 2
    assert total(
        got, "sluicegate_fallbacks_total", gen_ai_request_model="flaky", served_by="backup"
    ) == 2
    # Two consecutive failures opened flaky's breaker (2 = open).
    assert total(got, "sluicegate_breaker_state", deployment="flaky") == 2
    assert total(got, "sluicegate_breaker_state", deployment="backup") == 0


def test_budget_remaining_follows_the_spend(gateway: Gateway) -> None:
    key = gateway.create_key("budgeted", "--budget", "5", "--budget-period", "monthly")
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    spent = 0.0
    for _ in range(2):
        message = client.messages.create(model="priced", max_tokens=50, messages=USER)
        spent += message.usage.input_tokens * 3e-6 + message.usage.output_tokens * 15e-6
    got = scrape(gateway.url)
    left = total(got, "sluicegate_budget_remaining_usd", budget="key 'budgeted'", period="monthly")
    assert left == pytest.approx(5 - spent, abs=1e-9)
    assert total(got, "sluicegate_cost_usd_total", key_name="budgeted") == pytest.approx(spent)


def test_metrics_can_require_the_admin_token(tmp_path: Path, upstream: FakeUpstream) -> None:
    gw = start_gateway(tmp_path, upstream, extra_config={"metrics": {"auth": "admin_token"}})
    try:
        refused = raw_request(gw.url, "GET", "/metrics")
        assert refused.status == 401
        assert refused.json()["type"] == "error"
        wrong = raw_request(gw.url, "GET", "/metrics", headers={"authorization": "Bearer x"})
        assert wrong.status == 401
        scrape(gw.url, authorization=f"Bearer {ADMIN_TOKEN}")
    finally:
        gw.stop()


def test_two_workers_answer_for_each_other_on_a_metrics_port(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    port = free_port()
    gw = start_gateway(
        tmp_path,
        upstream,
        extra_config={
            "server": {"key_sync_interval": 0.5, "workers": 2, "log_level": "info"},
            "metrics": {"port": port},
        },
    )
    try:
        key = gw.create_key("two-workers")
        body = body_of(message_body())
        for _ in range(30):  # fresh connections: the kernel spreads them over both workers
            assert raw_request(gw.url, "POST", "/v1/messages", body, key_headers(key)).status == 200
        assert raw_request(gw.url, "GET", "/metrics").status == 404  # not on the API port
        metrics_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:  # a worker's snapshot is at most a second old
            counts = [
                total(scrape(metrics_url), "sluicegate_requests_total", key_name="two-workers")
                for _ in range(6)
            ]
            if all(c == 30 for c in counts) or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert counts == [30] * 6
    finally:
        gw.stop()

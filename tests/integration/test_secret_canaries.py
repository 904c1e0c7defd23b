"""Canary secrets: a provider key, the admin token, the key-hash secret and gateway keys are
planted in a gateway logging at debug level, which is then driven through success and error
paths (bad keys, upstream auth failures, unreachable and failing upstreams, retries,
breakers, bad admin calls, a stream cut mid-way). No canary may appear in the log, in any
response (status line, headers, body), in `/metrics`, in the spans exported to an OTLP
receiver, in the alerts posted to a webhook or in `check-config` output. A canary prompt
must not reach the log either (bodies are logged only when opted in)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway, free_port, model_entry, running_fake, start_gateway
from tests.integration.test_alerts import Webhook, running_webhook
from tests.integration.test_anthropic_support import RawResponse, key_headers, raw_request
from tests.otlp_receiver import OTLPReceiver

PROVIDER_KEY = "sk-ant-api03-CANARYprovider0123456789abcdefghij"
ADMIN_TOKEN = "sg-admin-CANARYadmin0123456789abcdefghijkl"
HASH_SECRET = "CANARYpepper0123456789abcdefghijklmnopq"
CLIENT_GUESS = "sk-sg-CANARYguess0123456789abcdefghijklmnop"
# A JWT a client sends as its bearer credential (header {"alg":"HS256"}, a canary subject).
CLIENT_JWT = (
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJDQU5BUllqd3RzdWJqZWN0In0."
    "CANARYjwtSignature0123456789abcdefghijkl"
)
OTLP_TOKEN = "Bearer CANARYotlp0123456789abcdefghijklmnop"
PROMPT = "CANARYprompt: the launch code is 0451"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as otlp:
        yield otlp


@pytest.fixture(scope="module")
def hook() -> Iterator[Webhook]:
    with running_webhook() as webhook:
        yield webhook


@pytest.fixture(scope="module")
def canary_upstream() -> Iterator[FakeUpstream]:
    with running_fake(PROVIDER_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def planted(
    canary_upstream: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
    receiver: OTLPReceiver,
    hook: Webhook,
) -> Iterator[tuple[Gateway, str]]:
    def entry(name: str, url: str, key: str = PROVIDER_KEY, **extra: object) -> dict[str, object]:
        return model_entry(name, url, api_key=key, **extra)  # the canary, inline

    models = [
        entry("good", canary_upstream.url, model="claude-sonnet-4-6"),
        # The upstream refuses this key: its 401 must not echo or reveal the key we sent.
        entry("wrong-key", canary_upstream.url, key=PROVIDER_KEY + "x", model="claude-x"),
        entry(
            "unreachable",
            f"http://127.0.0.1:{free_port()}",
            model="claude-sonnet-4-6",
            timeouts={"connect": 0.5},
        ),
        entry("openai-side", canary_upstream.url + "/v1", provider="openai", model="gpt-4o"),
    ]
    gateway = start_gateway(
        tmp_path_factory.mktemp("canaries"),
        canary_upstream,
        model_list=models,
        extra_config={
            "admin_token": ADMIN_TOKEN,
            "key_hash_secret": HASH_SECRET,
            "server": {"log_level": "debug", "key_sync_interval": 0.5},
            "routing": {
                "retries": {"max_attempts": 2, "base_delay": 0.01, "max_delay": 0.02},
                "breaker": {"consecutive_failures": 2, "cooldown": 0.5},
                "fallbacks": {"unreachable": ["good"]},
            },
            "tracing": {
                "otlp_endpoint": receiver.traces_url,
                "headers": {"authorization": OTLP_TOKEN},
            },
            # The webhook URL is a secret too (its path is the credential).
            "alerts": {"webhook_url": hook.url, "anomaly": {"window": 2, "min_requests": 3}},
        },
        env={"OTEL_BSP_SCHEDULE_DELAY": "100"},
    )
    key = gateway.create_key("canary-app")
    yield gateway, key
    gateway.stop()


def post(gateway: Gateway, path: str, body: object, headers: dict[str, str]) -> RawResponse:
    return raw_request(gateway.url, "POST", path, json.dumps(body).encode(), headers)


def message(model: str, **extra: object) -> dict[str, object]:
    return {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}],
            **extra}  # fmt: skip


def exercise(gateway: Gateway, key: str, fake: FakeUpstream) -> list[RawResponse]:
    answers = [
        post(gateway, "/v1/messages", message("good"), key_headers(key)),
        post(gateway, "/v1/messages", message("good", stream=True), key_headers(key)),
        post(gateway, "/v1/messages", message("good"), key_headers(CLIENT_GUESS)),
        post(
            gateway,
            "/v1/messages",
            message("good"),
            {**key_headers(""), "authorization": f"Bearer {CLIENT_JWT}"},
        ),
        post(
            gateway,
            "/v1/chat/completions",
            {"model": "openai-side", "messages": [{"role": "user", "content": "hi"}]},
            {"authorization": f"Bearer {CLIENT_JWT}", "content-type": "application/json"},
        ),
        post(
            gateway,
            "/v1/messages",
            {"model": "good", "max_tokens": 16, "messages": [{"role": "user", "content": PROMPT}]},
            key_headers(key),
        ),
        post(gateway, "/v1/messages", message("good"), key_headers(ADMIN_TOKEN)),
        post(gateway, "/v1/messages", message("wrong-key"), key_headers(key)),
        post(gateway, "/v1/messages", message("unreachable"), key_headers(key)),
        post(gateway, "/v1/messages", message("nope"), key_headers(key)),
        post(gateway, "/v1/messages", {"model": 3}, key_headers(key)),
        raw_request(gateway.url, "POST", "/v1/messages", b"{not json", key_headers(key)),
        post(
            gateway,
            "/v1/chat/completions",
            {"model": "openai-side", "messages": [{"role": "user", "content": "hi"}]},
            {"authorization": f"Bearer {key}", "content-type": "application/json"},
        ),
        post(gateway, "/key/generate", {"key_alias": "x"}, {"authorization": "Bearer wrong"}),
        post(
            gateway, "/key/generate", {"nonsense": True}, {"authorization": f"Bearer {ADMIN_TOKEN}"}
        ),
        raw_request(gateway.url, "GET", "/health/readiness"),
    ]
    # Upstream failures: 500s (retried, then the breaker opens), a stream cut mid-way, and
    # an upstream error body.
    fake.script(*[Behaviour(status=500) for _ in range(4)])
    answers += [post(gateway, "/v1/messages", message("good"), key_headers(key)) for _ in range(3)]
    fake.reset()
    fake.script(Behaviour(text="cut short, this answer is", cut_after_events=4))
    answers.append(post(gateway, "/v1/messages", message("good", stream=True), key_headers(key)))
    return answers


def test_no_canary_leaks(
    planted: tuple[Gateway, str],
    canary_upstream: FakeUpstream,
    receiver: OTLPReceiver,
    hook: Webhook,
) -> None:
    gateway, key = planted
    answers = exercise(gateway, key, canary_upstream)
    metrics = raw_request(gateway.url, "GET", "/metrics").body.decode()
    assert "sluicegate_requests_total" in metrics
    statuses = [a.status for a in answers]
    assert 200 in statuses and 401 in statuses and 404 in statuses  # the paths were taken
    assert any(s >= 500 for s in statuses)
    canaries = {
        "provider key": PROVIDER_KEY,
        "admin token": ADMIN_TOKEN,
        "key-hash secret": HASH_SECRET,
        "a client's wrong key": CLIENT_GUESS,
        "the gateway key": key,
        "a client's JWT": CLIENT_JWT,
        "the OTLP export credential": OTLP_TOKEN,
        "the webhook URL": hook.url,
    }
    config = gateway.cli("check-config", "--config", str(gateway.config)).stdout
    gateway.stop()  # shutdown logging included; pending spans flushed
    log = gateway.log_text()
    assert "request_id" in log or "request-id" in log  # debug logging did run
    assert PROMPT not in log and PROMPT[:20] not in log  # bodies are not logged by default
    spans = receiver.wait_for(lambda spans: len(spans) >= len(answers))
    span_text = json.dumps([s.attributes for s in spans] + [s.name for s in spans])
    assert "gen_ai.request.model" in span_text
    assert hook.posts, "the failure burst raised no alert: the alert path went untested"
    posted = b"".join(hook.raw).decode()
    assert PROMPT not in span_text and PROMPT not in posted
    for what, secret in canaries.items():
        assert secret not in log, f"{what} in the log"
        assert secret not in config, f"{what} in check-config output"
        assert secret not in metrics, f"{what} in /metrics"
        assert secret not in span_text, f"{what} in an exported span"
        assert secret not in posted, f"{what} in an alert"
        # Long enough fragments would still identify the secret.
        assert secret[8:30] not in log, f"part of the {what} in the log"
        for answer in answers:
            text = json.dumps(answer.headers) + answer.body.decode(errors="replace")
            assert secret not in text, f"{what} in a response ({answer.status})"

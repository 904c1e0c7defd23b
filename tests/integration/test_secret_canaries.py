"""Canary secrets: a provider key, the admin token, the key-hash secret and gateway keys are
planted in a gateway logging at debug level, which is then driven through success and error
paths (bad keys, upstream auth failures, unreachable and failing upstreams, retries,
breakers, bad admin calls, a stream cut mid-way). No canary may appear in the log, in any
response (status line, headers, body) or in `check-config` output. Metrics and traces join
this check when they exist."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway, free_port, model_entry, running_fake, start_gateway
from tests.integration.test_anthropic_support import RawResponse, key_headers, raw_request

PROVIDER_KEY = "sk-ant-api03-CANARYprovider0123456789abcdefghij"
ADMIN_TOKEN = "sg-admin-CANARYadmin0123456789abcdefghijkl"
HASH_SECRET = "CANARYpepper0123456789abcdefghijklmnopq"
CLIENT_GUESS = "sk-sg-CANARYguess0123456789abcdefghijklmnop"


@pytest.fixture(scope="module")
def canary_upstream() -> Iterator[FakeUpstream]:
    with running_fake(PROVIDER_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def planted(
    canary_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
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
        },
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


def test_no_canary_leaks(planted: tuple[Gateway, str], canary_upstream: FakeUpstream) -> None:
    gateway, key = planted
    answers = exercise(gateway, key, canary_upstream)
    statuses = [a.status for a in answers]
    assert 200 in statuses and 401 in statuses and 404 in statuses  # the paths were taken
    assert any(s >= 500 for s in statuses)
    canaries = {
        "provider key": PROVIDER_KEY,
        "admin token": ADMIN_TOKEN,
        "key-hash secret": HASH_SECRET,
        "a client's wrong key": CLIENT_GUESS,
        "the gateway key": key,
    }
    config = gateway.cli("check-config", "--config", str(gateway.config)).stdout
    gateway.stop()  # shutdown logging included
    log = gateway.log_text()
    assert "request_id" in log or "request-id" in log  # debug logging did run
    for what, secret in canaries.items():
        assert secret not in log, f"{what} in the log"
        assert secret not in config, f"{what} in check-config output"
        # Long enough fragments would still identify the secret.
        assert secret[8:30] not in log, f"part of the {what} in the log"
        for answer in answers:
            text = json.dumps(answer.headers) + answer.body.decode(errors="replace")
            assert secret not in text, f"{what} in a response ({answer.status})"

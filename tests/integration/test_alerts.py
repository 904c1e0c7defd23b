"""Alerts through a real gateway process: a partner's scripted error burst posts exactly one
``anomaly.error_rate`` alert to the webhook, and a breaker opening posts one
``breaker.opened``; payloads carry names and numbers, never keys, and the webhook URL (a
secret) never reaches the gateway's log."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import (
    ADMIN_TOKEN,
    UPSTREAM_KEY,
    Gateway,
    model_entry,
    start_gateway,
)
from tests.integration.test_anthropic_support import RawResponse, key_headers, raw_request

SECRET_PATH = "/services/T0CANARY/B0CANARY/xoxGatewayCanaryHook77"
WINDOW = 2.0
ANOMALY = {"window": WINDOW, "min_requests": 5}


@dataclass
class Webhook:
    """A Slack-style incoming webhook on loopback, recording every post."""

    url: str = ""
    posts: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [p for p in self.posts if p.get("sluicegate", {}).get("alert") == kind]


@contextlib.contextmanager
def running_webhook() -> Iterator[Webhook]:
    hook = Webhook()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == SECRET_PATH:
                with lock:
                    hook.raw.append(body)
                    hook.posts.append(json.loads(body))
                self.send_response(200)
            else:
                self.send_response(404)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}{SECRET_PATH}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with running_webhook() as hook:
        yield hook


def start(
    workdir: Path, fake: FakeUpstream, webhook: Webhook, routing: dict[str, object]
) -> Gateway:
    models = [model_entry("flaky", fake.url, model="claude-sonnet-4-6", deployment_id="flaky-east")]
    return start_gateway(
        workdir,
        fake,
        model_list=models,
        extra_config={
            "routing": routing,
            "alerts": {"webhook_url": webhook.url, "anomaly": ANOMALY},
        },
    )


def ask(gateway: Gateway, key: str) -> RawResponse:
    body = {"model": "flaky", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    return raw_request(
        gateway.url, "POST", "/v1/messages", json.dumps(body).encode(), key_headers(key)
    )


def wait_until(check: Callable[[], bool], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def log_events(gateway: Gateway, event: str) -> list[dict[str, Any]]:
    found = []
    for line in gateway.log_text().splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("event") == event:
                found.append(entry)
    return found


def assert_no_secrets(gateway: Gateway, webhook: Webhook, *keys: str) -> None:
    for body in webhook.raw:
        for secret in (*keys, UPSTREAM_KEY, ADMIN_TOKEN):
            assert secret.encode() not in body
    assert "Canary" not in gateway.log_text()  # the webhook URL is a secret too


def test_an_error_burst_posts_one_anomaly_alert(
    tmp_path: Path, fake: FakeUpstream, webhook: Webhook
) -> None:
    one_attempt = {"retries": {"max_attempts": 1}, "breaker": {"enabled": False}}
    gw = start(tmp_path / "gw", fake, webhook, one_attempt)
    try:
        gw.cli("partners", "create", "alert-team", "--config", str(gw.config))
        key = gw.create_key("alert-team-app", "--partner", "alert-team")

        # The partner's normal: every request succeeds. One full window makes a baseline.
        assert [ask(gw, key).status for _ in range(8)] == [200] * 8
        time.sleep(WINDOW + 0.2)
        assert webhook.posts == []

        # The upstream fails every request: well above the floor and the baseline.
        fake.script(*[Behaviour(status=500) for _ in range(10)])
        assert [ask(gw, key).status for _ in range(10)] == [500] * 10
        assert wait_until(lambda: len(webhook.posts) >= 1), gw.log_text()[-3000:]
        time.sleep(WINDOW + 0.5)  # long enough for a second post, were there one

        assert len(webhook.posts) == 1, webhook.posts
        (post,) = webhook.of("anomaly.error_rate")
        assert post["sluicegate"]["subject"] == "alert-team"
        assert "anomaly.error_rate" in post["text"] and "alert-team" in post["text"]
        values = post["sluicegate"]["values"]
        assert values["error_rate"] == 1.0 and values["requests"] >= 5
        assert values["baseline"] == 0.0

        # The same alert is in the gateway's log, as a WARNING event.
        (event,) = log_events(gw, "anomaly.error_rate")
        assert event["alert"] == "anomaly.error_rate" and event["level"] == "warning"
        assert event["subject"] == "alert-team"
        assert_no_secrets(gw, webhook, key)
    finally:
        gw.stop()


def test_a_breaker_opening_posts_one_alert(
    tmp_path: Path, fake: FakeUpstream, webhook: Webhook
) -> None:
    cooldown = 1.0
    routing = {
        "retries": {"max_attempts": 1},
        "breaker": {"consecutive_failures": 2, "cooldown": cooldown},
    }
    gw = start(tmp_path / "gw", fake, webhook, routing)
    try:
        key = gw.create_key("breaker-app")
        fake.script(*[Behaviour(status=503) for _ in range(3)])
        assert [ask(gw, key).status for _ in range(2)] == [503, 503]
        assert ask(gw, key).status == 529  # open: refused without an upstream call
        assert wait_until(lambda: len(webhook.of("breaker.opened")) >= 1)

        # After the cool-down the probe fails: open again, a second event in the log, and
        # no second post (the same alert within min_interval).
        time.sleep(cooldown + 0.2)
        assert ask(gw, key).status == 503
        assert wait_until(lambda: len(log_events(gw, "breaker.opened")) == 2)
        time.sleep(0.5)

        (post,) = webhook.of("breaker.opened")
        assert post["sluicegate"]["subject"] == "flaky-east"
        assert post["sluicegate"]["values"]["consecutive_failures"] == 2
        assert "flaky-east" in post["text"]
        assert webhook.of("anomaly.error_rate") == []  # 4 requests: below min_requests
        assert_no_secrets(gw, webhook, key)
    finally:
        gw.stop()

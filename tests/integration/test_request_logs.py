"""The per-request log line (docs/observability.md#logs): one JSON object per request with
names and numbers, the prompt and completion only when ``server.log_bodies`` opts in."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anthropic

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import Gateway, start_gateway

PROMPT = "remember the number 8128"


def request_lines(gateway: Gateway, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5  # request lines are flushed within 0.25 s
    while True:
        lines = [
            json.loads(line)
            for line in gateway.log_text().splitlines()
            if line.startswith("{") and '"event":"request"' in line
        ]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def ask(gateway: Gateway, key: str) -> anthropic.types.Message:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    return client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=32,
        messages=[{"role": "user", "content": PROMPT}],
    )


def test_one_line_per_request_with_names_and_numbers_and_no_body(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    gateway = start_gateway(tmp_path, fake)
    try:
        gateway.cli("partners", "create", "logco", "--config", str(gateway.config))
        key = gateway.create_key("log-app", "--partner", "logco")
        message = ask(gateway, key)
        [line] = request_lines(gateway, 1)
    finally:
        gateway.stop()
    assert line["level"] == "info"
    assert line["request_id"].startswith("req_")
    assert (line["key_name"], line["partner"]) == ("log-app", "logco")
    assert (line["model"], line["deployment"], line["status"]) == (
        "claude-sonnet-4-6", "claude-sonnet-4-6", 200,
    )
    assert line["input_tokens"] == message.usage.input_tokens
    assert line["output_tokens"] == message.usage.output_tokens
    assert line["latency_ms"] > 0 and 0 < line["overhead_ms"] < line["latency_ms"]
    assert "cost_usd" in line and line["attempts"] == 1
    text = json.dumps(line)
    assert PROMPT not in text and "8128" not in text
    assert key not in gateway.log_text()


def test_bodies_are_logged_only_when_opted_in(tmp_path: Path, fake: FakeUpstream) -> None:
    gateway = start_gateway(
        tmp_path,
        fake,
        extra_config={
            "server": {"log_bodies": True, "log_level": "info", "key_sync_interval": 0.5}
        },
    )
    try:
        key = gateway.create_key("debugging")
        message = ask(gateway, key)
        [line] = request_lines(gateway, 1)
    finally:
        gateway.stop()
    assert json.loads(line["request_body"])["messages"][0]["content"] == PROMPT
    answer = json.loads(line["response_body"])
    assert answer["content"][0]["text"] == message.content[0].text  # type: ignore[union-attr]

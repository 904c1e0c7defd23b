"""Governance seen from the outside (docs/governance.md): rate-limit answers on both surfaces
through the official SDKs, partner limits and budgets, budget periods, the soft-threshold
alert, ``sluicegate usage`` and the usage ledger.

Each module runs its own gateway (``sluicegate serve`` in a subprocess, SQLite, in-process
limit backend) against a private fake upstream; only the LLM provider is faked.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import UPSTREAM_KEY, Gateway, start_gateway

FLUSH = 0.2  # ledger.flush_interval of the gateways here: rows land quickly
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
DURATION = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+s)$")
EXPENSIVE = {"input": 100, "output": 100}  # USD per million tokens
USER = [{"role": "user", "content": "hi"}]


# -- helpers shared with test_governance_load.py ------------------------------------------


def anthropic_entry(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "provider": "anthropic",
        "api_base": url,
        "api_key": "os.environ/TEST_UPSTREAM_KEY",
        **extra,
    }


def openai_entry(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "provider": "openai",
        "api_base": url + "/v1",
        "api_key": "os.environ/TEST_UPSTREAM_KEY",
        **extra,
    }


def db_path(gw: Gateway) -> Path:
    return gw.config.parent / "sluicegate.db"


def ledger_rows(gw: Gateway) -> list[dict[str, Any]]:
    with sqlite3.connect(db_path(gw), timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM usage_ledger")]


def wait_ledger(
    gw: Gateway, count: int, timeout: float = 10.0, **where: Any
) -> list[dict[str, Any]]:
    """The ledger rows (those whose columns equal ``where``) once there are ``count`` of
    them (fails after ``timeout``), read again after a few more flush intervals so that
    rows beyond ``count`` show too."""

    def read() -> list[dict[str, Any]]:
        return [r for r in ledger_rows(gw) if all(r[k] == v for k, v in where.items())]

    deadline = time.monotonic() + timeout
    while len(rows := read()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"ledger holds {len(rows)} such rows, expected {count}")
        time.sleep(0.05)
    time.sleep(FLUSH * 3)
    return read()


def create_partner(gw: Gateway, name: str, *args: str) -> str:
    return gw.cli("partners", "create", name, "--config", str(gw.config), *args).stdout.strip()


def private_upstream() -> FakeUpstream:
    fake = FakeUpstream(api_key=UPSTREAM_KEY)
    fake.start_in_thread()
    return fake


def assert_anthropic_budget_error(body: Any, who: str, budget: str, period: str) -> str:
    assert isinstance(body, dict) and body.get("type") == "error", body
    error = body["error"]
    assert error["type"] == "rate_limit_error", body
    message: str = error["message"]
    assert who in message and budget in message and period in message, message
    return message


def next_monday(now: datetime) -> datetime:
    day = (now + timedelta(days=7 - now.weekday())).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    upstream = private_upstream()
    yield upstream
    upstream.stop_thread()


@pytest.fixture(scope="module")
def gw(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(
        tmp_path_factory.mktemp("governance"),
        fake,
        extra_config={
            "ledger": {"flush_interval": FLUSH},
            "budgets": {"soft_threshold": 0.5},
            "prices": {"budget-model": EXPENSIVE, "claude-sonnet-4-6": {"input": 3, "output": 15}},
        },
        model_list=[
            anthropic_entry("claude-sonnet-4-6", fake.url),
            anthropic_entry("budget-model", fake.url),
            openai_entry("gpt-4o-mini", fake.url),
        ],
    )
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def clean_fake(fake: FakeUpstream) -> None:
    fake.reset()


def claude(gw: Gateway, key: str, **kwargs: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, **{"max_retries": 0, **kwargs})


def gpt(gw: Gateway, key: str, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, **{"max_retries": 0, **kwargs})


def assert_reset_rfc3339(value: str | None) -> None:
    assert value is not None and RFC3339.match(value), value
    at = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    ahead = (at - datetime.now(UTC)).total_seconds()
    assert -2 <= ahead <= 63, value


# -- 4. rate-limit answers on both surfaces -------------------------------------------------


def test_anthropic_rpm_headers_and_429(gw: Gateway) -> None:
    key = gw.create_key("rpm-anthropic", "--rpm", "2")
    client = claude(gw, key)
    remaining = []
    for _ in range(2):
        raw = client.messages.with_raw_response.create(
            model="claude-sonnet-4-6", max_tokens=50, messages=USER
        )
        assert raw.status_code == 200
        assert raw.headers["anthropic-ratelimit-requests-limit"] == "2"
        remaining.append(raw.headers["anthropic-ratelimit-requests-remaining"])
        assert_reset_rfc3339(raw.headers.get("anthropic-ratelimit-requests-reset"))
        assert raw.parse().content[0].type == "text"
    assert remaining == ["1", "0"]

    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=USER)
    error = caught.value
    assert error.status_code == 429
    headers = error.response.headers
    assert 1 <= int(headers["retry-after"]) <= 61
    assert headers["anthropic-ratelimit-requests-limit"] == "2"
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert_reset_rfc3339(headers.get("anthropic-ratelimit-requests-reset"))
    assert "x-should-retry" not in headers  # a rate limit passes: retrying is fine
    body = error.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "'rpm-anthropic'" in body["error"]["message"], body
    assert "2 requests per minute" in body["error"]["message"], body


def test_count_tokens_is_not_charged(gw: Gateway, fake: FakeUpstream) -> None:
    key = gw.create_key("rpm-count", "--rpm", "2")
    client = claude(gw, key)
    for _ in range(2):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=USER)
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=USER)
    for _ in range(6):
        counted = client.messages.count_tokens(model="claude-sonnet-4-6", messages=USER)
        assert counted.input_tokens > 0
    assert fake.call_count("count_tokens") == 6
    # ... and counting did not use up anything: still exactly at the limit.
    with pytest.raises(anthropic.RateLimitError):
        client.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=USER)
    assert fake.call_count("messages") == 2


def test_openai_rpm_headers_and_429(gw: Gateway) -> None:
    key = gw.create_key("rpm-openai", "--rpm", "2")
    client = gpt(gw, key)
    remaining = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=USER, max_tokens=50
        )
        assert raw.status_code == 200
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert DURATION.match(raw.headers["x-ratelimit-reset-requests"]), raw.headers
        assert not any(h.startswith("anthropic-ratelimit") for h in raw.headers)
        assert raw.parse().choices[0].message.content
    assert remaining == ["1", "0"]

    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=USER, max_tokens=50)
    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    body = error.response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    assert body["error"]["type"] == "requests"
    assert body["error"]["param"] is None
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert "'rpm-openai'" in body["error"]["message"]
    headers = error.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "2"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert DURATION.match(headers["x-ratelimit-reset-requests"]), headers


def test_partner_rpm_spans_its_keys(gw: Gateway) -> None:
    create_partner(gw, "rpm-team", "--rpm", "3")
    first = claude(gw, gw.create_key("rpm-team-1", "--partner", "rpm-team"))
    second = claude(gw, gw.create_key("rpm-team-2", "--partner", "rpm-team"))
    seen = []
    for client in (first, first, second):
        raw = client.messages.with_raw_response.create(
            model="claude-sonnet-4-6", max_tokens=50, messages=USER
        )
        assert raw.headers["anthropic-ratelimit-requests-limit"] == "3"
        seen.append(raw.headers["anthropic-ratelimit-requests-remaining"])
    assert seen == ["2", "1", "0"]
    for client in (second, first):
        with pytest.raises(anthropic.RateLimitError) as caught:
            client.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=USER)
        message = caught.value.response.json()["error"]["message"]
        assert "partner account ('rpm-team')" in message, message
        assert "3 requests per minute" in message, message
    # Another key, not of that partner, is not affected.
    other = claude(gw, gw.create_key("rpm-outsider", "--rpm", "3"))
    other.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=USER)


def test_unlimited_key_gets_no_ratelimit_headers(gw: Gateway) -> None:
    key = gw.create_key("unlimited")
    raw = claude(gw, key).messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=USER
    )
    assert raw.status_code == 200
    # The fake upstream sends its own anthropic-ratelimit-* headers: none may leak through.
    assert not any("ratelimit" in name for name in raw.headers), dict(raw.headers)
    raw = gpt(gw, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=USER, max_tokens=50
    )
    assert raw.status_code == 200
    assert not any("ratelimit" in name for name in raw.headers), dict(raw.headers)


def test_ledger_row_per_inference_request(gw: Gateway, fake: FakeUpstream) -> None:
    create_partner(gw, "ledger-team")
    key = gw.create_key("ledger-key", "--partner", "ledger-team", "--rpm", "3")
    client = claude(gw, key)
    session, agent = "sess-7f3e2a", "agent-91b4"
    fake.script(Behaviour(usage={"input_tokens": 120, "output_tokens": 30}))
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-6",
        max_tokens=50,
        messages=USER,
        extra_headers={"x-claude-code-session-id": session, "x-claude-code-agent-id": agent},
    )
    ids = {raw.headers["request-id"]: 200}
    fake.script(Behaviour(usage={"input_tokens": 200, "output_tokens": 40}))
    raw = gpt(gw, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=USER, max_tokens=50
    )
    ids[raw.headers["request-id"]] = 200
    stream = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=50, messages=USER, stream=True
    )
    events = [event.type for event in stream]
    assert events[-1] == "message_stop"
    ids[stream.response.headers["request-id"]] = 200
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=USER)
    ids[caught.value.response.headers["request-id"]] = 429
    client.messages.count_tokens(model="claude-sonnet-4-6", messages=USER)

    rows = wait_ledger(gw, 5, key_name="ledger-key")  # 4 inference + count_tokens
    inference = [r for r in rows if r["endpoint"] in ("messages", "chat_completions")]
    assert sorted(r["request_id"] for r in inference) == sorted(ids), rows
    assert all(r["partner_name"] == "ledger-team" for r in rows)
    by_id = {r["request_id"]: r for r in inference}
    for request_id, status in ids.items():
        assert by_id[request_id]["status"] == status

    first, second, streamed, refused = (by_id[i] for i in ids)
    assert first["model"] == "claude-sonnet-4-6" and first["endpoint"] == "messages"
    assert (first["input_tokens"], first["output_tokens"]) == (120, 30)
    assert first["cost_usd"] == pytest.approx((120 * 3 + 30 * 15) / 1e6)
    assert first["client_session_id"] == session and first["client_agent_id"] == agent
    assert not first["stream"]
    assert second["model"] == "gpt-4o-mini" and second["endpoint"] == "chat_completions"
    assert (second["input_tokens"], second["output_tokens"]) == (200, 40)
    assert second["cost_usd"] > 0
    assert second["client_session_id"] is None
    assert streamed["stream"] and streamed["output_tokens"] > 0 and streamed["cost_usd"] > 0
    assert refused["error_type"] == "rate_limit_error"
    assert refused["cost_usd"] == 0 and refused["output_tokens"] == 0
    # count_tokens: at most a free row of its own, never an inference charge.
    others = [r for r in rows if r not in inference]
    assert all(r["endpoint"] == "count_tokens" and r["cost_usd"] == 0 for r in others), others


# -- 5. budgets per partner and periods -----------------------------------------------------


def budget_call(client: anthropic.Anthropic, max_tokens: int = 100) -> int:
    """One request to the expensive model; its status (200 or 429)."""
    try:
        client.messages.create(model="budget-model", max_tokens=max_tokens, messages=USER)
    except anthropic.RateLimitError as error:
        assert error.response.headers["x-should-retry"] == "false"
        return 429
    return 200


def test_partner_budget_is_shared_by_its_keys(gw: Gateway, fake: FakeUpstream) -> None:
    # Each answer costs (50 + 100) * 100 / 1e6 = $0.015; its worst case is a little more.
    fake.script(*[Behaviour(usage={"input_tokens": 50, "output_tokens": 100})] * 50)
    create_partner(gw, "budget-team", "--budget", "0.1", "--budget-period", "monthly")
    first = claude(gw, gw.create_key("budget-team-1", "--partner", "budget-team"))
    second = claude(gw, gw.create_key("budget-team-2", "--partner", "budget-team"))

    statuses = [budget_call(first) for _ in range(10)]
    served = statuses.count(200)
    assert statuses == [200] * served + [429] * (10 - served), statuses
    assert 5 <= served <= 6, statuses  # 0.1 / 0.015, less one worst case
    assert fake.call_count("messages") == served

    with pytest.raises(anthropic.RateLimitError) as caught:
        second.messages.create(model="budget-model", max_tokens=100, messages=USER)
    error = caught.value
    assert error.response.headers["x-should-retry"] == "false"
    message = assert_anthropic_budget_error(
        error.response.json(), "partner 'budget-team'", "$0.10", "monthly"
    )
    assert f"has used ${served * 0.015:.2f}" in message, message
    retry_after = int(error.response.headers["retry-after"])
    now = datetime.now(UTC)
    month_end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    assert abs(retry_after - (month_end - now).total_seconds()) < 5
    assert fake.call_count("messages") == served

    # The soft threshold ($0.05) was crossed and passed again by later settles: one alert.
    spent_after = [0.015 * (i + 1) for i in range(served)]
    assert sum(s >= 0.05 for s in spent_after) >= 2
    alerts = [line for line in gw.log_text().splitlines() if "budget.soft_threshold" in line]
    assert len(alerts) == 1, alerts

    # The ledger agrees, and so does `sluicegate usage --json`.
    team = wait_ledger(gw, 11, partner_name="budget-team")
    spent = sum(r["cost_usd"] for r in team)
    assert spent == pytest.approx(served * 0.015)
    assert spent <= 0.1
    report = gw.cli("usage", "--config", str(gw.config), "--json", "--partner", "budget-team")
    totals = json.loads(report.stdout)["totals"]
    assert totals["requests"] == len(team)
    assert totals["errors"] == sum(r["status"] >= 400 for r in team)
    assert totals["cost_usd"] == pytest.approx(spent, abs=1e-9)
    assert totals["input_tokens"] == sum(r["input_tokens"] for r in team)
    assert totals["output_tokens"] == sum(r["output_tokens"] for r in team)

    # The alert must say which budget crossed its threshold (scope, spend, limit, period).
    alert = json.loads(alerts[0])
    assert alert.get("alert") == "budget.soft_threshold", alert
    assert "budget-team" in str(alert.get("scope")), alert
    assert alert.get("limit_usd") == pytest.approx(0.1), alert
    assert alert.get("period") == "monthly", alert


def test_budget_periods(gw: Gateway, fake: FakeUpstream) -> None:
    fake.script(*[Behaviour(usage={"input_tokens": 50, "output_tokens": 100})] * 20)
    now = datetime.now(UTC)
    # total: "lifetime", no retry-after (waiting never helps)
    lifetime = claude(
        gw, gw.create_key("budget-total", "--budget", "0.02", "--budget-period", "total")
    )
    assert budget_call(lifetime) == 200
    with pytest.raises(anthropic.RateLimitError) as caught:
        lifetime.messages.create(model="budget-model", max_tokens=100, messages=USER)
    headers = caught.value.response.headers
    assert headers["x-should-retry"] == "false"
    assert "retry-after" not in headers
    message = assert_anthropic_budget_error(
        caught.value.response.json(), "key 'budget-total'", "$0.02", "lifetime"
    )
    assert "resets" not in message

    # weekly: resets next Monday 00:00 UTC
    weekly = claude(
        gw, gw.create_key("budget-weekly", "--budget", "0.02", "--budget-period", "weekly")
    )
    assert budget_call(weekly) == 200
    with pytest.raises(anthropic.RateLimitError) as caught:
        weekly.messages.create(model="budget-model", max_tokens=100, messages=USER)
    message = assert_anthropic_budget_error(
        caught.value.response.json(), "key 'budget-weekly'", "$0.02", "weekly"
    )
    monday = next_monday(now)
    assert f"It resets at {monday:%Y-%m-%dT%H:%M:%SZ}." in message, message
    retry_after = int(caught.value.response.headers["retry-after"])
    assert abs(retry_after - (monday - datetime.now(UTC)).total_seconds()) < 5

    # daily on the OpenAI surface: insufficient_quota / budget_exceeded, retry-after to midnight
    key = gw.create_key("budget-daily", "--budget", "0.02", "--budget-period", "daily")
    assert budget_call(claude(gw, key)) == 200
    with pytest.raises(openai.RateLimitError) as caught_oa:
        gpt(gw, key).chat.completions.create(model="budget-model", messages=USER, max_tokens=100)
    error = caught_oa.value
    assert error.code == "budget_exceeded"
    body = error.response.json()["error"]
    assert body["type"] == "insufficient_quota" and body["code"] == "budget_exceeded"
    assert "key 'budget-daily'" in body["message"] and "daily" in body["message"]
    assert error.response.headers["x-should-retry"] == "false"
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    retry_after = int(error.response.headers["retry-after"])
    assert abs(retry_after - (midnight - datetime.now(UTC)).total_seconds()) < 5


def test_budget_survives_a_restart(
    gw: Gateway, fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Counters are seeded from the ledger at start-up: a spent budget stays spent."""
    fake.script(*[Behaviour(usage={"input_tokens": 50, "output_tokens": 100})] * 20)
    key = gw.create_key("budget-restart", "--budget", "0.02", "--budget-period", "monthly")
    assert budget_call(claude(gw, key)) == 200
    assert budget_call(claude(gw, key)) == 429
    wait_ledger(gw, 2, key_name="budget-restart")
    second = start_gateway(
        tmp_path_factory.mktemp("governance-restart"),
        fake,
        extra_config={
            "database_url": f"sqlite:///{db_path(gw)}",  # the same database, a new process
            "ledger": {"flush_interval": FLUSH},
            "prices": {"budget-model": EXPENSIVE},
        },
        model_list=[anthropic_entry("budget-model", fake.url)],
    )
    try:
        calls = fake.call_count("messages")
        assert budget_call(claude(second, key)) == 429
        assert fake.call_count("messages") == calls
    finally:
        second.stop()


def test_usage_json_totals_equal_the_ledger(gw: Gateway) -> None:
    rows = wait_ledger(gw, 1)
    done = gw.cli("usage", "--config", str(gw.config), "--json", "--by", "key")
    report = json.loads(done.stdout)
    totals = report["totals"]
    assert totals["requests"] == len(rows)
    assert totals["errors"] == sum(r["status"] >= 400 for r in rows)
    for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
        assert totals[name] == sum(r[name] for r in rows), name
    assert totals["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows), abs=1e-9)
    assert totals["cost_usd"] > 0
    per_key: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        per_key.setdefault(r["key_name"], []).append(r)
    assert {row["key"] for row in report["rows"]} == set(per_key)
    for row in report["rows"]:
        mine = per_key[row["key"]]
        assert row["requests"] == len(mine), row
        assert row["cost_usd"] == pytest.approx(sum(r["cost_usd"] for r in mine), abs=1e-9)

"""Governance under load, through the real gateway (``sluicegate serve`` subprocess, SQLite,
in-process limit backend) and a private fake upstream:

* a hard budget holds under 200 concurrent requests, and the SDKs do not retry its 429;
* weighted-fair admission to a saturated deployment gives partners 1:3 shares;
* the usage ledger is complete after SIGTERM under load.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from sluicegate.observe.cost import Price, PriceBook
from sluicegate.policy.estimate import estimate_input_tokens
from tests.gateway_harness import Gateway, start_gateway
from tests.integration.test_governance import (
    EXPENSIVE,
    FLUSH,
    anthropic_entry,
    create_partner,
    ledger_rows,
    openai_entry,
    private_upstream,
    wait_ledger,
)

HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    upstream = private_upstream()
    yield upstream
    upstream.stop_thread()


@dataclass
class Answer:
    status: int | None  # None: no status line (connection refused or dropped)
    headers: dict[str, str]
    body: bytes
    done_at: float
    error: str | None = None


async def post(
    session: aiohttp.ClientSession, url: str, key: str, raw: bytes, path: str = "/v1/messages"
) -> Answer:
    try:
        async with session.post(
            url + path, data=raw, headers={**HEADERS, "x-api-key": key}
        ) as response:
            status, headers = response.status, {k.lower(): v for k, v in response.headers.items()}
            try:
                body = await response.read()
            except aiohttp.ClientError as exc:
                return Answer(status, headers, b"", time.monotonic(), repr(exc))
            return Answer(status, headers, body, time.monotonic())
    except aiohttp.ClientError as exc:
        return Answer(None, {}, b"", time.monotonic(), repr(exc))


async def cli(*calls: tuple[Any, ...]) -> list[str]:
    """Run blocking CLI helpers concurrently (each CLI command is its own process)."""
    results = await asyncio.gather(*(asyncio.to_thread(*call) for call in calls))
    return list(results)


def new_session(limit: int = 0) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=60),
    )


async def warm_up(session: aiohttp.ClientSession, gw: Gateway, key: str, model: str) -> str:
    """Let the gateway load a new key with an uncharged request (count_tokens)."""
    raw = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
    answer = await post(session, gw.url, key, raw, "/v1/messages/count_tokens")
    assert answer.status == 200, answer
    return answer.headers["request-id"]


# -- 1. hard budget under concurrency ---------------------------------------------------------


async def test_hard_budget_holds_under_concurrency(tmp_path: Path, fake: FakeUpstream) -> None:
    gw = start_gateway(
        tmp_path,
        fake,
        extra_config={
            "ledger": {"flush_interval": FLUSH},
            "prices": {
                "budget-model": EXPENSIVE,
                "budget-gpt": EXPENSIVE,
                "free-model": {"input": 0, "output": 0},
            },
        },
        model_list=[
            anthropic_entry("budget-model", fake.url),
            anthropic_entry("free-model", fake.url),
            openai_entry("budget-gpt", fake.url),
        ],
    )
    try:
        key, free_key = await cli(
            (gw.create_key, "budget-load", "--budget", "0.5", "--budget-period", "daily"),
            (gw.create_key, "no-budget"),
        )
        payload = {
            "model": "budget-model",
            "max_tokens": 1000,
            "messages": [{"role": "user", "content": "How much does this cost?"}],
        }
        raw = json.dumps(payload).encode()
        # The worst case the gateway holds per request: input estimate at the dearest input
        # rate (1h cache write, 2x) plus max_tokens at the output rate.
        worst = PriceBook.worst_case_nano(
            Price.of(100, 100), estimate_input_tokens(raw, payload), 1000
        )
        worst_usd = worst / 1e9
        assert worst_usd <= 1000 * 100 / 1e6 * 1.1
        actual_usd = (50 * 100 + 1000 * 100) / 1e6  # what each answer reports
        fake.script(
            *[
                Behaviour(
                    delay_before_headers=0.05, usage={"input_tokens": 50, "output_tokens": 1000}
                )
            ]
            * 200
        )
        async with new_session() as session:
            warm = await warm_up(session, gw, key, "budget-model")
            answers = await asyncio.gather(*(post(session, gw.url, key, raw) for _ in range(200)))
        statuses = Counter(a.status for a in answers)
        served, refused = statuses[200], statuses[429]
        assert served + refused == 200, statuses
        assert refused > 0 and served > 0, statuses
        for answer in answers:
            if answer.status != 429:
                continue
            assert answer.headers["x-should-retry"] == "false"
            body = json.loads(answer.body)
            assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
            message = body["error"]["message"]
            assert "key 'budget-load'" in message and "$0.50" in message, message
            assert "daily" in message, message
        assert fake.call_count("messages") == served

        rows = wait_ledger(gw, 201)
        assert len(rows) == 201
        ids = {a.headers["request-id"] for a in answers} | {warm}
        assert {r["request_id"] for r in rows} == ids
        spent = sum(r["cost_usd"] for r in rows)
        assert spent == pytest.approx(served * actual_usd)
        print(
            f"\nbudget: {served} served, {refused} refused; spent ${spent:.4f} of $0.50 "
            f"(worst case per request ${worst_usd:.4f})"
        )
        assert spent <= 0.5 + worst_usd
        assert spent <= 0.5 + 1000 * 100 / 1e6 * 1.1

        # The official SDKs retry 429 twice by default; x-should-retry: false stops them.
        calls = fake.call_count()
        claude = anthropic.AsyncAnthropic(base_url=gw.url, api_key=key)
        with pytest.raises(anthropic.RateLimitError) as caught:
            await claude.messages.create(**payload)  # type: ignore[call-overload]
        assert caught.value.response.headers["x-should-retry"] == "false"
        assert caught.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        rows = wait_ledger(gw, 202)
        assert len(rows) == 202, "the anthropic SDK retried a budget refusal"
        assert fake.call_count() == calls

        gpt = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=key)
        with pytest.raises(openai.RateLimitError) as caught_oa:
            await gpt.chat.completions.create(
                model="budget-gpt", max_tokens=1000, messages=[{"role": "user", "content": "hi"}]
            )
        error = caught_oa.value
        assert error.status_code == 429 and error.code == "budget_exceeded"
        body = error.response.json()
        assert body["error"]["code"] == "budget_exceeded", body
        assert body["error"]["param"] is None, body
        assert "key 'budget-load'" in body["error"]["message"], body
        rows = wait_ledger(gw, 203)
        assert len(rows) == 203, "the openai SDK retried a budget refusal"
        assert [r["endpoint"] for r in rows].count("chat_completions") == 1
        assert fake.call_count() == calls

        # A zero-priced model is never blocked by a spent budget ...
        free = await claude.with_options(max_retries=0).messages.create(
            model="free-model", max_tokens=1000, messages=[{"role": "user", "content": "hi"}]
        )
        assert free.content
        # ... and a key without a budget is never blocked by one.
        unbudgeted = anthropic.AsyncAnthropic(base_url=gw.url, api_key=free_key, max_retries=0)
        paid = await unbudgeted.messages.create(**payload)  # type: ignore[call-overload]
        assert paid.content
        rows = wait_ledger(gw, 205)
        by_model = {r["model"]: r for r in rows if r["status"] == 200}
        assert by_model["free-model"]["cost_usd"] == 0
        assert fake.call_count() == calls + 2
        await claude.close()
        await unbudgeted.close()
        await gpt.close()
    finally:
        gw.stop()


# -- 2. fair admission 1:3 ---------------------------------------------------------------------


async def test_fair_admission_follows_partner_weights(tmp_path: Path, fake: FakeUpstream) -> None:
    gw = start_gateway(
        tmp_path,
        fake,
        extra_config={
            "ledger": {"flush_interval": FLUSH},
            "limits": {"queue": {"max_wait": 30}},
        },
        model_list=[anthropic_entry("fair-model", fake.url, limits={"max_parallel": 2})],
    )
    try:
        await cli(
            (create_partner, gw, "light", "--weight", "1"),
            (create_partner, gw, "heavy", "--weight", "3"),
        )
        key_a, key_b = await cli(
            (gw.create_key, "light-key", "--partner", "light"),
            (gw.create_key, "heavy-key", "--partner", "heavy"),
        )
        fake.script(*[Behaviour(delay_before_headers=0.05)] * 2000)
        raw = json.dumps(
            {
                "model": "fair-model",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": "x"}],
            }
        ).encode()
        results: dict[str, list[Answer]] = {"A": [], "B": []}
        async with new_session() as session:
            for key in (key_a, key_b):
                await warm_up(session, gw, key, "fair-model")
            start = time.monotonic()
            window_end = start + 6.0

            async def hammer(partner: str, key: str) -> None:
                while time.monotonic() < window_end:
                    results[partner].append(await post(session, gw.url, key, raw))

            await asyncio.gather(
                *(hammer("A", key_a) for _ in range(16)), *(hammer("B", key_b) for _ in range(16))
            )
        for partner, answers in results.items():
            bad = [a for a in answers if a.status != 200]
            assert not bad, (partner, bad[:3])
        in_window = {p: sum(a.done_at <= window_end for a in results[p]) for p in results}
        total = {p: len(results[p]) for p in results}
        ratio = in_window["B"] / in_window["A"]
        print(
            f"\nfair admission over 6 s: served A={in_window['A']} B={in_window['B']} "
            f"(B/A = {ratio:.2f}); with the drain after the window A={total['A']} "
            f"B={total['B']}; upstream calls {fake.call_count('messages')}"
        )
        assert 2.4 <= ratio <= 3.6
        assert fake.call_count("messages") == total["A"] + total["B"]
    finally:
        gw.stop()


# -- 3. ledger complete after SIGTERM under load ---------------------------------------------


async def test_ledger_is_complete_after_sigterm(tmp_path: Path, fake: FakeUpstream) -> None:
    gw = start_gateway(
        tmp_path,
        fake,
        extra_config={"ledger": {"flush_interval": 5}},
        model_list=[anthropic_entry("claude-sonnet-4-6", fake.url)],
    )
    try:
        key = gw.create_key("sigterm-load")
        fake.script(*[Behaviour(delay_before_headers=0.2, chunk_delay=0.02)] * 3000)
        bodies = [
            json.dumps(
                {
                    "model": "claude-sonnet-4-6",
                    "max_tokens": 50,
                    "stream": stream,
                    "messages": [{"role": "user", "content": "count to three"}],
                }
            ).encode()
            for stream in (False, True)
        ]
        answers: list[tuple[bool, Answer]] = []
        async with new_session() as session:
            warm = await warm_up(session, gw, key, "claude-sonnet-4-6")

            async def client(n: int) -> None:
                i = n
                while True:
                    stream = i % 2 == 1
                    i += 1
                    answer = await post(session, gw.url, key, bodies[stream])
                    answers.append((stream, answer))
                    if answer.status is None:
                        return  # the gateway stopped listening (or dropped the connection)

            loops = [asyncio.create_task(client(n)) for n in range(40)]
            await asyncio.sleep(3.0)
            gw.process.terminate()  # every loop has a request in flight now
            terminated = time.monotonic()
            _, pending = await asyncio.wait(loops, timeout=20)
            assert not pending, "clients still waiting 20 s after SIGTERM"
        code = await asyncio.to_thread(gw.process.wait, 20)
        exit_seconds = time.monotonic() - terminated

        responded = [(s, a) for s, a in answers if a.status is not None]
        after_term = [a for _, a in responded if a.done_at > terminated]
        for stream, answer in responded:
            assert "request-id" in answer.headers, answer
            assert answer.error is None, answer  # every started body completed
            if stream and answer.status == 200:
                assert b"event: message_stop" in answer.body, answer.body[-300:]
        statuses = Counter(a.status for _, a in responded)
        rows = ledger_rows(gw)
        ledger_ids = [r["request_id"] for r in rows]
        response_ids = [a.headers["request-id"] for _, a in responded]
        missing = set(response_ids) - set(ledger_ids)
        print(
            f"\nSIGTERM: {len(responded)} responses ({dict(statuses)}), {len(after_term)} "
            f"completed after SIGTERM, "
            f"{len(answers) - len(responded)} refused connections; ledger rows {len(rows)}; "
            f"missing {len(missing)}; exit in {exit_seconds:.2f} s"
        )
        assert not missing, sorted(missing)[:5]
        assert after_term, "no request was in flight at SIGTERM"
        assert len(ledger_ids) == len(set(ledger_ids))
        assert sorted(ledger_ids) == sorted([*response_ids, warm])
        by_id = {r["request_id"]: r for r in rows}
        for stream, answer in responded:
            row = by_id[answer.headers["request-id"]]
            assert row["status"] == answer.status and bool(row["stream"]) == stream
        assert "Application shutdown complete" in gw.log_text()
        # A graceful stop on SIGTERM is a success: exit status 0, not "killed by SIGTERM".
        assert code == 0, f"exit status {code} after a clean shutdown"
    finally:
        if gw.process.poll() is None:
            gw.stop()

"""Rate limits held by real gateway processes sharing a real Redis (and PostgreSQL).

Nothing inside the gateway is mocked: each gateway is ``sluicegate serve`` in a subprocess,
keys come from the CLI, limits live in Redis, and only the LLM provider is faked (a private
FakeUpstream per test). Isolation: a claimed, flushed logical database of the Redis on
127.0.0.1:6379, or a private ``redis-server`` that the test kills and restarts; a fresh
PostgreSQL database for the multi-process tests. Tests skip when Redis or PostgreSQL is
absent, unless CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import UPSTREAM_KEY, Gateway, start_gateway
from tests.redis_harness import claim_redis_db, postgres_database, redis_server

MODEL = "claude-sonnet-4-6"
MESSAGE = {"role": "user", "content": "Say hello."}
TIMEOUT = aiohttp.ClientTimeout(total=30)

pytestmark = pytest.mark.postgres


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    """A private fake provider: its script and call log belong to this test alone."""
    fake = FakeUpstream(api_key=UPSTREAM_KEY)
    fake.start_in_thread()
    yield fake
    fake.stop_thread()


def model_list(upstream: FakeUpstream) -> list[dict[str, object]]:
    return [
        {
            "model_name": MODEL,
            "provider": "anthropic",
            "api_base": upstream.url,
            "api_key": "os.environ/TEST_UPSTREAM_KEY",
        }
    ]


@contextlib.contextmanager
def gateways(
    workdir: Path, upstream: FakeUpstream, count: int, config: Mapping[str, object]
) -> Iterator[list[Gateway]]:
    """``count`` gateway processes with the same settings (each its own config file)."""
    started: list[Gateway] = []
    try:
        for index in range(count):
            started.append(
                start_gateway(
                    workdir / f"gateway-{index}",
                    upstream,
                    extra_config=dict(config),
                    model_list=model_list(upstream),
                )
            )
        yield started
    finally:
        for gateway in started:
            gateway.stop()


def anthropic_headers(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


def message_body(max_tokens: int = 16) -> dict[str, Any]:
    return {"model": MODEL, "max_tokens": max_tokens, "messages": [MESSAGE]}


async def wait_for_key(session: aiohttp.ClientSession, gateway: Gateway, key: str) -> None:
    """Until ``gateway`` knows ``key`` (key sync); GET /v1/models is never rate limited."""
    deadline = time.monotonic() + 15
    while True:
        async with session.get(
            f"{gateway.url}/v1/models", headers=anthropic_headers(key)
        ) as response:
            await response.read()
            if response.status == 200:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{gateway.url} never accepted the key:\n{gateway.log_text()}")
        await asyncio.sleep(0.1)


async def post_message(
    session: aiohttp.ClientSession, gateway: Gateway, key: str, max_tokens: int = 16
) -> tuple[int, dict[str, Any], Mapping[str, str]]:
    async with session.post(
        f"{gateway.url}/v1/messages", json=message_body(max_tokens), headers=anthropic_headers(key)
    ) as response:
        body = await response.json(content_type=None)
        return response.status, body, response.headers


def max_in_window(times: list[float], width: float) -> int:
    """The largest number of ``times`` inside any half-open interval [t, t + width)."""
    ordered = sorted(times)
    best = start = 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - width:
            start += 1
        best = max(best, end - start + 1)
    return best


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (an end before a start at a tie)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


# ---------------------------------------------------------------------------------------------
# 1. One global RPM limit across two processes, over more than a minute of load.
# ---------------------------------------------------------------------------------------------

RPM = 600
LOAD_SECONDS = 65.0
CLIENT_LOOPS = 16


async def test_two_gateways_sharing_redis_hold_one_global_rpm_over_a_minute(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    # THE MINUTE-LONG TEST: 65 s of load (about 70 s in all). The client loops stop by
    # themselves at LOAD_SECONDS.
    with claim_redis_db() as redis_url:
        async with postgres_database(tmp_path / "pg") as database_url:
            config = {
                "database_url": database_url,
                "redis_url": redis_url,
                "limits": {"global": {"rpm": RPM}, "queue": {"max_wait": 0.2}},
            }
            with gateways(tmp_path, upstream, 2, config) as (first, second):
                key = first.create_key("load")
                connector = aiohttp.TCPConnector(limit=0)
                async with aiohttp.ClientSession(timeout=TIMEOUT, connector=connector) as session:
                    for gateway in (first, second):
                        await wait_for_key(session, gateway, key)
                    upstream.reset()
                    admitted: list[float] = []
                    statuses: Counter[int] = Counter()
                    per_gateway: Counter[str] = Counter()
                    started = time.time()
                    stop_at = time.monotonic() + LOAD_SECONDS

                    async def client_loop(gateway: Gateway) -> None:
                        url = f"{gateway.url}/v1/messages"
                        while time.monotonic() < stop_at:
                            async with session.post(
                                url, json=message_body(), headers=anthropic_headers(key)
                            ) as response:
                                await response.read()
                                statuses[response.status] += 1
                                if response.status == 200:
                                    admitted.append(time.time())
                                    per_gateway[gateway.url] += 1
                                elif response.status != 429:
                                    await asyncio.sleep(0.05)  # not a hot loop on surprises

                    await asyncio.gather(
                        *(client_loop((first, second)[i % 2]) for i in range(CLIENT_LOOPS))
                    )
                forwarded = upstream.call_count("messages")
                logs = first.log_text() + second.log_text()

    in_first_minute = sum(1 for at in admitted if at < started + 60)
    busiest_minute = max_in_window(admitted, 60.0)
    print(
        f"\n[global rpm {RPM}, 2 gateways, {CLIENT_LOOPS} client loops, {LOAD_SECONDS:.0f} s]"
        f" statuses={dict(statuses)} admitted_total={len(admitted)}"
        f" admitted_first_60s={in_first_minute} max_any_60s_window={busiest_minute}"
        f" forwarded_upstream={forwarded} admitted_per_gateway={sorted(per_gateway.values())}"
    )
    assert statuses[429] > 0, "the load never reached the limit"
    assert len(per_gateway) == 2, "both processes admitted requests from the shared limit"
    assert busiest_minute <= RPM * 1.02, f"{busiest_minute} admitted within 60 s (limit {RPM})"
    assert in_first_minute >= 0.9 * RPM, f"only {in_first_minute} admitted in the first minute"
    assert forwarded == len(admitted), "every admitted request was forwarded, and only those"
    # Last, so the limit figures above are checked even when this fails: a saturated shared
    # limit answers 429, never 500 (see test_saturated_shared_limit_refuses_and_never_errors).
    assert set(statuses) <= {200, 429}, (dict(statuses), _internal_errors(logs))


def _internal_errors(logs: str) -> list[str]:
    return [line[:1500] for line in logs.splitlines() if "internal error" in line][:3]


# ---------------------------------------------------------------------------------------------
# 1b. A saturated shared limit with short waits: many queue time-outs and arrivals at once.
# ---------------------------------------------------------------------------------------------


async def test_saturated_shared_limit_refuses_and_never_errors(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    # Requests waiting in the fair queue give up after 2 ms while others keep arriving: each
    # must be admitted or refused with 429. About 3 s of load.
    loops, seconds = 32, 3.0
    with claim_redis_db() as redis_url:
        config = {
            "redis_url": redis_url,
            "limits": {"global": {"rpm": 1}, "queue": {"max_wait": 0.002}},
        }
        with gateways(tmp_path, upstream, 1, config) as (gateway,):
            key = gateway.create_key("saturating")
            statuses: Counter[int] = Counter()
            connector = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(timeout=TIMEOUT, connector=connector) as session:
                await wait_for_key(session, gateway, key)
                stop_at = time.monotonic() + seconds

                async def client_loop() -> None:
                    while time.monotonic() < stop_at:
                        status, _, _ = await post_message(session, gateway, key)
                        statuses[status] += 1

                await asyncio.gather(*(client_loop() for _ in range(loops)))
            logs = gateway.log_text()
    print(f"\n[global rpm 1, max_wait 2 ms, {loops} client loops] statuses={dict(statuses)}")
    assert statuses[200] == 1
    assert statuses[429] > 0
    assert set(statuses) == {200, 429}, (dict(statuses), _internal_errors(logs))


# ---------------------------------------------------------------------------------------------
# 2. Redis down: fail open (per-process limits) vs fail closed (503), then recovery.
# ---------------------------------------------------------------------------------------------


def sdk(gateway: Gateway, key: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=gateway.url, api_key=key, max_retries=0)


async def sdk_message(client: anthropic.AsyncAnthropic, max_tokens: int = 16) -> Any:
    """One request through the official SDK; returns its raw response (headers) on 200."""
    return await client.messages.with_raw_response.create(
        model=MODEL, max_tokens=max_tokens, messages=[{"role": "user", "content": "Say hello."}]
    )


async def use_up_rpm(client: anthropic.AsyncAnthropic, rpm: int) -> anthropic.RateLimitError:
    """``rpm`` requests pass, the next is refused: returns that refusal."""
    for n in range(rpm):
        raw = await sdk_message(client)
        assert raw.status_code == 200
        assert raw.headers["anthropic-ratelimit-requests-limit"] == str(rpm)
        assert raw.headers["anthropic-ratelimit-requests-remaining"] == str(rpm - n - 1)
    with pytest.raises(anthropic.RateLimitError) as refused:
        await sdk_message(client)
    return refused.value


def assert_rpm_refusal(error: anthropic.RateLimitError, rpm: int) -> None:
    assert error.status_code == 429
    body = error.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert f"{rpm} requests per minute" in body["error"]["message"]
    headers = error.response.headers
    assert 0 < float(headers["retry-after"]) <= 61
    assert headers["anthropic-ratelimit-requests-limit"] == str(rpm)
    assert headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")


async def readiness(session: aiohttp.ClientSession, gateway: Gateway) -> tuple[int, Any]:
    async with session.get(f"{gateway.url}/health/readiness") as response:
        return response.status, await response.json()


async def until_status(
    session: aiohttp.ClientSession, gateway: Gateway, key: str, wanted: int, within: float
) -> float:
    """Poll with one request at a time until one answers ``wanted``; returns seconds taken."""
    started = time.monotonic()
    seen: list[int] = []
    while time.monotonic() - started < within:
        status, _, _ = await post_message(session, gateway, key)
        if status == wanted:
            return time.monotonic() - started
        seen.append(status)
        await asyncio.sleep(0.2)
    raise AssertionError(f"never {wanted} within {within} s (saw {Counter(seen)})")


async def test_redis_outage_fails_open_or_closed_and_recovers(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    rpm = 5
    with redis_server(tmp_path / "redis") as server:
        shared = {"redis_url": server.url}
        with (
            gateways(
                tmp_path / "open", upstream, 1, {**shared, "limits": {"on_redis_failure": "open"}}
            ) as (fail_open,),
            gateways(
                tmp_path / "closed",
                upstream,
                1,
                {**shared, "limits": {"on_redis_failure": "closed"}},
            ) as (fail_closed,),
        ):
            key_open = fail_open.create_key("open-key", "--rpm", str(rpm))
            key_closed = fail_closed.create_key("closed-key", "--rpm", str(rpm))
            async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
                await wait_for_key(session, fail_open, key_open)
                await wait_for_key(session, fail_closed, key_closed)
                client_open = sdk(fail_open, key_open)
                client_closed = sdk(fail_closed, key_closed)

                # Redis up: both enforce the key's rpm, counted in Redis.
                assert_rpm_refusal(await use_up_rpm(client_open, rpm), rpm)
                assert_rpm_refusal(await use_up_rpm(client_closed, rpm), rpm)
                windows = server.client().keys("sg:v1:*:w:key:*")
                assert len(windows) == 2, windows  # one window per key, in Redis

                server.kill()

                # Fail open: a fresh in-process window admits rpm more, then refuses.
                refusal = await use_up_rpm(client_open, rpm)
                assert_rpm_refusal(refusal, rpm)

                # Fail closed: 503 api_error on both surfaces, nothing about the store leaks.
                with pytest.raises(anthropic.APIStatusError) as unavailable:
                    await sdk_message(client_closed)
                error = unavailable.value
                assert isinstance(error, anthropic.InternalServerError)
                assert error.status_code == 503
                assert isinstance(error.body, dict)
                assert error.body["type"] == "error"
                assert error.body["error"]["type"] == "api_error"
                assert set(error.body["error"]) == {"type", "message"}
                raw = error.response.text
                for secret in (
                    "redis",
                    str(server.port),
                    "127.0.0.1",
                    UPSTREAM_KEY,
                    key_closed,
                ):
                    assert secret.lower() not in raw.lower(), raw

                async with session.post(
                    f"{fail_closed.url}/v1/chat/completions",
                    json={"model": MODEL, "max_tokens": 16, "messages": [MESSAGE]},
                    headers={"authorization": f"Bearer {key_closed}"},
                ) as response:
                    assert response.status == 503
                    openai_body = await response.json()
                assert set(openai_body) == {"error"}
                assert set(openai_body["error"]) == {"message", "type", "param", "code"}
                assert openai_body["error"]["type"] == "server_error"  # OpenAI's 5xx type
                assert openai_body["error"]["code"] == "limits_unavailable"
                assert "redis" not in json.dumps(openai_body).lower()
                # Nothing was forwarded while closed.
                assert upstream.call_count("messages") == 3 * rpm
                assert upstream.call_count("chat_completions") == 0

                status, body = await readiness(session, fail_closed)
                assert (status, body["status"], body["checks"]["redis"]) == (
                    503,
                    "not ready",
                    "unreachable",
                )
                status, body = await readiness(session, fail_open)
                assert (status, body["status"], body["checks"]["redis"]) == (
                    200,
                    "ready",
                    "unreachable",
                )

                # Redis back on the same port (empty: no persistence): both serve from it.
                server.start()
                closed_back = await until_status(session, fail_closed, key_closed, 200, 10)
                # The open gateway's in-process window is full for a minute: a 200 now
                # means it counts in Redis again.
                open_back = await until_status(session, fail_open, key_open, 200, 10)
                print(
                    f"\n[redis outage] fail-closed back after {closed_back:.2f} s,"
                    f" fail-open back on Redis after {open_back:.2f} s"
                )
                assert len(server.client().keys("sg:v1:*:w:key:*")) == 2
                for gateway in (fail_open, fail_closed):
                    status, body = await readiness(session, gateway)
                    assert (status, body["checks"]["redis"]) == (200, "ok"), body
            outage_warnings = fail_open.log_text().count("using in-process limits")
            assert outage_warnings == 1, fail_open.log_text()[-4000:]


# ---------------------------------------------------------------------------------------------
# 3. A key's concurrency limit across two processes.
# ---------------------------------------------------------------------------------------------


async def test_max_parallel_holds_across_two_gateways(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    parallel, delay, burst = 3, 0.3, 20
    with claim_redis_db() as redis_url:
        async with postgres_database(tmp_path / "pg") as database_url:
            config = {"database_url": database_url, "redis_url": redis_url}
            with gateways(tmp_path, upstream, 2, config) as pair:
                key = pair[0].create_key("parallel", "--max-parallel", str(parallel))
                async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
                    for gateway in pair:
                        await wait_for_key(session, gateway, key)
                        status, _, _ = await post_message(session, gateway, key)  # warm up
                        assert status == 200
                    upstream.reset()
                    upstream.script(*[Behaviour(delay_before_headers=delay)] * (2 * burst))
                    answers = await asyncio.gather(
                        *(post_message(session, pair[i % 2], key) for i in range(burst))
                    )
                    calls = upstream.calls
                    # Leases are freed on settle: a second wave of `parallel` all passes.
                    second = await asyncio.gather(
                        *(post_message(session, pair[i % 2], key) for i in range(parallel))
                    )

    statuses = Counter(status for status, _, _ in answers)
    in_flight = max_overlap([(call.at, call.at + delay) for call in calls])
    print(
        f"\n[max_parallel {parallel}, 2 gateways, {burst} concurrent]"
        f" statuses={dict(statuses)} max_in_flight_at_upstream={in_flight}"
    )
    assert set(statuses) <= {200, 429}, answers
    assert in_flight <= parallel, f"{in_flight} requests in flight at once"
    assert in_flight == parallel, "the limit admits up to max_parallel at once"
    assert len(calls) == statuses[200]
    first_window = [c for c in calls if c.at < min(c.at for c in calls) + delay]
    assert len(first_window) <= parallel
    for status, body, headers in answers:
        if status == 429:
            assert body["error"]["type"] == "rate_limit_error"
            assert f"{parallel} concurrent requests" in body["error"]["message"], body
            assert "retry-after" in headers
    assert [status for status, _, _ in second] == [200] * parallel


# ---------------------------------------------------------------------------------------------
# 4. Tokens per minute: the reservation is corrected to the reported usage.
# ---------------------------------------------------------------------------------------------


async def test_token_limit_settles_with_actual_usage(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    tpm, max_tokens, used, passes = 2000, 900, 20, 12
    with (
        claim_redis_db() as redis_url,
        gateways(tmp_path, upstream, 1, {"redis_url": redis_url}) as (gateway,),
    ):
        key = gateway.create_key("tokens", "--tpm", str(tpm))
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            await wait_for_key(session, gateway, key)
        client = sdk(gateway, key)
        upstream.script(*[Behaviour(usage={"input_tokens": 10, "output_tokens": 10})] * passes)
        remaining: list[int] = []
        for _ in range(passes):
            raw = await sdk_message(client, max_tokens)
            assert raw.status_code == 200
            assert raw.headers["anthropic-ratelimit-tokens-limit"] == str(tpm)
            remaining.append(int(raw.headers["anthropic-ratelimit-tokens-remaining"]))
        # One request reporting far more than it reserved: the correction goes up too.
        upstream.script(Behaviour(usage={"input_tokens": 10, "output_tokens": 1000}))
        big = await sdk_message(client, max_tokens)
        assert big.status_code == 200
        with pytest.raises(anthropic.RateLimitError) as refused:
            await sdk_message(client, max_tokens)

    reserved = tpm - remaining[0]
    print(
        f"\n[tpm {tpm}, max_tokens {max_tokens}] reserved per request={reserved},"
        f" {passes} passed, tokens-remaining={remaining}"
    )
    assert reserved >= max_tokens
    # Each earlier request now counts as its usage (20), not its reservation (~910).
    assert [a - b for a, b in itertools.pairwise(remaining)] == [used] * (passes - 1)
    error = refused.value
    assert error.status_code == 429
    assert isinstance(error.body, dict)
    assert f"{tpm:,} tokens per minute" in error.body["error"]["message"]
    headers = error.response.headers
    assert float(headers["retry-after"]) > 0
    assert headers["anthropic-ratelimit-tokens-limit"] == str(tpm)
    # passes * 20 + the big one's 1010 are counted; the refused one counts nothing.
    assert int(headers["anthropic-ratelimit-tokens-remaining"]) == tpm - passes * used - 1010

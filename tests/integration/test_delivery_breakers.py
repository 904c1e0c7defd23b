"""Circuit breakers through real gateway processes: a failing deployment is taken out of
the pool, answered for at once without an upstream call when nothing else can serve, probed
after its cool-down and restored; shared through Redis, one process's opening holds for
another."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway, model_entry, running_fake, start_gateway
from tests.integration.test_anthropic_support import RawResponse, key_headers, raw_request
from tests.redis_harness import claim_redis_db, redis_server

COOLDOWN = 1.0
ROUTING = {
    "retries": {"max_attempts": 1},
    "breaker": {"consecutive_failures": 2, "cooldown": COOLDOWN},
}


@pytest.fixture(scope="module")
def other() -> Iterator[FakeUpstream]:
    with running_fake() as fake:
        yield fake


def entry(name: str, url: str, **extra: object) -> dict[str, object]:
    return model_entry(name, url, model="claude-sonnet-4-6", **extra)


def start(workdir: Path, fake: FakeUpstream, other: FakeUpstream, **config: object) -> Gateway:
    models = [
        entry("single", fake.url),
        entry("pair", fake.url, deployment_id="pair-a"),
        entry("pair", other.url, deployment_id="pair-b"),
    ]
    return start_gateway(
        workdir, fake, model_list=models, extra_config={"routing": ROUTING, **config}
    )


@pytest.fixture
def gateway(
    tmp_path: Path, fake: FakeUpstream, other: FakeUpstream
) -> Iterator[tuple[Gateway, str]]:
    other.reset()
    gateway = start(tmp_path / "gw", fake, other)
    yield gateway, gateway.create_key("breakers")
    gateway.stop()


def ask(gateway: Gateway, key: str, model: str) -> RawResponse:
    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    return raw_request(
        gateway.url, "POST", "/v1/messages", json.dumps(body).encode(), key_headers(key)
    )


def test_breaker_opens_answers_at_once_and_recovers(
    gateway: tuple[Gateway, str], fake: FakeUpstream
) -> None:
    gw, key = gateway
    fake.script(Behaviour(status=503), Behaviour(status=503))
    assert [ask(gw, key, "single").status for _ in range(2)] == [503, 503]
    assert fake.call_count("messages") == 2

    refused = ask(gw, key, "single")  # open: no upstream call at all
    assert refused.status == 529
    assert refused.json()["error"]["type"] == "overloaded_error"
    assert int(refused.headers["retry-after"]) >= 1
    with pytest.raises(openai.InternalServerError) as caught:  # OpenAI clients: a 503
        openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
            model="single", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 503
    assert fake.call_count("messages") == 2

    time.sleep(COOLDOWN + 0.2)  # half-open: one probe goes through, and succeeds
    probe = ask(gw, key, "single")
    assert probe.status == 200 and fake.call_count("messages") == 3
    assert ask(gw, key, "single").status == 200  # closed again
    assert fake.call_count("messages") == 4
    log = gw.log_text()
    assert "breaker.open" in log and "breaker.closed" in log


def test_rate_limited_answers_do_not_open_the_breaker(
    gateway: tuple[Gateway, str], fake: FakeUpstream
) -> None:
    gw, key = gateway
    fake.script(*[Behaviour(status=429, headers={"retry-after": "1"}) for _ in range(3)])
    assert [ask(gw, key, "single").status for _ in range(3)] == [429] * 3
    assert ask(gw, key, "single").status == 200  # not 529: the deployment stayed in
    assert fake.call_count("messages") == 4
    assert "breaker.open" not in gw.log_text()


def test_an_open_deployment_leaves_the_pool_to_the_healthy_one(
    gateway: tuple[Gateway, str], fake: FakeUpstream, other: FakeUpstream
) -> None:
    gw, key = gateway
    fake.script(*[Behaviour(status=500) for _ in range(50)])
    statuses = [ask(gw, key, "pair").status for _ in range(20)]
    # pair-a failed at most twice before its breaker opened; pair-b served the rest.
    assert fake.call_count("messages") == 2
    assert statuses.count(500) == 2 and statuses.count(200) == 18
    assert other.call_count("messages") == 18


@pytest.fixture
def redis_url() -> Iterator[str]:
    with claim_redis_db() as url:
        yield url


def test_an_opening_is_shared_through_redis(
    tmp_path: Path, fake: FakeUpstream, other: FakeUpstream, redis_url: str
) -> None:
    # Open long enough to be seen: with the other tests' one-second cool-down the opening
    # could end before the second process's next pull (one a second), and the test was racy.
    routing = {**ROUTING, "breaker": {"consecutive_failures": 2, "cooldown": 30.0}}
    first = start(tmp_path / "a", fake, other, redis_url=redis_url, routing=routing)
    shared_db = f"sqlite:///{tmp_path / 'a' / 'sluicegate.db'}"  # one key table for both
    second = start(
        tmp_path / "b", fake, other, redis_url=redis_url, database_url=shared_db, routing=routing
    )
    try:
        key = first.create_key("shared")
        fake.script(Behaviour(status=503), Behaviour(status=503))
        assert [ask(first, key, "single").status for _ in range(2)] == [503, 503]
        # The second process never saw a failure, yet answers for the open breaker.
        deadline = time.monotonic() + 5
        answer = ask(second, key, "single")
        while answer.status != 529 and time.monotonic() < deadline:
            time.sleep(0.2)
            answer = ask(second, key, "single")
        assert answer.status == 529
        calls = fake.call_count("messages")
        assert [ask(second, key, "single").status for _ in range(5)] == [529] * 5
        assert fake.call_count("messages") == calls  # answered without the upstream
    finally:
        with contextlib.suppress(Exception):
            first.stop()
        second.stop()


def test_a_deployment_out_of_upstream_rate_limit_is_tried_last(
    gateway: tuple[Gateway, str], fake: FakeUpstream, other: FakeUpstream
) -> None:
    gw, key = gateway
    reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 60))
    exhausted = {
        "anthropic-ratelimit-requests-limit": "100",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
    }
    fake.script(*[Behaviour(headers=exhausted) for _ in range(30)])
    for _ in range(30):  # weighted order is random: until pair-a answered once
        ask(gw, key, "pair")
        if fake.call_count("messages"):
            break
    assert fake.call_count("messages") == 1
    before = other.call_count("messages")
    assert [ask(gw, key, "pair").status for _ in range(10)] == [200] * 10
    assert fake.call_count("messages") == 1  # steered away until its reset
    assert other.call_count("messages") == before + 10


def test_redis_stopped_and_restarted_under_load(
    tmp_path: Path, fake: FakeUpstream, other: FakeUpstream
) -> None:
    """Shared breakers and limits on a Redis that dies and comes back: requests keep being
    served (breakers fall back to this process, limits fail open by default), and an
    opening is shared again once Redis is back."""
    with redis_server(tmp_path / "redis") as redis:
        gw = start(tmp_path / "gw", fake, other, redis_url=redis.url)
        try:
            key = gw.create_key("outage")
            statuses: list[int] = []
            for round_ in range(3):
                if round_ == 1:
                    redis.kill()
                if round_ == 2:
                    redis.start()
                    time.sleep(1.5)  # a sync interval or two to reconnect
                statuses += [ask(gw, key, "pair").status for _ in range(10)]
            assert statuses == [200] * 30
            fake.script(Behaviour(status=503), Behaviour(status=503))
            assert [ask(gw, key, "single").status for _ in range(2)] == [503, 503]
            deadline = time.monotonic() + 5
            while not redis.client().keys("sg:v1:*breaker*") and time.monotonic() < deadline:
                time.sleep(0.1)
            assert redis.client().keys("sg:v1:*breaker*"), "opening not published"
        finally:
            gw.stop()


@pytest.mark.parametrize("strategy", ["weighted", "least-busy", "lowest-latency"])
def test_deployments_share_an_alias_by_strategy(
    tmp_path: Path, fake: FakeUpstream, other: FakeUpstream, strategy: str
) -> None:
    other.reset()
    models = [
        entry("shared", fake.url, deployment_id="light", weight=1),
        entry("shared", other.url, deployment_id="heavy", weight=3),
    ]
    gw = start_gateway(
        tmp_path / "gw",
        fake,
        model_list=models,
        extra_config={"routing": {"strategy": strategy}},
    )
    try:
        key = gw.create_key("shared")
        served = [ask(gw, key, "shared").headers["x-sluicegate-deployment"] for _ in range(200)]
    finally:
        gw.stop()
    light, heavy = served.count("light"), served.count("heavy")
    assert light + heavy == 200
    assert (fake.call_count("messages"), other.call_count("messages")) == (light, heavy)
    if strategy == "weighted":
        assert 25 <= light <= 75, (light, heavy)  # 1:3 of 200 is 50:150
    else:  # sequential requests: both stay in use, neither is starved
        assert light > 0 and heavy > 0, (light, heavy)

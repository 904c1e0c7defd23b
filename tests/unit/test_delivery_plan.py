"""The delivery plan (which routes, in which order) and the first-event verdict of streams."""

from __future__ import annotations

import random
from typing import Any

from multidict import CIMultiDict

from sluicegate.delivery.attempts import Deliverer
from sluicegate.delivery.breaker import Breakers, BreakerSettings
from sluicegate.delivery.first_event import first_event_verdict
from sluicegate.delivery.retry_policy import Outcome
from sluicegate.routing.router import Router
from sluicegate.settings import Timeouts, settings_from_mapping


def entry(name: str, **extra: Any) -> dict[str, Any]:
    return {"model_name": name, "provider": "anthropic", "api_base": "http://up", **extra}


SETTINGS = settings_from_mapping(
    {
        "model_list": [
            entry("main", deployment_id="a", context_window=1000),
            entry("main", deployment_id="b"),
            entry("big", deployment_id="big-1", context_window=100_000),
            entry("spare", deployment_id="spare-1", model="spare-model"),
            entry("other-*", deployment_id="pattern"),
        ],
        "routing": {
            "fallbacks": {"main": ["spare", "big"]},
            "context_window_fallbacks": {"main": ["big"]},
        },
    }
)


def deliverer(breakers: Breakers | None = None) -> tuple[Deliverer, Router]:
    router = Router(SETTINGS.model_list, Timeouts())
    return Deliverer(SETTINGS.routing, router, breakers, rng=random.Random(7)), router


def names(plan: list[Any]) -> list[str]:
    return [route.deployment.name for route in plan]


def test_alias_deployments_then_fallbacks_in_order() -> None:
    delivery, router = deliverer()
    plan = delivery.plan("main", router.resolve("main"), lambda: 10)
    assert sorted(names(plan)[:2]) == ["a", "b"]
    assert names(plan)[2:] == ["spare-1", "big-1"]
    # A fallback sends its own upstream model, or the client's model when it has none.
    assert [r.upstream_model for r in plan[2:]] == ["spare-model", "main"]


def test_too_large_skips_small_windows_and_puts_context_fallbacks_first() -> None:
    delivery, router = deliverer()
    plan = delivery.plan("main", router.resolve("main"), lambda: 5_000)
    assert names(plan) == ["b", "big-1", "spare-1"]
    assert delivery.plan("main", router.resolve("main"), lambda: 10**6) == [
        r for r in plan if r.deployment.name in ("b", "spare-1")
    ]


def test_the_estimate_is_skipped_when_no_deployment_has_a_window() -> None:
    settings = settings_from_mapping({"model_list": [entry("solo")]})
    router = Router(settings.model_list, Timeouts())
    delivery = Deliverer(settings.routing, router, None)

    def estimate() -> int:
        raise AssertionError("no context window is configured: nothing to estimate")

    assert names(delivery.plan("solo", router.resolve("solo"), estimate)) == ["solo"]


def test_an_open_breaker_goes_last() -> None:
    breakers = Breakers(BreakerSettings(consecutive_failures=1))
    delivery, router = deliverer(breakers)
    breakers.allow("a")
    breakers.record("a", ok=False)
    for _ in range(20):
        assert names(delivery.plan("main", router.resolve("main"), lambda: 1))[:2] == ["b", "a"]


def test_an_upstream_out_of_rate_limit_goes_last() -> None:
    delivery, router = deliverer()
    delivery.upstream_limits.observe(
        "b",
        {
            "x-ratelimit-limit-requests": "100",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "30s",
        },
    )
    for _ in range(20):
        assert names(delivery.plan("main", router.resolve("main"), lambda: 1))[:2] == ["a", "b"]


def test_pattern_aliases_resolve_as_fallback_targets() -> None:
    _, router = deliverer()
    assert [d.name for d in router.deployments_of("other-*")] == ["pattern"]


HEADERS: CIMultiDict[str] = CIMultiDict()


def test_first_event_verdicts() -> None:
    start = b'event: message_start\ndata: {"type":"message_start"}\n\n'
    assert first_event_verdict(start, HEADERS).outcome is Outcome.FATAL  # commit
    overloaded = (
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
        b'"message":"Overloaded"}}\n\n'
    )
    assert first_event_verdict(overloaded, HEADERS).outcome is Outcome.RETRY
    invalid = b'event: error\ndata: {"type":"error","error":{"type":"invalid_request_error"}}\n\n'
    assert first_event_verdict(invalid, HEADERS).outcome is Outcome.FATAL
    openai_error = b'data: {"error":{"type":"server_error","message":"boom"}}\n\n'
    assert first_event_verdict(openai_error, HEADERS).outcome is Outcome.RETRY
    assert first_event_verdict(b"", HEADERS).outcome is Outcome.RETRY  # cut at once
    chunk = b'data: {"id":"c","choices":[{"delta":{"content":"error"}}]}\n\n'
    assert first_event_verdict(chunk, HEADERS).outcome is Outcome.FATAL

"""Retry policy: status/transport classification, retry hints, jittered backoff, budget."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import orjson
import pytest
from multidict import CIMultiDict

from sluicegate.delivery.retry_policy import (
    Backoff,
    Outcome,
    RetryBudget,
    Verdict,
    classify_status,
    classify_transport,
    retry_after_seconds,
)
from sluicegate.errors import InvalidRequest, UpstreamTimeout, UpstreamUnavailable

NOW = 1_700_000_000.0


def _openai_error(**fields: str) -> bytes:
    return orjson.dumps({"error": {"message": "m", **fields}})


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 413, 422])
def test_client_errors_are_fatal(status: int) -> None:
    assert classify_status(status, {}, None) == Verdict(Outcome.FATAL, None, f"status_{status}")


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_transient_statuses_retry(status: int) -> None:
    assert classify_status(status, {}, None) == Verdict(Outcome.RETRY, None, f"status_{status}")


@pytest.mark.parametrize("status", [200, 204, 301])
def test_success_is_total_and_fatal(status: int) -> None:
    assert classify_status(status, {"x-should-retry": "true"}, None).reason == "ok"


def test_retry_verdict_carries_hint() -> None:
    verdict = classify_status(529, {"retry-after-ms": "1500"}, None)
    assert verdict == Verdict(Outcome.RETRY, 1.5, "status_529")


@pytest.mark.parametrize("status", [408, 429, 500, 503, 529])
@pytest.mark.parametrize("value", ["false", "False", " FALSE "])
def test_should_retry_false_makes_anything_fatal(status: int, value: str) -> None:
    verdict = classify_status(status, {"x-should-retry": value}, None)
    assert verdict == Verdict(Outcome.FATAL, None, "should_retry_false")


def test_should_retry_false_beats_context_fallback() -> None:
    body = _openai_error(code="context_length_exceeded")
    assert classify_status(400, {"x-should-retry": "false"}, body).outcome is Outcome.FATAL


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 402, 422])
def test_should_retry_true_never_revives_client_errors(status: int) -> None:
    assert classify_status(status, {"x-should-retry": "true"}, None).outcome is Outcome.FATAL


@pytest.mark.parametrize("status", [408, 409, 429, 500, 529])
def test_should_retry_true_keeps_transient_retryable(status: int) -> None:
    assert classify_status(status, {"x-should-retry": "true"}, None).outcome is Outcome.RETRY


def test_should_retry_header_is_case_insensitive() -> None:
    multi = CIMultiDict({"X-Should-Retry": "false"})
    assert classify_status(503, multi, None).reason == "should_retry_false"
    assert classify_status(503, {"X-Should-Retry": "false"}, None).reason == "should_retry_false"


@pytest.mark.parametrize(
    "body",
    [
        _openai_error(code="insufficient_quota", type="insufficient_quota"),
        _openai_error(code="insufficient_quota"),
        _openai_error(type="insufficient_quota"),
        _openai_error(code="budget_exceeded", type="rate_limit_error"),
    ],
)
def test_spend_limit_429_is_fatal(body: bytes) -> None:
    verdict = classify_status(429, {"retry-after": "5", "x-should-retry": "true"}, body)
    assert verdict == Verdict(Outcome.FATAL, None, "insufficient_quota")


def test_ordinary_rate_limit_body_still_retries() -> None:
    body = _openai_error(code="rate_limit_exceeded", type="requests")
    assert classify_status(429, {}, body).outcome is Outcome.RETRY


def test_context_length_exceeded_falls_back() -> None:
    body = _openai_error(code="context_length_exceeded", type="invalid_request_error")
    verdict = classify_status(400, {}, body)
    assert verdict == Verdict(Outcome.FALLBACK, None, "context_length_exceeded")


def test_context_code_only_counts_on_400() -> None:
    body = _openai_error(code="context_length_exceeded")
    assert classify_status(422, {}, body).outcome is Outcome.FATAL
    assert classify_status(500, {}, body).outcome is Outcome.RETRY


def test_message_text_is_never_searched() -> None:
    body = orjson.dumps(
        {
            "error": {
                "message": "This model's maximum context length is 8192 tokens; "
                "context_length_exceeded; insufficient_quota",
                "type": "invalid_request_error",
            }
        }
    )
    assert classify_status(400, {}, body) == Verdict(Outcome.FATAL, None, "status_400")
    assert classify_status(429, {}, body).outcome is Outcome.RETRY


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{",
        b"[1, 2]",
        b'{"error": "context_length_exceeded"}',
        b'{"error": {"code": 7, "type": null}}',
        b'"insufficient_quota"',
    ],
)
def test_malformed_bodies_are_ignored(body: bytes) -> None:
    assert classify_status(400, {}, body).reason == "status_400"
    assert classify_status(429, {}, body).outcome is Outcome.RETRY


def test_huge_bodies_are_not_parsed() -> None:
    padding = "x" * (64 * 1024)
    body = orjson.dumps({"error": {"code": "insufficient_quota", "message": padding}})
    assert classify_status(429, {}, body).outcome is Outcome.RETRY
    body = orjson.dumps({"error": {"code": "context_length_exceeded", "message": padding}})
    assert classify_status(400, {}, body).outcome is Outcome.FATAL


def test_transport_errors() -> None:
    unavailable = classify_transport(UpstreamUnavailable("reset"))
    assert unavailable == Verdict(Outcome.RETRY, None, "connect_error")
    assert classify_transport(UpstreamTimeout("slow")) == Verdict(Outcome.RETRY, None, "timeout")
    for error in (InvalidRequest("bad"), RuntimeError("bug"), KeyboardInterrupt()):
        assert classify_transport(error) == Verdict(Outcome.FATAL, None, "internal")


def test_retry_after_ms_wins() -> None:
    headers = {"retry-after-ms": "250", "retry-after": "7"}
    assert retry_after_seconds(headers) == 0.25


def test_retry_after_seconds_and_fraction() -> None:
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after": "0.5"}) == 0.5
    assert retry_after_seconds(CIMultiDict({"Retry-After": "3"})) == 3.0
    assert retry_after_seconds({"Retry-After-Ms": "100"}) == 0.1


def test_junk_ms_falls_back_to_seconds() -> None:
    assert retry_after_seconds({"retry-after-ms": "soon", "retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "-5", "retry-after": "2"}) == 2.0


def test_retry_after_http_date() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW + 30, tz=UTC), usegmt=True)
    assert retry_after_seconds({"retry-after": when}, now=NOW) == pytest.approx(30.0)
    # "-0000" parses to a naive datetime; RFC 5322 says it is UTC.
    naive = format_datetime(datetime.fromtimestamp(NOW + 12, tz=UTC).replace(tzinfo=None))
    assert retry_after_seconds({"retry-after": naive}, now=NOW) == pytest.approx(12.0)


def test_retry_after_past_date_is_none() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW - 30, tz=UTC), usegmt=True)
    assert retry_after_seconds({"retry-after": when}, now=NOW) is None


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"retry-after": "soon"},
        {"retry-after": "-1"},
        {"retry-after": "nan"},
        {"retry-after": "inf"},
        {"retry-after-ms": "NaN"},
        {"retry-after-ms": "-inf"},
        {"retry-after": "Mon, 99 Foo 2024 99:99:99 GMT"},
        {"retry-after": ""},
    ],
)
def test_retry_after_junk_is_none(headers: dict[str, str]) -> None:
    assert retry_after_seconds(headers, now=NOW) is None


def test_backoff_full_jitter_bounds() -> None:
    backoff = Backoff()
    rng = random.Random(1234)
    for attempt in range(1, 12):
        ceiling = min(backoff.cap, backoff.base * 2 ** (attempt - 1))
        draws = [backoff.delay(attempt, None, rng) for _ in range(500)]
        assert all(d is not None and 0.0 <= d <= ceiling for d in draws)
        spread = [d for d in draws if d is not None]
        # Full jitter uses the whole range, not a narrow band near the ceiling.
        assert min(spread) < ceiling * 0.1
        assert max(spread) > ceiling * 0.9


def test_backoff_is_deterministic_with_seeded_rng() -> None:
    first = [Backoff().delay(n, None, random.Random(7)) for n in range(1, 6)]
    second = [Backoff().delay(n, None, random.Random(7)) for n in range(1, 6)]
    assert first == second


def test_backoff_huge_attempt_stays_capped() -> None:
    delay = Backoff(cap=3.0).delay(10_000, None, random.Random(0))
    assert delay is not None and 0.0 <= delay <= 3.0


def test_backoff_honours_hint_exactly() -> None:
    backoff = Backoff()
    rng = random.Random(0)
    assert backoff.delay(1, 20.0, rng) == 20.0  # above cap, still within max_hint
    assert backoff.delay(3, 0.0, rng) == 0.0
    assert backoff.delay(1, 60.0, rng) == 60.0


def test_backoff_hint_above_max_is_none() -> None:
    assert Backoff().delay(1, 60.5, random.Random(0)) is None
    assert Backoff(max_hint=5.0).delay(1, 6.0, random.Random(0)) is None


def test_backoff_rejects_negative_settings() -> None:
    with pytest.raises(ValueError):
        Backoff(base=-1.0)


def _spend_all(budget: RetryBudget, limit: int = 10_000) -> int:
    spent = 0
    while spent < limit and budget.try_spend():
        spent += 1
    return spent


def test_budget_ratio_without_floor() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, clock=clock)
    for _ in range(100):
        budget.record_request()
    assert _spend_all(budget) == 20


def test_budget_ratio_plus_floor() -> None:
    clock = FakeClock()
    budget = RetryBudget(clock=clock)  # 0.2 ratio, 5/s floor over 10 s
    for _ in range(100):
        budget.record_request()
    assert _spend_all(budget) == 20 + 50


def test_budget_floor_alone_serves_quiet_routes() -> None:
    budget = RetryBudget(min_per_second=1.0, window=10.0, clock=FakeClock())
    assert _spend_all(budget) == 10


def test_budget_recovers_after_window() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, window=10.0, clock=clock)
    for _ in range(100):
        budget.record_request()
    assert _spend_all(budget) == 20
    clock.now += 5.0
    assert not budget.try_spend()  # the spent retries are still inside the window
    clock.now += 5.0
    # Everything has expired: no spent retries, but no earning requests either.
    assert not budget.try_spend()
    for _ in range(50):
        budget.record_request()
    assert _spend_all(budget) == 10


def test_budget_slides_old_requests_out() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, window=10.0, clock=clock)
    for _ in range(10):
        budget.record_request()
    clock.now += 6.0
    for _ in range(10):
        budget.record_request()
    clock.now += 5.0  # the first 10 requests are now older than the window
    assert _spend_all(budget) == 5


def test_budget_long_idle_gap_and_backward_clock() -> None:
    clock = FakeClock()
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, clock=clock)
    budget.record_request()
    clock.now += 1e9  # a huge gap clears at most one ring turn
    assert not budget.try_spend()
    budget.record_request()
    clock.now -= 100.0  # a clock stepping back counts into the newest bucket
    assert budget.try_spend()
    assert not budget.try_spend()


def test_budget_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        RetryBudget(window=0.0)
    with pytest.raises(ValueError):
        RetryBudget(ratio=-0.1)

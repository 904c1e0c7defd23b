"""Deployment ordering and upstream rate-limit awareness, with a seeded rng and a fake clock."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from sluicegate.delivery.selection import Candidate, DeploymentStats, order
from sluicegate.delivery.upstream_limits import UpstreamLimits, parse_duration, parse_timestamp

NOW = datetime(2026, 12, 5, 1, 0, 0, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _anthropic(remaining: str, limit: str = "1000", reset: str = "2026-12-05T01:00:30Z"):
    return {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "49",
        "anthropic-ratelimit-requests-reset": "2026-12-05T01:00:01Z",
        "anthropic-ratelimit-tokens-limit": limit,
        "anthropic-ratelimit-tokens-remaining": remaining,
        "anthropic-ratelimit-tokens-reset": reset,
    }


def _openai(remaining: str, reset: str = "6m0s", limit: str = "500"):
    return {
        "x-ratelimit-limit-requests": limit,
        "x-ratelimit-remaining-requests": remaining,
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-limit-tokens": "100000",
        "x-ratelimit-remaining-tokens": "99000",
        "x-ratelimit-reset-tokens": "20ms",
    }


# --- upstream limits ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("20ms", 0.02),
        ("1s", 1.0),
        ("0.5s", 0.5),
        ("6m0s", 360.0),
        ("1h2m3s", 3723.0),
        ("1m30.5s", 90.5),
        ("7", 7.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "1x", "1h30", "abc", "1..2s", "-1s", "nan"])
def test_bad_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_timestamps() -> None:
    assert parse_timestamp("2026-12-05T01:02:03Z") == NOW + 123
    assert parse_timestamp("2026-12-05T02:02:03.5+01:00") == NOW + 123.5
    assert parse_timestamp("tomorrow") is None


def test_anthropic_low_until_reset() -> None:
    clock = FakeClock()
    limits = UpstreamLimits(clock=clock)
    limits.observe("a", _anthropic(remaining="40"))  # 4% of 1000 <= 5%
    assert limits.exhausted("a")
    assert limits.exhausted_until("a") == NOW + 30
    assert not limits.exhausted("b")
    clock.now = NOW + 29.9
    assert limits.exhausted("a")
    clock.now = NOW + 30
    assert not limits.exhausted("a")
    assert limits.exhausted_until("a") is None


def test_anthropic_latest_reset_among_low_resources() -> None:
    limits = UpstreamLimits(clock=FakeClock())
    headers = _anthropic(remaining="0")
    headers["anthropic-ratelimit-requests-remaining"] = "1"
    headers["anthropic-ratelimit-output-tokens-limit"] = "8000"
    headers["anthropic-ratelimit-output-tokens-remaining"] = "100"
    headers["anthropic-ratelimit-output-tokens-reset"] = "2026-12-05T01:05:00Z"
    limits.observe("a", headers)
    assert limits.exhausted_until("a") == NOW + 300


def test_not_low_stays_available() -> None:
    limits = UpstreamLimits(clock=FakeClock())
    limits.observe("a", _anthropic(remaining="51"))
    limits.observe("o", _openai(remaining="26"))
    assert not limits.exhausted("a")
    assert not limits.exhausted("o")


def test_openai_low_until_duration() -> None:
    clock = FakeClock()
    limits = UpstreamLimits(clock=clock)
    limits.observe("o", _openai(remaining="1", reset="1h2m3s"))
    assert limits.exhausted_until("o") == NOW + 3723
    clock.now = NOW + 3723
    assert not limits.exhausted("o")


def test_case_insensitive_headers() -> None:
    raw = CIMultiDict((k.title(), v) for k, v in _openai(remaining="0", reset="250ms").items())
    limits = UpstreamLimits(clock=FakeClock())
    limits.observe("o", CIMultiDictProxy(raw))
    assert limits.exhausted_until("o") == pytest.approx(NOW + 0.25)


def test_recovered_numbers_clear() -> None:
    limits = UpstreamLimits(clock=FakeClock())
    limits.observe("a", _anthropic(remaining="0"))
    assert limits.exhausted("a")
    limits.observe("a", _anthropic(remaining="900"))
    assert not limits.exhausted("a")
    limits.observe("o", _openai(remaining="0"))
    assert limits.exhausted("o")
    limits.observe("o", _openai(remaining="400"))
    assert not limits.exhausted("o")


def test_no_headers_change_nothing() -> None:
    limits = UpstreamLimits(clock=FakeClock())
    limits.observe("a", _anthropic(remaining="0"))
    limits.observe("a", {"content-type": "application/json"})
    limits.observe("a", {})
    assert limits.exhausted_until("a") == NOW + 30


def test_junk_values_ignored() -> None:
    limits = UpstreamLimits(clock=FakeClock())
    limits.observe("a", _anthropic(remaining="0"))
    junk = {
        "anthropic-ratelimit-requests-remaining": "lots",
        "anthropic-ratelimit-tokens-remaining": "nan",
    }
    limits.observe("a", junk)  # nothing parseable: the earlier report stands
    assert limits.exhausted_until("a") == NOW + 30


def test_junk_reset_and_limit_fall_back() -> None:
    clock = FakeClock()
    limits = UpstreamLimits(clock=clock)
    limits.observe("a", _anthropic(remaining="0", reset="soon"))
    assert limits.exhausted_until("a") == NOW + 1  # unparseable reset: back off one second
    limits.observe("o", _openai(remaining="0", reset="later", limit="none"))
    assert limits.exhausted_until("o") == NOW + 1
    # Without a usable limit only "none left" counts as low.
    limits.observe("p", _openai(remaining="1", limit="junk"))
    assert not limits.exhausted("p")


# --- deployment stats --------------------------------------------------------------------


def test_stats_inflight_and_ewma() -> None:
    stats = DeploymentStats(alpha=0.5)
    stats.started("a")
    stats.started("a")
    assert stats.inflight("a") == 2
    stats.finished("a", 1.0)
    stats.finished("a", None)
    stats.finished("a", 3.0)  # unmatched finish floors at zero
    assert stats.inflight("a") == 0
    assert stats.latency("a") == 2.0  # seeded with 1.0, then halfway to 3.0
    assert stats.latency("b") is None


# --- ordering ----------------------------------------------------------------------------


def _names(cands: list[Candidate]) -> list[str]:
    return [c.name for c in cands]


def test_weighted_frequencies_match_weights() -> None:
    rng = random.Random(1234)
    cands = [Candidate("a", 1.0), Candidate("b", 3.0)]
    first = Counter(order(cands, "weighted", DeploymentStats(), rng)[0].name for _ in range(10_000))
    assert first["b"] / 10_000 == pytest.approx(0.75, abs=0.02)
    assert first["a"] / 10_000 == pytest.approx(0.25, abs=0.02)


def test_weighted_is_a_full_permutation_with_zero_weight_last() -> None:
    rng = random.Random(7)
    cands = [Candidate("z", 0.0), Candidate("a", 1.0), Candidate("b", 2.0), Candidate("c", 1.0)]
    for _ in range(200):
        got = order(cands, "weighted", DeploymentStats(), rng)
        assert sorted(_names(got)) == ["a", "b", "c", "z"]
        assert got[-1].name == "z"


def test_single_candidate_leaves_rng_alone() -> None:
    rng = random.Random(99)
    state = rng.getstate()
    only = Candidate("a", payload=object())
    for strategy in ("weighted", "least-busy", "lowest-latency"):
        got = order([only], strategy, DeploymentStats(), rng)
        assert got == [only] and got[0].payload is only.payload
    assert rng.getstate() == state


def test_least_busy_picks_idle() -> None:
    stats = DeploymentStats()
    for _ in range(3):
        stats.started("busy")
    stats.started("half")
    rng = random.Random(3)
    cands = [Candidate("busy"), Candidate("half"), Candidate("idle")]
    assert _names(order(cands, "least-busy", stats, rng)) == ["idle", "half", "busy"]
    # Per unit of weight: 3 in flight over weight 6 is less busy than 1 over weight 1.
    cands = [Candidate("busy", 6.0), Candidate("half", 1.0)]
    assert _names(order(cands, "least-busy", stats, rng)) == ["busy", "half"]


def test_least_busy_ties_random() -> None:
    rng = random.Random(5)
    cands = [Candidate("a"), Candidate("b")]
    firsts = Counter(
        order(cands, "least-busy", DeploymentStats(), rng)[0].name for _ in range(1000)
    )
    assert 400 < firsts["a"] < 600


def test_lowest_latency_explores_then_prefers_faster() -> None:
    stats = DeploymentStats()
    stats.finished("slow", 2.0)
    stats.finished("fast", 0.3)
    rng = random.Random(11)
    cands = [Candidate("slow"), Candidate("fast"), Candidate("new")]
    assert _names(order(cands, "lowest-latency", stats, rng)) == ["new", "fast", "slow"]
    stats.finished("new", 5.0)
    assert _names(order(cands, "lowest-latency", stats, rng)) == ["fast", "slow", "new"]


def test_avoid_moves_last_keeping_order() -> None:
    stats = DeploymentStats()
    stats.finished("a", 0.1)
    stats.finished("b", 0.2)
    stats.finished("c", 0.3)
    cands = [Candidate("c"), Candidate("b"), Candidate("a"), Candidate("z", 0.0)]
    got = order(cands, "lowest-latency", stats, random.Random(0), avoid=lambda n: n in {"a", "b"})
    assert _names(got) == ["c", "z", "a", "b"]
    everything = order(cands, "lowest-latency", stats, random.Random(0), avoid=lambda n: True)
    assert _names(everything) == ["a", "b", "c", "z"]


def test_avoid_with_upstream_limits() -> None:
    limits = UpstreamLimits(clock=FakeClock())
    limits.observe("a", _anthropic(remaining="0"))
    cands = [Candidate("a", 100.0), Candidate("b", 1.0)]
    got = order(cands, "weighted", DeploymentStats(), random.Random(2), avoid=limits.exhausted)
    assert _names(got) == ["b", "a"]


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="round-robin"):
        order([Candidate("a")], "round-robin", DeploymentStats(), random.Random(0))

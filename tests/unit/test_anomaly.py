"""Per-partner anomaly detection against the partner's own baseline, on a fake clock."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from sluicegate.observe.anomaly import AnomalyDetector
from sluicegate.settings_observe import AnomalySettings

WINDOW = 60.0


class Clock:
    def __init__(self, now: float = 5000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(max_subjects: int = 10_000, **overrides: Any) -> tuple[AnomalyDetector, Clock]:
    settings = AnomalySettings(**{"window": WINDOW, "min_requests": 10, **overrides})
    clock = Clock()
    return AnomalyDetector(settings, clock, max_subjects=max_subjects), clock


def alerts(caplog: pytest.LogCaptureFixture, kind: str | None = None) -> list[logging.LogRecord]:
    found = [r for r in caplog.records if getattr(r, "alert", None)]
    return [r for r in found if kind is None or r.alert == kind]  # type: ignore[attr-defined]


def traffic(
    detector: AnomalyDetector,
    clock: Clock,
    windows: int,
    *,
    subject: str = "partner 'acme'",
    per_window: int = 30,
    fail_every: int = 0,
    latency: float = 0.5,
    cost: float = 0.01,
) -> None:
    """``windows`` windows of evenly spread requests; every ``fail_every``-th one fails
    (the last of each group, so no stretch of a window fails more than the whole)."""
    step = WINDOW / per_window
    for _ in range(windows):
        for i in range(per_window):
            failed = fail_every > 0 and i % fail_every == fail_every - 1
            detector.observe(subject, failed, latency, cost)
            clock.now += step


@pytest.fixture(autouse=True)
def _capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sluicegate.anomaly")


def test_steady_traffic_never_alerts(caplog: pytest.LogCaptureFixture) -> None:
    detector, clock = make()
    # 10% errors, steady latency and spend, for an hour: that is this partner's normal.
    traffic(detector, clock, 60, fail_every=10)
    assert alerts(caplog) == []


def test_an_error_burst_alerts_once_per_window(caplog: pytest.LogCaptureFixture) -> None:
    detector, clock = make()
    traffic(detector, clock, 10)  # a clean baseline
    assert alerts(caplog) == []

    for _ in range(40):  # a burst of failures within one window
        detector.observe("partner 'acme'", True, 0.5, 0.0)
        clock.now += 0.5
    burst = alerts(caplog, "anomaly.error_rate")
    assert len(burst) == 1
    record: Any = burst[0]
    assert record.subject == "partner 'acme'"
    assert record.levelno == logging.WARNING
    assert record.getMessage() == "anomaly.error_rate"
    # Raised as soon as the window held min_requests requests, not when it closed.
    assert record.requests == 10 and record.failures == 10 and record.error_rate == 1.0
    assert record.baseline == 0.0

    # Still failing in the next window: one more alert there (the sink deduplicates it).
    clock.now += WINDOW
    for _ in range(40):
        detector.observe("partner 'acme'", True, 0.5, 0.0)
        clock.now += 1.0
    assert len(alerts(caplog, "anomaly.error_rate")) == 2


def test_errors_within_the_baseline_do_not_alert(caplog: pytest.LogCaptureFixture) -> None:
    detector, clock = make()
    traffic(detector, clock, 10, fail_every=5)  # a fifth fails: normal for this partner
    traffic(detector, clock, 1, fail_every=2)  # half fails: above the floor, below 3x
    assert alerts(caplog, "anomaly.error_rate") == []
    traffic(detector, clock, 1, fail_every=1)  # everything fails: above 3x the baseline
    assert len(alerts(caplog, "anomaly.error_rate")) == 1


def test_no_baseline_judges_errors_against_the_floor_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    detector, _ = make(spend_floor_usd=0.5)
    # A new partner: its first minute is all errors, slow and costly.
    for _ in range(9):
        detector.observe("partner 'new'", True, 30.0, 0.2)
    assert alerts(caplog, "anomaly.error_rate") == []  # fewer than min_requests
    detector.observe("partner 'new'", True, 30.0, 0.2)
    assert len(alerts(caplog, "anomaly.error_rate")) == 1
    record: Any = alerts(caplog, "anomaly.error_rate")[0]
    assert record.baseline is None and record.threshold == 0.2
    # Latency and spend have nothing to compare with yet.
    assert alerts(caplog, "anomaly.latency") == alerts(caplog, "anomaly.spend_rate") == []


def test_below_the_floor_never_alerts(caplog: pytest.LogCaptureFixture) -> None:
    detector, clock = make()
    traffic(detector, clock, 5)  # no errors at all: baseline 0
    traffic(detector, clock, 3, fail_every=6)  # ~17%: infinitely more, but under 20%
    assert alerts(caplog, "anomaly.error_rate") == []


def test_latency_against_the_baseline(caplog: pytest.LogCaptureFixture) -> None:
    detector, clock = make()
    traffic(detector, clock, 10, latency=1.0)
    traffic(detector, clock, 2, latency=2.5)  # slower, within 3x
    assert alerts(caplog, "anomaly.latency") == []
    traffic(detector, clock, 1, latency=5.0)
    found = alerts(caplog, "anomaly.latency")
    assert len(found) == 1
    record: Any = found[0]
    assert record.latency_s == 5.0
    assert 1.0 < record.baseline < 1.5  # mostly the 1 s windows
    assert record.requests == 10  # judged once min_requests arrived


def test_latency_needs_min_requests(caplog: pytest.LogCaptureFixture) -> None:
    detector, clock = make()
    traffic(detector, clock, 10, latency=1.0)
    clock.now += WINDOW
    for _ in range(9):  # a few slow requests are not a trend
        detector.observe("partner 'acme'", False, 60.0, 0.01)
    assert alerts(caplog, "anomaly.latency") == []


def test_spend_against_the_baseline(caplog: pytest.LogCaptureFixture) -> None:
    detector, clock = make(spend_floor_usd=1.0)
    traffic(detector, clock, 10, cost=0.5)  # $15 a minute is normal here
    traffic(detector, clock, 1, cost=2.0)  # $60: 4x, within 5x
    assert alerts(caplog, "anomaly.spend_rate") == []
    traffic(detector, clock, 1, cost=5.0)  # $150 a minute
    found = alerts(caplog, "anomaly.spend_rate")
    assert len(found) == 1
    record: Any = found[0]
    assert record.threshold > 75 and record.spend_usd > record.threshold
    assert record.spend_usd < 150  # raised as the window filled, not at its end


def test_spend_floor_keeps_small_partners_quiet(caplog: pytest.LogCaptureFixture) -> None:
    detector, clock = make(spend_floor_usd=1.0)
    traffic(detector, clock, 10, cost=0.0001)  # a tiny baseline
    traffic(detector, clock, 1, cost=0.03)  # 300x, but $0.90 in the minute
    assert alerts(caplog, "anomaly.spend_rate") == []


def test_subjects_are_judged_apart(caplog: pytest.LogCaptureFixture) -> None:
    detector, clock = make()
    traffic(detector, clock, 10, subject="partner 'flaky'", fail_every=2)
    traffic(detector, clock, 10, subject="partner 'solid'")
    caplog.clear()  # the flaky one's first window, without a baseline, alerted
    # 50% errors is normal for one and an anomaly for the other.
    traffic(detector, clock, 1, subject="partner 'flaky'", fail_every=2)
    traffic(detector, clock, 1, subject="partner 'solid'", fail_every=2)
    assert [r.subject for r in alerts(caplog)] == ["partner 'solid'"]  # type: ignore[attr-defined]


def test_the_baseline_forgets_after_a_long_idle(caplog: pytest.LogCaptureFixture) -> None:
    detector, clock = make(baseline_half_life=600.0)
    traffic(detector, clock, 5, latency=0.1)
    clock.now += 6 * 3600  # hours idle: the old baseline no longer says what is normal
    traffic(detector, clock, 2, latency=1.0)  # slower, but there is nothing recent to compare
    assert alerts(caplog, "anomaly.latency") == []


def test_memory_is_bounded_least_recently_seen_first(caplog: pytest.LogCaptureFixture) -> None:
    detector, clock = make(max_subjects=3)
    for name in ("a", "b", "c"):
        detector.observe(name, False, 1.0, 0.0)
    clock.now += WINDOW
    detector.observe("a", False, 1.0, 0.0)  # a rolled its window: recently seen
    detector.observe("d", False, 1.0, 0.0)  # evicts b, the oldest
    assert len(detector) == 3
    assert set(detector._subjects) == {"a", "c", "d"}
    for i in range(1000):
        detector.observe(f"partner-{i}", False, 1.0, 0.0)
    assert len(detector) == 3


def test_disabled_detects_nothing(caplog: pytest.LogCaptureFixture) -> None:
    detector, _ = make(enabled=False)
    for _ in range(50):
        detector.observe("partner 'acme'", True, 1.0, 10.0)
    assert alerts(caplog) == [] and len(detector) == 0

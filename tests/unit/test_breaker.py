"""In-process circuit breakers, driven by a fake clock (no sleeps)."""

from __future__ import annotations

import pytest

from sluicegate.delivery.breaker import Breakers, BreakerSettings, BreakerState

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
DEP = "claude-east"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(**settings: float) -> tuple[Breakers, Clock, list[tuple[str, BreakerState, BreakerState]]]:
    clock = Clock()
    changes: list[tuple[str, BreakerState, BreakerState]] = []
    breakers = Breakers(
        BreakerSettings(**settings),  # type: ignore[arg-type]
        clock=clock,
        on_change=lambda name, old, new: changes.append((name, old, new)),
    )
    return breakers, clock, changes


def fail(breakers: Breakers, times: int, name: str = DEP) -> None:
    for _ in range(times):
        assert breakers.allow(name)
        breakers.record(name, False)


def succeed(breakers: Breakers, times: int, name: str = DEP) -> None:
    for _ in range(times):
        assert breakers.allow(name)
        breakers.record(name, True)


def open_breaker(breakers: Breakers, clock: Clock) -> None:
    fail(breakers, breakers.settings.consecutive_failures)
    assert breakers.state(DEP) is OPEN


def test_unknown_deployment_is_closed_and_not_created() -> None:
    breakers, _, _ = make()
    assert breakers.state("nobody") is CLOSED
    assert breakers.open_until("nobody") is None
    assert breakers.states() == {}


def test_consecutive_failures_open_it() -> None:
    breakers, clock, changes = make(consecutive_failures=3)
    fail(breakers, 2)
    assert breakers.state(DEP) is CLOSED
    fail(breakers, 1)
    assert breakers.state(DEP) is OPEN
    assert breakers.open_until(DEP) == clock.now + BreakerSettings().cooldown
    assert not breakers.allow(DEP)
    assert changes == [(DEP, CLOSED, OPEN)]


def test_success_resets_the_consecutive_count() -> None:
    breakers, _, _ = make(consecutive_failures=3)
    for _ in range(5):
        fail(breakers, 2)
        succeed(breakers, 1)
    assert breakers.state(DEP) is CLOSED


def test_breakers_are_independent_per_deployment() -> None:
    breakers, _, _ = make(consecutive_failures=2)
    fail(breakers, 2, "a")
    assert breakers.state("a") is OPEN
    assert breakers.allow("b")
    assert breakers.states() == {"a": OPEN, "b": CLOSED}


def test_error_ratio_opens_it_only_with_min_requests() -> None:
    breakers, _, _ = make(consecutive_failures=100, error_ratio=0.5, min_requests=10)
    for _ in range(4):  # 8 attempts, half failed: the ratio is met, the volume is not
        succeed(breakers, 1)
        fail(breakers, 1)
    assert breakers.state(DEP) is CLOSED
    succeed(breakers, 1)  # 9 attempts, 4 failures
    fail(breakers, 1)  # 10 attempts, 5 failures: 0.5 with min_requests reached
    assert breakers.state(DEP) is OPEN


def test_error_ratio_below_threshold_stays_closed() -> None:
    breakers, _, _ = make(consecutive_failures=100, error_ratio=0.5, min_requests=10)
    for _ in range(20):
        succeed(breakers, 2)
        fail(breakers, 1)  # a third fail
    assert breakers.state(DEP) is CLOSED


def test_window_slides_and_forgets_old_failures() -> None:
    breakers, clock, _ = make(consecutive_failures=100, min_requests=10, window=30.0)
    fail(breakers, 9)  # one attempt short of min_requests
    clock.advance(31.0)  # those 9 failures have aged out of the window
    fail(breakers, 1)
    assert breakers.state(DEP) is CLOSED
    for _ in range(4):
        succeed(breakers, 1)
        fail(breakers, 1)
    assert breakers.state(DEP) is CLOSED  # 9 attempts now: below min_requests
    fail(breakers, 1)
    assert breakers.state(DEP) is OPEN  # 10 attempts, 6 failures


def test_window_partly_slides() -> None:
    breakers, clock, _ = make(consecutive_failures=100, min_requests=4, window=10.0)
    fail(breakers, 1)
    succeed(breakers, 1)
    clock.advance(6.0)
    succeed(breakers, 2)
    clock.advance(6.0)  # the first two attempts are out, the last two are still in
    fail(breakers, 1)
    assert breakers.state(DEP) is CLOSED  # 3 attempts in the window
    fail(breakers, 1)
    assert breakers.state(DEP) is OPEN  # 4 attempts, 2 failures


def test_open_refuses_until_cooldown_then_half_opens() -> None:
    breakers, clock, _ = make(consecutive_failures=1, cooldown=30.0)
    open_breaker(breakers, clock)
    clock.advance(29.9)
    assert not breakers.allow(DEP)
    assert breakers.state(DEP) is OPEN
    clock.advance(0.1)
    assert breakers.state(DEP) is HALF_OPEN
    assert breakers.open_until(DEP) is None
    assert breakers.allow(DEP)


def test_half_open_lets_exactly_the_probes_through() -> None:
    breakers, clock, _ = make(consecutive_failures=1, half_open_probes=3)
    open_breaker(breakers, clock)
    clock.advance(30.0)
    assert [breakers.allow(DEP) for _ in range(5)] == [True, True, True, False, False]


def test_all_probes_succeeding_closes_it() -> None:
    breakers, clock, changes = make(consecutive_failures=1, half_open_probes=2)
    open_breaker(breakers, clock)
    clock.advance(30.0)
    assert breakers.allow(DEP) and breakers.allow(DEP)
    breakers.record(DEP, True)
    assert breakers.state(DEP) is HALF_OPEN
    assert not breakers.allow(DEP)  # a slot used by a success is not handed out again
    breakers.record(DEP, True)
    assert breakers.state(DEP) is CLOSED
    assert changes == [(DEP, CLOSED, OPEN), (DEP, OPEN, HALF_OPEN), (DEP, HALF_OPEN, CLOSED)]


def test_closing_starts_from_a_clean_count() -> None:
    breakers, clock, _ = make(consecutive_failures=3)
    fail(breakers, 3)
    clock.advance(30.0)
    succeed(breakers, 1)
    assert breakers.state(DEP) is CLOSED
    fail(breakers, 2)
    assert breakers.state(DEP) is CLOSED


def test_probe_failure_reopens_with_a_fresh_cooldown() -> None:
    breakers, clock, changes = make(consecutive_failures=1, cooldown=30.0, half_open_probes=2)
    open_breaker(breakers, clock)
    clock.advance(30.0)
    assert breakers.allow(DEP) and breakers.allow(DEP)
    clock.advance(5.0)
    breakers.record(DEP, True)
    breakers.record(DEP, False)
    assert breakers.state(DEP) is OPEN
    assert breakers.open_until(DEP) == clock.now + 30.0
    clock.advance(29.0)
    assert not breakers.allow(DEP)
    clock.advance(1.0)
    assert breakers.allow(DEP)
    assert changes == [
        (DEP, CLOSED, OPEN),
        (DEP, OPEN, HALF_OPEN),
        (DEP, HALF_OPEN, OPEN),
        (DEP, OPEN, HALF_OPEN),
    ]


def test_lost_probe_frees_its_slot_after_cooldown() -> None:
    breakers, clock, _ = make(consecutive_failures=1, cooldown=30.0)
    open_breaker(breakers, clock)
    clock.advance(30.0)
    assert breakers.allow(DEP)  # this probe never reports
    clock.advance(29.0)
    assert not breakers.allow(DEP)
    clock.advance(1.0)
    assert breakers.allow(DEP)
    breakers.record(DEP, True)
    assert breakers.state(DEP) is CLOSED


def test_release_gives_back_a_probe() -> None:
    breakers, clock, _ = make(consecutive_failures=1)
    open_breaker(breakers, clock)
    clock.advance(30.0)
    assert breakers.allow(DEP)
    assert not breakers.allow(DEP)
    breakers.release(DEP)
    assert breakers.state(DEP) is HALF_OPEN
    assert breakers.allow(DEP)


def test_release_while_closed_changes_nothing() -> None:
    breakers, _, changes = make(consecutive_failures=2)
    assert breakers.allow(DEP)
    breakers.release(DEP)
    breakers.release("never-seen")
    assert breakers.state(DEP) is CLOSED and changes == []


def test_late_reports_do_not_move_an_open_breaker() -> None:
    breakers, clock, changes = make(consecutive_failures=1)
    assert breakers.allow(DEP) and breakers.allow(DEP)  # two attempts in flight
    breakers.record(DEP, False)
    until = breakers.open_until(DEP)
    breakers.record(DEP, True)  # the other one, let through before the breaker opened
    assert breakers.state(DEP) is OPEN and breakers.open_until(DEP) == until
    clock.advance(30.0)
    breakers.record(DEP, True)  # half-open, but no probe is out: not a probe's report
    assert breakers.state(DEP) is HALF_OPEN
    assert changes == [(DEP, CLOSED, OPEN), (DEP, OPEN, HALF_OPEN)]


def test_force_open() -> None:
    breakers, clock, changes = make()
    breakers.force_open(DEP, clock.now + 10.0)
    assert breakers.state(DEP) is OPEN and not breakers.allow(DEP)
    breakers.force_open(DEP, clock.now + 5.0)  # never shortens
    breakers.force_open(DEP, clock.now + 20.0)  # extends, without a new transition
    assert breakers.open_until(DEP) == clock.now + 20.0
    breakers.force_open("other", clock.now - 1.0)  # already over: ignored
    assert breakers.state("other") is CLOSED
    clock.advance(20.0)
    assert breakers.allow(DEP)
    assert changes == [(DEP, CLOSED, OPEN), (DEP, OPEN, HALF_OPEN)]


def test_force_open_interrupts_half_open() -> None:
    breakers, clock, _ = make(consecutive_failures=1)
    open_breaker(breakers, clock)
    clock.advance(30.0)
    assert breakers.allow(DEP)
    breakers.force_open(DEP, clock.now + 30.0)
    breakers.record(DEP, True)  # the probe's report arrives while open again
    assert breakers.state(DEP) is OPEN


@pytest.mark.parametrize(
    "settings",
    [
        {"consecutive_failures": 0},
        {"min_requests": 0},
        {"half_open_probes": 0},
        {"error_ratio": 0.0},
        {"error_ratio": 1.5},
        {"window": 0.0},
        {"cooldown": -1.0},
    ],
)
def test_settings_are_checked(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerSettings(**settings)  # type: ignore[arg-type]

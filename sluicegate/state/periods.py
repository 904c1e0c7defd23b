"""Budget periods: calendar-aligned UTC days, ISO weeks and months, plus the lifetime period.

Budget counters are keyed by the period id computed here from the gateway's UTC clock, so a
counter starts fresh when its period begins and an id names exactly one span of time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

PERIODS = ("daily", "weekly", "monthly", "total")


def _utc(now: datetime) -> datetime:
    # A naive datetime is taken to be UTC already: the callers use datetime.now(UTC).
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _check(period: str) -> None:
    if period not in PERIODS:
        raise ValueError(f"unknown budget period {period!r}; expected one of {PERIODS}")


def period_id(period: str, now: datetime) -> str:
    """``d2026-12-04``, ``w2026-W49`` (ISO year and week), ``m2026-12`` or ``total``."""
    _check(period)
    now = _utc(now)
    if period == "daily":
        return f"d{now:%Y-%m-%d}"
    if period == "weekly":
        iso = now.isocalendar()
        return f"w{iso.year:04d}-W{iso.week:02d}"
    if period == "monthly":
        return f"m{now:%Y-%m}"
    return "total"


def period_start(period: str, now: datetime) -> datetime | None:
    """When the period containing ``now`` began (UTC); None for ``total``."""
    _check(period)
    midnight = _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "daily":
        return midnight
    if period == "weekly":
        return midnight - timedelta(days=midnight.weekday())
    if period == "monthly":
        return midnight.replace(day=1)
    return None


def period_end(period: str, now: datetime) -> datetime | None:
    """When the period containing ``now`` ends (the next one's start, UTC); None for ``total``."""
    start = period_start(period, now)
    if start is None:
        return None
    if period == "daily":
        return start + timedelta(days=1)
    if period == "weekly":
        return start + timedelta(days=7)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def seconds_until_end(period: str, now: datetime) -> float | None:
    """Retry-after of a budget refusal: until the period ends; None for ``total``."""
    end = period_end(period, now)
    return None if end is None else max(0.0, (end - _utc(now)).total_seconds())


class CurrentPeriods:
    """Period ids of the current UTC day; all of them change only at UTC midnight, so they
    are recomputed once a day rather than formatted on every request."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.day = -1  # days since the epoch, UTC
        self._ids: dict[str, str] = {}

    def id(self, period: str) -> str:
        day = int(self._clock() // 86400)
        if day != self.day:
            midnight = datetime.fromtimestamp(day * 86400, UTC)
            self._ids = {name: period_id(name, midnight) for name in PERIODS}
            self.day = day
        found = self._ids.get(period)
        return found if found is not None else period_id(period, datetime.now(UTC))

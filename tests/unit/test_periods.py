"""Budget periods: ids, starts and ends, calendar aligned in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sluicegate.state.periods import (
    PERIODS,
    CurrentPeriods,
    period_end,
    period_id,
    period_start,
    seconds_until_end,
)


def utc(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


def test_ids_of_an_ordinary_day() -> None:
    now = utc(2026, 12, 4, 15, 30)
    assert [period_id(p, now) for p in PERIODS] == ["d2026-12-04", "w2026-W49", "m2026-12", "total"]


@pytest.mark.parametrize(
    ("now", "week"),
    [
        (utc(2026, 1, 1), "w2026-W01"),  # Thursday: ISO week 1 of its own year
        (utc(2027, 1, 1), "w2026-W53"),  # Friday: still the last week of 2026
        (utc(2027, 1, 3, 23, 59, 59), "w2026-W53"),  # Sunday
        (utc(2027, 1, 4), "w2027-W01"),  # Monday
        (utc(2024, 12, 30), "w2025-W01"),  # Monday of a week mostly in 2025
        (utc(2021, 1, 3), "w2020-W53"),
    ],
)
def test_iso_week_ids_at_year_boundaries(now: datetime, week: str) -> None:
    assert period_id("weekly", now) == week


def test_week_runs_monday_to_monday() -> None:
    now = utc(2027, 1, 1, 12)
    assert period_start("weekly", now) == utc(2026, 12, 28)
    assert period_end("weekly", now) == utc(2027, 1, 4)


def test_month_ends_including_december_and_leap_february() -> None:
    assert period_end("monthly", utc(2026, 12, 31, 23, 59)) == utc(2027, 1, 1)
    assert period_end("monthly", utc(2028, 2, 29, 12)) == utc(2028, 3, 1)
    assert period_start("monthly", utc(2028, 2, 29, 12)) == utc(2028, 2, 1)
    assert period_end("monthly", utc(2026, 1, 31)) == utc(2026, 2, 1)
    assert period_id("monthly", utc(2026, 1, 31, 23, 59, 59)) == "m2026-01"


def test_leap_day() -> None:
    now = utc(2028, 2, 29, 6)
    assert period_id("daily", now) == "d2028-02-29"
    assert period_start("daily", now) == utc(2028, 2, 29)
    assert period_end("daily", now) == utc(2028, 3, 1)


def test_day_boundaries_are_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    now = datetime(2026, 12, 5, 8, 0, tzinfo=tokyo)  # 2026-12-04 23:00 UTC
    assert period_id("daily", now) == "d2026-12-04"
    assert period_end("daily", now) == utc(2026, 12, 5)
    assert period_id("daily", utc(2026, 12, 4, 23, 59, 59, 999999)) == "d2026-12-04"
    assert period_id("daily", utc(2026, 12, 5)) == "d2026-12-05"


def test_naive_datetimes_are_taken_as_utc() -> None:
    assert period_id("daily", datetime(2026, 12, 4, 23, 30)) == "d2026-12-04"


def test_total_has_no_bounds() -> None:
    now = utc(2026, 12, 4)
    assert period_start("total", now) is None
    assert period_end("total", now) is None
    assert seconds_until_end("total", now) is None


def test_seconds_until_end() -> None:
    assert seconds_until_end("daily", utc(2026, 12, 4, 23, 59, 30)) == 30.0
    assert seconds_until_end("weekly", utc(2026, 12, 13, 23)) == 3600.0


def test_unknown_period_is_an_error() -> None:
    with pytest.raises(ValueError, match="yearly"):
        period_id("yearly", utc(2026, 1, 1))


def test_current_periods_change_at_utc_midnight() -> None:
    now = [utc(2026, 12, 31, 23, 59, 59).timestamp()]
    current = CurrentPeriods(clock=lambda: now[0])
    assert [current.id(p) for p in PERIODS] == ["d2026-12-31", "w2026-W53", "m2026-12", "total"]
    now[0] += 1.0
    assert [current.id(p) for p in PERIODS] == ["d2027-01-01", "w2026-W53", "m2027-01", "total"]
    with pytest.raises(ValueError, match="hourly"):
        current.id("hourly")

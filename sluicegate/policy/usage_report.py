"""Usage reports and current-period spend from the usage ledger: shared by the CLI
(``sluicegate usage``) and the admin API (``/usage/report``, ``/key/info``, ``/partner/info``).

Report ranges are ``since <= created_at < until`` in UTC. A bare date as ``until`` means the
end of that day, so ``--since 2026-03-01 --until 2026-03-31`` is the whole of March.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal, cast

from sluicegate.state.periods import period_start
from sluicegate.store.ledger import GROUPS, METRICS, GroupBy, LedgerStore

__all__ = ["DEFAULT_GROUP_BY", "GROUPS", "METRICS", "current_spend", "usage_report"]

DEFAULT_GROUP_BY: tuple[str, ...] = GROUPS
COST_DIGITS = 9  # nano-USD, as the budget counters


def parse_group_by(text: str | Sequence[str]) -> list[str]:
    """``"partner,key"`` (or a list) -> ``["partner", "key"]``; refuses unknown names."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    groups: list[str] = []
    for part in (p.strip().lower() for p in parts):
        if not part:
            continue
        if part not in GROUPS:
            raise ValueError(f"{part[:40]!r} is not a grouping: use {', '.join(GROUPS)}")
        if part not in groups:
            groups.append(part)
    return groups


def parse_instant(text: str, *, end: bool = False) -> datetime:
    """An ISO 8601 date or date-time, UTC when no offset is given. A bare date is its
    00:00 UTC, or with ``end`` the next day's 00:00 (so the date itself is included)."""
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            start = datetime.combine(day, time(0), tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        when = datetime.fromisoformat(raw)
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError:
        raise ValueError(
            f"{raw[:40]!r} is not an ISO date (2026-03-01) or date-time (2026-03-01T12:00Z)"
        ) from None
    except OverflowError:  # the day after 9999-12-31, or past it once moved to UTC
        raise ValueError(f"{raw[:40]!r} is outside the years 1 to 9999 in UTC") from None


def report_range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    start = parse_instant(since) if since else None
    stop = parse_instant(until, end=True) if until else None
    if start is not None and stop is not None and stop <= start:
        raise ValueError("until must be later than since")
    return start, stop


def _clean(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name, value in out.items():
        if isinstance(value, datetime | date):
            out[name] = value.isoformat()
    out["cost_usd"] = round(float(out.get("cost_usd") or 0.0), COST_DIGITS)
    return out


def totals_of(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {m: 0 for m in METRICS}
    cost = 0.0
    for row in rows:
        for metric in METRICS[:-1]:
            totals[metric] += int(row.get(metric) or 0)
        cost += float(row.get("cost_usd") or 0.0)
    totals["cost_usd"] = round(cost, COST_DIGITS)
    return totals


async def usage_report(
    ledger: LedgerStore,
    *,
    group_by: Sequence[str],
    since: datetime | None = None,
    until: datetime | None = None,
    partner_id: str | None = None,
    key_id: str | None = None,
) -> dict[str, Any]:
    """``{"rows": [...], "totals": {...}}``: one row per group, totals over all rows."""
    rows = await ledger.report(
        group_by=cast(list[GroupBy], list(parse_group_by(group_by))),
        since=since,
        until=until,
        partner_id=partner_id,
        key_id=key_id,
    )
    cleaned = [_clean(row) for row in rows]
    return {"rows": cleaned, "totals": totals_of(cleaned)}


async def current_spend(
    ledger: LedgerStore,
    column: Literal["key_id", "partner_id"],
    owner_id: str,
    period: str | None,
    now: datetime | None = None,
) -> tuple[float, datetime | None]:
    """Spend of one key or partner in its current budget period (this month without a
    budget) and the period's start (None for ``total``)."""
    since = period_start(period or "monthly", now or datetime.now(UTC))
    spent = (await ledger.spend_since(column, since)).get(owner_id, 0.0)
    return round(float(spent), COST_DIGITS), since

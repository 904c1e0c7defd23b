"""The usage ledger on SQLite and PostgreSQL: batch inserts, spend sums and grouped reports
(expected values computed in Python from the same rows; costs are multiples of 1/8 so float
sums are exact in any order)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from sluicegate.store.ledger import METRICS, LedgerRow, LedgerStore
from sluicegate.store.migrate import upgrade
from sluicegate.store.tables import usage_ledger
from tests.integration.store_backends import Backend, backend_fixture  # noqa: F401

# 23:00 UTC on 2026-03-01: rows spread over two hours cross a UTC midnight.
T0 = datetime(2026, 3, 1, 23, 0, tzinfo=UTC)
KEYS = [("key_a", "alpha", "ptn_1", "acme"), ("key_b", "beta", "ptn_1", "acme"),
        ("key_c", "gamma", "ptn_2", "bolt"), ("key_d", "delta", None, None)]  # fmt: skip
MODELS = ["claude-sonnet-4-6", "gpt-4o", None]


@pytest.fixture
async def ledger(backend: Backend) -> AsyncIterator[LedgerStore]:
    await upgrade(backend.url, schema=backend.schema)
    engine = backend.engine()
    try:
        yield LedgerStore(engine)
    finally:
        await engine.dispose()


def _rows(count: int = 1000) -> list[LedgerRow]:
    rows = []
    for i in range(count):
        key_id, key_name, partner_id, partner_name = KEYS[i % 4]
        rows.append(
            LedgerRow(
                created_at=T0 + timedelta(seconds=i * 7.2),  # 1000 rows: 2 hours
                request_id=f"req_{i:05d}",
                endpoint="messages" if i % 2 else "chat.completions",
                stream=i % 3 == 0,
                status=200 if i % 10 else (429 if i % 20 else 502),
                latency_ms=12.5 + i,
                key_id=key_id,
                key_name=key_name,
                partner_id=partner_id,
                partner_name=partner_name,
                model=MODELS[i % 3],
                deployment="dep",
                upstream_model="upstream",
                input_tokens=i,
                output_tokens=2 * i,
                cache_read_tokens=i % 7,
                cache_write_tokens=i % 5,
                cost_usd=(i % 17) / 8,
                ttft_ms=None if i % 4 else 3.0,
            )
        )
    return rows


def _group_value(row: LedgerRow, dimension: str) -> Any:
    if dimension == "partner":
        return row.partner_name or row.partner_id
    if dimension == "key":
        return row.key_name or row.key_id
    if dimension == "model":
        return row.model
    return row.created_at.astimezone(UTC).strftime("%Y-%m-%d")


def _expected(rows: Sequence[LedgerRow], group_by: Sequence[str]) -> list[dict[str, Any]]:
    sums: dict[tuple[Any, ...], dict[str, Any]] = defaultdict(lambda: dict.fromkeys(METRICS, 0))
    for row in rows:
        item = sums[tuple(_group_value(row, g) for g in group_by)]
        item["requests"] += 1
        item["errors"] += row.status >= 400
        for name in METRICS[2:]:
            item[name] += getattr(row, name)
    result = [{**dict(zip(group_by, key, strict=True)), **m} for key, m in sums.items()]
    for item in result:
        item["cost_usd"] = float(item["cost_usd"])

    def order(item: dict[str, Any]) -> tuple[Any, ...]:
        others = tuple((item[g] is None, item[g] or "") for g in group_by if g != "day")
        return (item.get("day") or "", -item["cost_usd"], *others)

    return sorted(result, key=order)


async def test_insert_many_thousand_rows(ledger: LedgerStore) -> None:
    rows = _rows()
    await ledger.insert_many(rows[:1])
    await ledger.insert_many(rows[1:])
    await ledger.insert_many([])
    assert await ledger.count() == 1000
    assert await ledger.request_ids() == {r.request_id for r in rows}


async def test_insert_many_fits_odd_values_to_the_columns(
    ledger: LedgerStore, backend: Backend
) -> None:
    row = LedgerRow(
        created_at=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=-5))),
        request_id="r" * 100,
        endpoint="e" * 50,
        stream=True,
        status=200,
        latency_ms=math.nan,
        key_name="k" * 300,
        model="m" * 300,
        error_type="x" * 100,
        input_tokens=2**40,
        output_tokens=-3,
        cost_usd=math.inf,
        ttft_ms=math.nan,
        upstream_request_id="u" * 500,
    )
    naive = LedgerRow(
        created_at=datetime(2026, 1, 1, 12),  # naive: read as UTC
        request_id="naive",
        endpoint="messages",
        stream=False,
        status=200,
        latency_ms=1.0,
        cache_read_tokens=None,  # type: ignore[arg-type]
    )
    await ledger.insert_many([row, naive])
    engine = backend.engine()
    try:
        async with engine.connect() as conn:
            stored = (await conn.execute(sa.select(usage_ledger).order_by(usage_ledger.c.id))).all()
    finally:
        await engine.dispose()
    first, second = stored
    assert first.created_at == datetime(2026, 1, 1, 17, tzinfo=UTC)
    assert (len(first.request_id), len(first.endpoint), len(first.key_name)) == (64, 32, 200)
    assert (len(first.model), len(first.error_type), len(first.upstream_request_id)) == (
        256,
        64,
        200,
    )
    assert (first.input_tokens, first.output_tokens) == (2**31 - 1, 0)
    assert (first.cost_usd, first.latency_ms, first.ttft_ms) == (0.0, 0.0, None)
    assert first.stream is True and first.id < second.id
    assert second.created_at == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert second.cache_read_tokens == 0


async def test_spend_since(ledger: LedgerStore) -> None:
    rows = _rows(400)
    await ledger.insert_many(rows)
    since = T0 + timedelta(minutes=30)
    for column in ("key_id", "partner_id"):
        for start in (None, since, T0 + timedelta(days=1)):
            expected: dict[str, float] = defaultdict(float)
            for row in rows:
                owner = getattr(row, column)
                if owner is not None and (start is None or row.created_at >= start):
                    expected[owner] += row.cost_usd
            assert await ledger.spend_since(column, start) == dict(expected)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="column"):
        await ledger.spend_since("model", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        await ledger.spend_since("key_id", datetime(2026, 1, 1))


GROUPINGS: list[list[str]] = [
    [],
    ["partner"],
    ["key"],
    ["model"],
    ["day"],
    ["partner", "model"],
    ["day", "key"],
    ["partner", "key", "model", "day"],
]


async def test_report_groupings(ledger: LedgerStore) -> None:
    rows = _rows()
    await ledger.insert_many(rows)
    for group_by in GROUPINGS:
        assert await ledger.report(group_by=group_by) == _expected(rows, group_by), group_by  # type: ignore[arg-type]
    days = await ledger.report(group_by=["day"])
    assert [d["day"] for d in days] == ["2026-03-01", "2026-03-02"]
    assert sum(d["requests"] for d in days) == 1000
    assert days[0]["requests"] == 500  # 23:00:00 .. 23:59:56.4 UTC, 7.2 s apart


async def test_report_filters(ledger: LedgerStore) -> None:
    rows = _rows()
    await ledger.insert_many(rows)
    since, until = T0 + timedelta(minutes=20), T0 + timedelta(minutes=90)
    window = [r for r in rows if since <= r.created_at < until]
    got = await ledger.report(group_by=["key", "day"], since=since, until=until)
    assert got == _expected(window, ["key", "day"])
    acme = [r for r in window if r.partner_id == "ptn_1"]
    got = await ledger.report(group_by=["model"], since=since, until=until, partner_id="ptn_1")
    assert got == _expected(acme, ["model"])
    gamma = [r for r in rows if r.key_id == "key_c"]
    assert await ledger.report(group_by=["partner"], key_id="key_c") == _expected(
        gamma, ["partner"]
    )
    assert await ledger.report(group_by=["partner"], key_id="nope") == []
    assert await ledger.report(group_by=[], since=T0 + timedelta(days=2)) == []


async def test_report_day_follows_utc_across_midnight(ledger: LedgerStore) -> None:
    plus_five = timezone(timedelta(hours=5))
    minus_eight = timezone(timedelta(hours=-8))
    moments = [
        (datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC), 0.5),  # 2026-03-01
        (datetime(2026, 3, 2, 0, 0, tzinfo=UTC), 0.25),  # 2026-03-02
        (datetime(2026, 3, 2, 4, 30, tzinfo=plus_five), 1.0),  # 23:30 UTC on 03-01
        (datetime(2026, 3, 1, 17, 0, tzinfo=minus_eight), 2.0),  # 01:00 UTC on 03-02
    ]
    rows = [
        LedgerRow(
            created_at=at,
            request_id=f"r{i}",
            endpoint="messages",
            stream=False,
            status=200,
            latency_ms=1.0,
            model="m",
            cost_usd=cost,
        )
        for i, (at, cost) in enumerate(moments)
    ]
    await ledger.insert_many(rows)
    report = await ledger.report(group_by=["day", "model"])
    assert [(r["day"], r["model"], r["requests"], r["cost_usd"]) for r in report] == [
        ("2026-03-01", "m", 2, 1.5),
        ("2026-03-02", "m", 2, 2.25),
    ]
    since = datetime(2026, 3, 2, tzinfo=UTC)
    assert [r["requests"] for r in await ledger.report(group_by=["day"], since=since)] == [2]
    assert await ledger.report(group_by=[], until=since) == [
        {
            "requests": 2,
            "errors": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "cost_usd": 1.5,
        }
    ]


async def test_report_orders_by_day_then_cost(ledger: LedgerStore) -> None:
    def row(i: int, day: int, key: str | None, cost: float) -> LedgerRow:
        return LedgerRow(
            created_at=datetime(2026, 3, day, 12, tzinfo=UTC),
            request_id=f"r{i}",
            endpoint="messages",
            stream=False,
            status=500 if cost == 0 else 200,
            latency_ms=1.0,
            key_id=key,
            key_name=key,
            cost_usd=cost,
        )

    specs = [(2, "a", 1.0), (1, "b", 0.5), (1, "c", 3.0), (2, None, 0.0), (1, None, 0.5)]
    specs.append((2, "z", 1.0))
    await ledger.insert_many([row(i, *spec) for i, spec in enumerate(specs)])
    report = await ledger.report(group_by=["day", "key"])
    assert [(r["day"], r["key"], r["cost_usd"], r["errors"]) for r in report] == [
        ("2026-03-01", "c", 3.0, 0),
        ("2026-03-01", "b", 0.5, 0),
        ("2026-03-01", None, 0.5, 0),
        ("2026-03-02", "a", 1.0, 0),
        ("2026-03-02", "z", 1.0, 0),
        ("2026-03-02", None, 0.0, 1),
    ]
    with pytest.raises(ValueError, match="cannot group by"):
        await ledger.report(group_by=["week"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="not a string"):
        await ledger.report(group_by="day")  # type: ignore[arg-type]

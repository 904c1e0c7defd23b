"""The per-request ledger row (a plain tuple, for speed) lines up with the ledger's columns,
and reads back exactly like the same row given as a LedgerRow."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from sluicegate.api.sse import Usage
from sluicegate.record import RequestRecord
from sluicegate.store.db import create_engine
from sluicegate.store.ledger import LEDGER_COLUMNS, LedgerRow, LedgerStore, sqlite_timestamp
from sluicegate.store.migrate import upgrade
from sluicegate.store.tables import usage_ledger


def _record() -> RequestRecord:
    record = RequestRecord("req_1", "messages")
    record.key_id, record.key_name = "key_1", "app"
    record.partner_id, record.partner_name = "ptn_1", "acme"
    record.model, record.deployment, record.upstream_model = "m", "m", "m-up"
    record.stream, record.status, record.error_type = True, 200, "x" * 100
    record.usage = Usage(10, 20, 3, 4)
    record.cost_usd = 0.25
    record.upstream_request_id = "u" * 300
    record.session_id, record.agent_id = "s" * 300, "agent"
    return record


def test_values_follow_the_column_order_and_fit_the_columns() -> None:
    values = dict(zip(LEDGER_COLUMNS, _record().ledger_values(), strict=True))
    assert values["request_id"] == "req_1" and values["partner_name"] == "acme"
    assert (values["input_tokens"], values["output_tokens"]) == (10, 20)
    assert (values["cache_read_tokens"], values["cache_write_tokens"]) == (3, 4)
    assert values["cost_usd"] == 0.25 and values["stream"] is True
    assert len(values["error_type"]) == 64 and len(values["client_session_id"]) == 200
    assert len(values["upstream_request_id"]) == 200 and values["client_agent_id"] == "agent"
    assert abs(values["created_at"] - time.time()) < 60  # unix seconds


def test_negative_or_huge_counts_from_an_upstream_are_clamped() -> None:
    record = _record()
    record.usage = Usage(-5, 2**40, 0, 0)
    values = dict(zip(LEDGER_COLUMNS, record.ledger_values(), strict=True))
    assert (values["input_tokens"], values["output_tokens"]) == (0, 2**31 - 1)


async def test_tuple_and_dataclass_rows_read_back_alike(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/l.db"
    await upgrade(url)
    engine = create_engine(url)
    try:
        store = LedgerStore(engine)
        values = _record().ledger_values()
        fields = dict(zip(LEDGER_COLUMNS, values, strict=True))
        fields["created_at"] = datetime.fromtimestamp(fields["created_at"], UTC)
        as_row = LedgerRow(**fields)
        as_row.request_id = "req_2"
        await store.insert_many([values, as_row])
        report = await store.report(group_by=["key"])
        assert report[0]["requests"] == 2 and report[0]["input_tokens"] == 20
        assert report[0]["cost_usd"] == 0.5
        assert await store.request_ids() == {"req_1", "req_2"}
    finally:
        await engine.dispose()


def test_sqlite_batches_use_a_few_fixed_statement_sizes() -> None:
    """Every batch is cut into the same few statement sizes (kept in the driver's statement
    cache) and the chunks cover the batch exactly, in order."""
    from sluicegate.store.ledger import _SQLITE_CHUNK_SIZES, _sqlite_chunks

    sizes_seen: set[int] = set()
    for count in range(0, 1300):
        chunks = _sqlite_chunks(count)
        position = 0
        for start, size in chunks:
            assert start == position
            position += size
            sizes_seen.add(size)
        assert position == count
    assert sizes_seen == set(_SQLITE_CHUNK_SIZES)


@pytest.mark.parametrize(
    "unix",
    [0.0, 1_764_900_000.0, 1_764_900_000.123456, 1_764_903_599.9999996, 1_800_000_000.5],
)
def test_sqlite_timestamps_match_the_datetime_format(unix: float) -> None:
    """What the SQLite insert writes for ``created_at`` is what SQLAlchemy's DateTime would
    write for the same instant (so reads, day grouping and ranges see it alike)."""
    expected = datetime.fromtimestamp(unix, UTC).replace(tzinfo=None)
    assert sqlite_timestamp(unix) == expected.isoformat(" ", "microseconds")


async def test_created_at_reads_back_as_the_request_time(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/l.db"
    await upgrade(url)
    engine = create_engine(url)
    try:
        store = LedgerStore(engine)
        values = _record().ledger_values()
        await store.insert_many([values])
        rows = await store.report(group_by=["day"])
        day = datetime.fromtimestamp(values[0], UTC).strftime("%Y-%m-%d")
        assert [row["day"] for row in rows] == [day]
        since = datetime.fromtimestamp(values[0] - 1, UTC)
        assert await store.spend_since("key_id", since) == {"key_1": 0.25}
        later = datetime.fromtimestamp(values[0] + 1, UTC)
        assert await store.spend_since("key_id", later) == {}
    finally:
        await engine.dispose()


async def test_absent_values_read_back_as_null_and_the_stream_flag_as_a_boolean(
    tmp_path: Path,
) -> None:
    """The SQLite insert binds an absent value as NaN (SQLite stores it as NULL) and the
    stream flag as 0/1: what is read back is exactly None and a boolean, never a NaN."""
    url = f"sqlite:///{tmp_path}/l.db"
    await upgrade(url)
    engine = create_engine(url)
    try:
        store = LedgerStore(engine)
        bare = RequestRecord("req_bare", "messages")  # no partner, usage, error, stream ...
        bare.key_id, bare.key_name, bare.status = "key_1", "app", 200
        full = _record()
        await store.insert_many([bare.ledger_values(), full.ledger_values()])
        async with engine.connect() as conn:
            query = sa.select(usage_ledger).order_by(usage_ledger.c.id)
            first, second = (await conn.execute(query)).all()
            # NULL in SQL terms too (a NaN would not match IS NULL)
            null = sa.and_(usage_ledger.c.ttft_ms.is_(None), usage_ledger.c.partner_id.is_(None))
            nulls = await conn.scalar(sa.select(sa.func.count()).where(null))
    finally:
        await engine.dispose()
    absent = ["partner_id", "partner_name", "model", "deployment", "upstream_model"]
    absent += ["error_type", "ttft_ms", "upstream_request_id", "client_session_id"]
    assert all(getattr(first, name) is None for name in (*absent, "client_agent_id"))
    assert first.stream is False and second.stream is True and nulls == 1
    assert (second.partner_name, second.error_type, second.client_agent_id) == (
        "acme",
        "x" * 64,
        "agent",
    )
    assert (first.key_id, first.input_tokens, first.cost_usd) == ("key_1", 0, 0.0)

"""LedgerWriter: batching, interval flushes, flush on stop, database outages (rows kept and
written later, one warning, no secrets logged), max_buffer dropping the oldest rows, rows the
database refuses. A real SQLite ledger; outages are a PostgreSQL URL on a closed port."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from sluicegate.store.db import create_engine
from sluicegate.store.ledger import LedgerRow, LedgerStore
from sluicegate.store.ledger_writer import LedgerWriter
from sluicegate.store.migrate import upgrade

DOWN_URL = "postgresql://sg:hunter2-secret@127.0.0.1:1/ledger"


class Recording(LedgerStore):
    """A real store that counts write attempts and remembers the size of every batch written."""

    def __init__(self, store: LedgerStore) -> None:
        super().__init__(store._engine)
        self.batches: list[int] = []
        self.attempts = 0

    async def insert_many(self, rows: Sequence[LedgerRow]) -> None:
        self.attempts += 1
        await super().insert_many(rows)
        self.batches.append(len(rows))


class RefusesBad(Recording):
    """Refuses (like a constraint would) any batch holding a row whose id starts "bad"."""

    async def insert_many(self, rows: Sequence[LedgerRow]) -> None:
        if any(r.request_id.startswith("bad") for r in rows):
            raise IntegrityError("INSERT", {}, Exception("constraint"))
        await super().insert_many(rows)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Recording]:
    url = f"sqlite:///{tmp_path}/ledger.db"
    await upgrade(url)
    engine = create_engine(url)
    try:
        yield Recording(LedgerStore(engine))
    finally:
        await engine.dispose()


@pytest.fixture
async def down() -> AsyncIterator[Recording]:
    engine = create_engine(DOWN_URL)
    try:
        yield Recording(LedgerStore(engine))
    finally:
        await engine.dispose()


def _row(i: int | str) -> LedgerRow:
    return LedgerRow(
        created_at=datetime.now(UTC),
        request_id=f"req_{i}" if isinstance(i, int) else i,
        endpoint="messages",
        stream=False,
        status=200,
        latency_ms=1.0,
        cost_usd=0.125,
    )


async def _until(condition: object, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_full_batches_are_written_at_once_the_rest_at_stop(store: Recording) -> None:
    writer = LedgerWriter(store, flush_interval=60, batch_size=100)
    await writer.start()
    for i in range(250):
        writer.add(_row(i))
    assert writer.pending == 250
    await _until(lambda: writer.pending == 0)
    assert store.batches == [100, 100, 50]
    for i in range(250, 260):
        writer.add(_row(i))
    await asyncio.sleep(0.1)
    assert writer.pending == 10  # below batch_size: waits for the interval (60 s)
    started = time.monotonic()
    await writer.stop()
    assert time.monotonic() - started < 1.0
    assert writer.pending == 0 and writer.dropped == 0
    assert store.batches == [100, 100, 50, 10]
    assert await store.request_ids() == {f"req_{i}" for i in range(260)}


async def test_interval_flush_and_explicit_flush(store: Recording) -> None:
    writer = LedgerWriter(store, flush_interval=0.05, batch_size=1000)
    await writer.start()
    try:
        writer.add(_row(1))
        writer.add(_row(2))
        await _until(lambda: writer.pending == 0)
        assert await store.count() == 2
    finally:
        await writer.stop()
    idle = LedgerWriter(store, flush_interval=60, batch_size=3)  # never started
    for i in range(3, 10):
        idle.add(_row(i))
    await idle.flush()
    assert idle.pending == 0 and store.batches[-3:] == [3, 3, 1]
    assert await store.count() == 9


async def test_outage_keeps_rows_and_writes_them_later(
    store: Recording, down: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sluicegate.ledger")
    writer = LedgerWriter(down, flush_interval=0.05, batch_size=10)
    await writer.start()
    try:
        for i in range(25):
            writer.add(_row(i))
        for i in range(25, 225):  # full batches keep arriving: no busy retrying
            writer.add(_row(i))
            await asyncio.sleep(0.0015)
        await asyncio.sleep(0.1)
        assert writer.pending == 225 and writer.dropped == 0
        assert 3 <= down.attempts <= 20, down.attempts
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "ConnectionRefusedError" in warnings[0].getMessage()
        writer.store = store  # the database is back
        await _until(lambda: writer.pending == 0)
    finally:
        await writer.stop()
    assert await store.request_ids() == {f"req_{i}" for i in range(225)}
    assert writer.dropped == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("resumed" in m for m in messages)
    assert all(r.exc_info is None for r in caplog.records)  # no traceback, no message text
    assert not any("hunter2" in m for m in messages)


async def test_rows_keep_their_order_across_an_outage(store: Recording, down: Recording) -> None:
    writer = LedgerWriter(down, flush_interval=60, batch_size=4)
    for i in range(10):
        writer.add(_row(i))
    await writer.flush()
    assert writer.pending == 10
    writer.store = store
    await writer.flush()
    assert store.batches == [4, 4, 2]
    engine_ids = await store.request_ids()
    assert engine_ids == {f"req_{i}" for i in range(10)}


async def test_max_buffer_drops_the_oldest(
    store: Recording, down: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="sluicegate.ledger")
    writer = LedgerWriter(down, flush_interval=60, batch_size=20, max_buffer=50)
    for i in range(40):
        writer.add(_row(i))
    await writer.flush()  # fails: rows go back to the buffer
    for i in range(40, 80):
        writer.add(_row(i))
    assert (writer.pending, writer.dropped) == (50, 30)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "max_buffer=50" in errors[0]
    writer.store = store
    await writer.flush()
    assert await store.request_ids() == {f"req_{i}" for i in range(30, 80)}
    assert (writer.pending, writer.dropped) == (0, 30)


async def test_stop_is_bounded_while_the_database_is_down(
    down: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LedgerWriter(down, flush_interval=0.05, batch_size=10, stop_timeout=0.5)
    await writer.start()
    for i in range(15):
        writer.add(_row(i))
    started = time.monotonic()
    await writer.stop()
    assert time.monotonic() - started < 2.0
    assert (writer.pending, writer.dropped) == (0, 15)
    assert any("before shutdown" in r.getMessage() for r in caplog.records)


async def test_stop_retries_until_the_database_answers(store: Recording, down: Recording) -> None:
    writer = LedgerWriter(down, flush_interval=60, batch_size=10, stop_timeout=5)
    await writer.start()
    for i in range(12):
        writer.add(_row(i))

    async def recover() -> None:
        await asyncio.sleep(0.5)
        writer.store = store

    recovering = asyncio.create_task(recover())
    await writer.stop()
    await recovering
    assert (writer.pending, writer.dropped) == (0, 0)
    assert await store.count() == 12


async def test_a_refused_row_is_dropped_not_the_batch(store: Recording) -> None:
    refusing = RefusesBad(store)
    writer = LedgerWriter(refusing, flush_interval=60, batch_size=5)
    for i in range(4):
        writer.add(_row(i))
    writer.add(_row("bad_1"))
    writer.add(_row(4))
    await writer.flush()
    assert (writer.pending, writer.dropped) == (0, 1)
    assert await store.request_ids() == {f"req_{i}" for i in range(5)}


def test_add_is_synchronous_and_validates_settings() -> None:
    with pytest.raises(ValueError):
        LedgerWriter(LedgerStore(create_engine("sqlite://")), batch_size=0)
    writer = LedgerWriter(LedgerStore(create_engine("sqlite://")), max_buffer=3)
    for i in range(5):
        writer.add(_row(i))  # no event loop running: add never needs one
    assert (writer.pending, writer.dropped) == (3, 2)

"""The gateway's ledger store on a SQLite file writes on a connection and thread of its own:
rows land as through the engine, a write cut off by a shutdown deadline is neither lost nor
written twice, a locked database is waited for, and close() ends the thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sluicegate.store.db import create_engine
from sluicegate.store.ledger import LedgerRow, LedgerStore
from sluicegate.store.ledger_writer import LedgerWriter, _refused_for_data
from sluicegate.store.migrate import upgrade


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[tuple[Path, LedgerStore]]:
    """The file, and a store that writes on its own thread."""
    path = tmp_path / "ledger.db"
    await upgrade(f"sqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}")
    try:
        yield path, LedgerStore(engine, own_thread=True)
    finally:
        await engine.dispose()


def _row(i: int) -> LedgerRow:
    return LedgerRow(
        created_at=datetime.now(UTC),
        request_id=f"req_{i}",
        endpoint="messages",
        stream=False,
        status=200,
        latency_ms=1.0,
        key_id="key_1",
        input_tokens=10 + i,
        cost_usd=0.25,
    )


def _ledger_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sluicegate-ledger")]


async def test_rows_written_on_the_own_thread_read_back_through_the_engine(
    database: tuple[Path, LedgerStore],
) -> None:
    _, store = database
    assert store.writes_run_to_end
    await store.insert_many([_row(i) for i in range(450)])  # chunks of 400, 25, 25
    assert await store.count() == 450
    assert await store.request_ids() == {f"req_{i}" for i in range(450)}
    spend = await store.spend_since("key_id", None)
    assert spend == {"key_1": pytest.approx(450 * 0.25)}
    assert _ledger_threads()
    await store.close()
    for _ in range(200):  # the idle thread leaves once it sees the shutdown
        if not _ledger_threads():
            break
        await asyncio.sleep(0.01)
    assert not _ledger_threads()
    await store.insert_many([_row(450)])  # a store closed (writer stopped) can write again
    assert await store.count() == 451
    await store.close()


async def test_a_write_cut_off_by_the_deadline_is_written_once(
    database: tuple[Path, LedgerStore],
) -> None:
    path, store = database
    writer = LedgerWriter(store, flush_interval=60, batch_size=100)
    for i in range(150):
        writer.add(_row(i))
    # Another connection holds the write lock: the store's BEGIN IMMEDIATE waits for it.
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    flush = asyncio.create_task(writer.flush())
    await asyncio.sleep(0.3)
    flush.cancel()  # as the shutdown deadline does
    await asyncio.sleep(0.1)
    assert not flush.done()  # the write begun is waited for, not abandoned
    blocker.execute("COMMIT")
    blocker.close()
    with pytest.raises(asyncio.CancelledError):
        await flush
    # The batch in progress was written and not handed back; the next one was not begun.
    assert await store.request_ids() == {f"req_{i}" for i in range(100)}
    assert writer.pending == 50 and writer.dropped == 0
    await writer.stop()
    assert await store.count() == 150 and writer.pending == 0


async def test_the_driver_s_data_errors_drop_a_row_its_outages_keep_it() -> None:
    assert _refused_for_data(sqlite3.IntegrityError("NOT NULL constraint failed"))
    assert _refused_for_data(sqlite3.InterfaceError("Error binding parameter 3"))
    assert not _refused_for_data(sqlite3.OperationalError("database is locked"))
    assert not _refused_for_data(sqlite3.OperationalError("disk I/O error"))


async def test_an_in_memory_database_is_written_through_the_engine() -> None:
    engine = create_engine("sqlite://")
    try:
        assert not LedgerStore(engine, own_thread=True).writes_run_to_end
    finally:
        await engine.dispose()

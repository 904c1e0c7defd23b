"""Several starters migrating a fresh SQLite database at once, as `serve --workers N` does on a
first start. Deterministic: the races are forced, not hoped for."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

from sluicegate.store import migrate
from sluicegate.store.db import create_engine
from sluicegate.store.migrate import current_revision, head_revision, upgrade


async def test_upgrades_in_one_process_never_overlap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Alembic keeps the running migration in process-global proxies: two overlapping
    upgrades in one process clobber each other (seen as KeyError 'script' and "table
    already exists"). The widened window below makes any overlap certain without the lock."""
    running = peak = 0
    original = migrate._upgrade

    async def widened(engine: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        try:
            await original(engine)
        finally:
            running -= 1

    monkeypatch.setattr(migrate, "_upgrade", widened)
    url = f"sqlite:///{tmp_path}/fresh.db"
    await asyncio.gather(*(upgrade(url) for _ in range(3)))
    assert peak == 1
    assert await current_revision(url) == head_revision()


async def test_connecting_waits_while_another_process_holds_a_new_file(tmp_path: Path) -> None:
    """Another process holds the write lock of a new (not yet WAL) file, as a sibling worker
    migrating it does. Switching to WAL then fails at once with "database is locked" (SQLite
    skips busy_timeout to avoid a deadlock); the gateway must wait and retry instead."""
    path = tmp_path / "new.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE other_process (x INTEGER)")
    releaser = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    releaser.start()
    engine = create_engine(f"sqlite:///{path}")
    try:
        async with engine.connect() as connection:
            mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
        assert str(mode).lower() == "wal"
    finally:
        releaser.join()
        holder.close()
        await engine.dispose()

"""Buffered, batched writing of usage-ledger rows.

The data path calls :meth:`LedgerWriter.add` (synchronous, O(1), never waits on the
database); a background task writes the buffer every ``flush_interval`` seconds, or sooner
once ``batch_size`` rows wait, in batches of ``batch_size`` rows (one transaction each).

* Database unreachable: rows stay buffered, in order, and are retried every interval; one
  warning per outage (logger ``sluicegate.ledger``; the exception type only, since a
  message may quote a database URL).
* More than ``max_buffer`` rows waiting: the oldest are dropped and counted
  (:attr:`LedgerWriter.dropped`), with an error log at the start of each dropping episode.
* A batch the database refuses for its data (not for being unreachable) is written row by
  row, so a single bad row is dropped (and counted) instead of blocking the ledger.
* :meth:`LedgerWriter.stop` flushes everything, retrying for up to ``stop_timeout`` seconds.

``add`` must be called from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import deque

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, StatementError

from sluicegate.store.ledger import LedgerItem, LedgerStore

__all__ = ["LedgerWriter"]

log = logging.getLogger("sluicegate.ledger")

_STOP_RETRY_PAUSE = 0.2


def _refused_for_data(exc: Exception) -> bool:
    """The database answered and refused these values (retrying the batch cannot help)."""
    if isinstance(exc, DataError | IntegrityError | TypeError | ValueError):
        return True
    # The same, from the sqlite3 module itself (the store's own SQLite connection).
    if isinstance(exc, sqlite3.DataError | sqlite3.IntegrityError | sqlite3.InterfaceError):
        return True
    # A value the driver or a column type could not convert (not a database round trip).
    return isinstance(exc, StatementError) and not isinstance(exc, DBAPIError)


class LedgerWriter:
    """Buffers ledger rows and writes them in the background; see the module docstring."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        flush_interval: float = 1.0,
        batch_size: int = 1000,
        max_buffer: int = 100_000,
        stop_timeout: float = 10.0,
    ) -> None:
        if flush_interval <= 0 or batch_size < 1 or max_buffer < 1:
            raise ValueError("flush_interval must be > 0, batch_size and max_buffer >= 1")
        #: The store written to (tests may swap it).
        self.store = store
        self._interval = flush_interval
        self._batch_size = batch_size
        self._max_buffer = max_buffer
        self._stop_timeout = stop_timeout
        self._buffer: deque[LedgerItem] = deque()
        self._in_flight = 0
        self._dropped = 0
        self._dropping = False
        self._outage = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def dropped(self) -> int:
        """Rows lost so far (buffer overflow, rows refused by the database, shutdown)."""
        return self._dropped

    @property
    def pending(self) -> int:
        """Rows added and not yet written (buffered or being written)."""
        return len(self._buffer) + self._in_flight

    def add(self, row: LedgerItem) -> None:
        self._buffer.append(row)
        if len(self._buffer) > self._max_buffer:
            self._drop_oldest()
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    def _drop_oldest(self) -> None:
        excess = len(self._buffer) - self._max_buffer
        for _ in range(excess):
            self._buffer.popleft()
        self._dropped += excess
        if not self._dropping:
            self._dropping = True
            log.error(
                "ledger buffer full (max_buffer=%d): dropping the oldest rows until the "
                "database accepts writes again",
                self._max_buffer,
            )

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._stop_event.clear()
            self._task = asyncio.create_task(self._run(), name="sluicegate-ledger-writer")

    async def stop(self) -> None:
        """Stop the background task and write everything buffered (bounded retries)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._stop_timeout
        self._stopping = True
        self._stop_event.set()
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            # Let a write in progress finish rather than cancel it half-committed.
            done, _ = await asyncio.wait({task}, timeout=self._stop_timeout)
            if not done:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while self._buffer:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    ok = await self._flush()
            except TimeoutError:
                break
            if not ok:
                await asyncio.sleep(min(_STOP_RETRY_PAUSE, max(0.0, deadline - loop.time())))
        if self._buffer:
            lost = len(self._buffer)
            self._buffer.clear()
            self._dropped += lost
            log.error("ledger: %d rows could not be written before shutdown", lost)
        await self.store.close()

    async def flush(self) -> None:
        """Write the rows buffered now, in batches of ``batch_size``. On a database failure
        the unwritten rows stay buffered (and :attr:`pending`) for the next attempt."""
        await self._flush()

    async def _flush(self) -> bool:
        """:meth:`flush`; ``False`` if the database failed."""
        async with self._lock:
            todo = len(self._buffer)
            while todo > 0 and self._buffer:
                size = min(todo, self._batch_size, len(self._buffer))
                batch = [self._buffer.popleft() for _ in range(size)]
                self._in_flight = size
                try:
                    cancelled = await self._write_to_end(batch)
                except BaseException as exc:
                    self._restore(batch)  # failed (or cancelled from within): not written
                    if not isinstance(exc, Exception):
                        raise
                    self._failed(exc)
                    return False
                finally:
                    self._in_flight = 0
                todo -= size
                self._recovered()
                if cancelled:  # (shutdown deadline) after the batch was written
                    raise asyncio.CancelledError
            return True

    async def _write_to_end(self, batch: list[LedgerItem]) -> bool:
        """:meth:`_write`; whether this task was cancelled meanwhile. A store whose writes
        run to their end once begun (its own SQLite thread) is waited for even then: the
        batch may have been written, and rows handed back to the buffer would be written
        twice. Other stores roll back when cancelled (and may wait on an unreachable
        database), so the cancellation goes to them."""
        if not self.store.writes_run_to_end:
            await self._write(batch)
            return False
        write = asyncio.ensure_future(self._write(batch))
        cancelled = False
        while not write.done():
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                cancelled = True  # bounded by SQLite's busy timeout: wait for it
        write.result()  # its own failure, if any
        return cancelled

    async def _write(self, batch: list[LedgerItem]) -> None:
        try:
            await self.store.insert_many(batch)
        except Exception as exc:
            if not _refused_for_data(exc):
                raise
            await self._write_one_by_one(batch)

    async def _write_one_by_one(self, batch: list[LedgerItem]) -> None:
        for index, row in enumerate(batch):
            try:
                await self.store.insert_many([row])
            except Exception as exc:
                if not _refused_for_data(exc):
                    del batch[:index]  # rows written or dropped must not be retried
                    raise
                self._dropped += 1
                log.error("ledger: the database refused a row (%s); dropped", type(exc).__name__)

    def _restore(self, batch: list[LedgerItem]) -> None:
        self._buffer.extendleft(reversed(batch))
        if len(self._buffer) > self._max_buffer:
            self._drop_oldest()

    def _failed(self, exc: Exception) -> None:
        if not self._outage:
            self._outage = True
            log.warning(
                "ledger: writing to the database failed (%s); %d rows kept, retrying",
                type(exc).__name__,
                len(self._buffer),
            )

    def _recovered(self) -> None:
        if self._outage:
            self._outage = False
            log.warning("ledger: database writes resumed")
        if self._dropping:
            self._dropping = False
            log.error("ledger: %d rows dropped in total so far", self._dropped)

    async def _run(self) -> None:
        ok = True
        while not self._stopping:
            # Normally the next interval or a full batch, whichever comes first; after a
            # failure a full interval, however many rows arrive meanwhile.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await (self._wake if ok else self._stop_event).wait()
            if self._stopping:
                return
            self._wake.clear()
            try:
                ok = await self._flush()
            except Exception:  # pragma: no cover - _flush keeps database errors to itself
                log.exception("ledger: unexpected error in the writer")
                ok = False

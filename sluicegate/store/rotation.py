"""Master-key rotation: re-wrap every stored secret under the keyring's primary key.

Two tables hold sealed values: ``provider_credentials`` (context ``credential:<name>``) and
``signing_keys`` (context ``signing-key:<id>``). :func:`rotate_sealed` re-wraps each row whose
``master_key_id`` is not the primary's with :meth:`Keyring.rewrap` (only the data key is
re-wrapped; the ciphertext is kept), so the old master key can then be removed.

Each row is written with a compare-and-set (``WHERE sealed = <the value read>``): a
credential replaced while the rotation runs is never overwritten with the older secret. A
lost race is re-read and retried (the new value is usually sealed under the primary already,
then there is nothing left to do). Credentials get a later ``updated_at`` so that running
instances reload them. Running it again changes nothing: it is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import Column, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sluicegate.crypto.envelope import Keyring, SealError
from sluicegate.store.credentials import credential_context, next_stamp
from sluicegate.store.db import SQLITE_BEGIN
from sluicegate.store.fields import Stamper
from sluicegate.store.tables import provider_credentials, signing_keys

__all__ = [
    "SEALED_TABLES",
    "RotationFailure",
    "RotationReport",
    "SealedTable",
    "TableCounts",
    "rotate_sealed",
    "sealed_key_usage",
    "signing_key_context",
]

_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}
# A row replaced concurrently is re-read and retried; more lost races than this in a row
# means something rewrites it continuously: report it rather than spin.
_ATTEMPTS: Final = 5


def signing_key_context(signing_key_id: str) -> str:
    """The envelope context of an HMAC signing secret (agreed; do not change)."""
    return f"signing-key:{signing_key_id}"


@dataclass(frozen=True, slots=True)
class SealedTable:
    """A table of sealed values: its row key, the context of a row, and whether a rewrap
    moves ``updated_at`` (so that running instances reload)."""

    table: Table
    key: Column[Any]
    context: Callable[[str], str]
    stamps: bool

    @property
    def name(self) -> str:
        return self.table.name


SEALED_TABLES: Final = (
    SealedTable(provider_credentials, provider_credentials.c.name, credential_context, stamps=True),
    SealedTable(signing_keys, signing_keys.c.id, signing_key_context, stamps=False),
)


@dataclass(frozen=True, slots=True)
class RotationFailure:
    """A row the keyring cannot open (its key is not configured, or the row is damaged)."""

    table: str
    name: str
    reason: str


@dataclass(slots=True)
class TableCounts:
    rewrapped: int = 0  # with dry_run: would be re-wrapped
    current: int = 0  # already under the primary key
    failed: int = 0


@dataclass(frozen=True, slots=True)
class RotationReport:
    primary_key_id: str
    dry_run: bool
    tables: dict[str, TableCounts]
    failures: tuple[RotationFailure, ...] = field(default=())

    @property
    def rewrapped(self) -> int:
        return sum(c.rewrapped for c in self.tables.values())

    @property
    def current(self) -> int:
        return sum(c.current for c in self.tables.values())

    @property
    def failed(self) -> int:
        return len(self.failures)


async def rotate_sealed(
    engine: AsyncEngine, keyring: Keyring, *, dry_run: bool = False
) -> RotationReport:
    """Re-wrap every sealed value not under ``keyring.primary``; see the module docstring."""
    tables: dict[str, TableCounts] = {}
    failures: list[RotationFailure] = []
    stamp = Stamper()
    for sealed in SEALED_TABLES:
        counts, failed = await _rotate_table(engine, keyring, sealed, stamp, dry_run)
        tables[sealed.name] = counts
        failures.extend(failed)
    return RotationReport(keyring.primary.id, dry_run, tables, tuple(failures))


async def _rotate_table(
    engine: AsyncEngine, keyring: Keyring, sealed: SealedTable, stamp: Stamper, dry_run: bool
) -> tuple[TableCounts, list[RotationFailure]]:
    table, primary = sealed.table, keyring.primary.id
    counts = TableCounts()
    failures: list[RotationFailure] = []
    async with engine.connect() as conn:
        counts.current = int(
            await conn.scalar(
                select(func.count()).select_from(table).where(table.c.master_key_id == primary)
            )
            or 0
        )
        stale = [
            str(row[0])
            for row in await conn.execute(
                select(sealed.key).where(table.c.master_key_id != primary).order_by(sealed.key)
            )
        ]
    writer = engine.execution_options(**_WRITE)
    for key in stale:
        outcome = await _rotate_row(writer, keyring, sealed, key, stamp, dry_run)
        if isinstance(outcome, RotationFailure):
            counts.failed += 1
            failures.append(outcome)
        elif outcome == "rewrapped":
            counts.rewrapped += 1
        elif outcome == "current":
            counts.current += 1
    return counts, failures


async def _rotate_row(
    writer: AsyncEngine,
    keyring: Keyring,
    sealed: SealedTable,
    key: str,
    stamp: Stamper,
    dry_run: bool,
) -> str | RotationFailure:
    """``"rewrapped"``, ``"current"`` (a concurrent write sealed it under the primary),
    ``"gone"`` (deleted meanwhile) or the failure."""
    table, context = sealed.table, sealed.context(key)
    for _ in range(_ATTEMPTS):
        async with writer.connect() as conn:
            row = await _read(conn, sealed, key)
        if row is None:
            return "gone"
        if row.master_key_id == keyring.primary.id:
            return "current"
        try:
            fresh = keyring.rewrap(row.sealed, context)
        except SealError as exc:
            return RotationFailure(sealed.name, key, str(exc))
        if dry_run:
            return "rewrapped"
        values: dict[str, Any] = {"sealed": fresh.text, "master_key_id": fresh.master_key_id}
        async with writer.begin() as conn:
            if sealed.stamps:  # running instances reload credentials when the max moves
                values["updated_at"] = await next_stamp(conn, stamp)
            result = await conn.execute(
                update(table).where(sealed.key == key, table.c.sealed == row.sealed).values(values)
            )
        if result.rowcount == 1:
            return "rewrapped"
    return RotationFailure(sealed.name, key, "rewritten concurrently again and again; run again")


async def _read(conn: AsyncConnection, sealed: SealedTable, key: str) -> Any:
    columns = (sealed.table.c.sealed, sealed.table.c.master_key_id)
    return (await conn.execute(select(*columns).where(sealed.key == key))).first()


async def sealed_key_usage(engine: AsyncEngine) -> dict[str, dict[str, int]]:
    """How many stored values each master key id wraps: ``{key id: {table: count}}``
    (key ids no longer configured included: their values cannot be opened)."""
    usage: dict[str, dict[str, int]] = {}
    async with engine.connect() as conn:
        for sealed in SEALED_TABLES:
            table = sealed.table
            query = select(table.c.master_key_id, func.count()).group_by(table.c.master_key_id)
            for key_id, count in await conn.execute(query):
                usage.setdefault(str(key_id), {})[sealed.name] = int(count)
    return usage

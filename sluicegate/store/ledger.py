"""The usage ledger: one row per inference request (``usage_ledger`` table).

Rows are written in batches (:class:`~sluicegate.store.ledger_writer.LedgerWriter` buffers
them); every batch is one transaction and one ``executemany``. Values are made safe for the
columns on the way in (over-long strings truncated, counts clamped to the column range,
non-finite numbers zeroed) so one odd row never fails a whole batch.

Reads: per-key/partner spend since a time (seeding budget counters; never on the request
path) and grouped usage reports, identical on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, Select, String, case, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluicegate.store.db import SQLITE_BEGIN, sqlite_file
from sluicegate.store.fields import aware
from sluicegate.store.sqlite_thread import SqliteThread
from sluicegate.store.tables import usage_ledger

__all__ = ["GROUPS", "LEDGER_COLUMNS", "METRICS", "LedgerItem", "LedgerRow", "LedgerStore"]

GroupBy = Literal["partner", "key", "model", "day"]
#: The dimensions :meth:`LedgerStore.report` groups by.
GROUPS: Final = ("partner", "key", "model", "day")
#: The sums in each report row.
METRICS: Final = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
)
_TOKENS: Final = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
_INT32_MAX: Final = 2**31 - 1
_WRITE = {SQLITE_BEGIN: "IMMEDIATE"}


@dataclass(slots=True)
class LedgerRow:
    created_at: datetime
    request_id: str
    endpoint: str
    stream: bool
    status: int
    latency_ms: float
    key_id: str | None = None
    key_name: str | None = None
    partner_id: str | None = None
    partner_name: str | None = None
    model: str | None = None
    deployment: str | None = None
    upstream_model: str | None = None
    error_type: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    ttft_ms: float | None = None
    upstream_request_id: str | None = None
    client_session_id: str | None = None
    client_agent_id: str | None = None


_FIELDS: Final = tuple(f.name for f in dataclasses.fields(LedgerRow))
_STRINGS: Final = {
    c.key: int(c.type.length)
    for c in usage_ledger.columns
    if isinstance(c.type, String) and c.type.length and c.key in _FIELDS
}
_REQUIRED_STRINGS: Final = frozenset(c.key for c in usage_ledger.columns if not c.nullable)


def _int(value: Any) -> int:
    try:
        number = int(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0
    return min(max(number, 0), _INT32_MAX)


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _values(row: LedgerRow) -> dict[str, Any]:
    """``row`` as column values that fit the columns."""
    values: dict[str, Any] = {name: getattr(row, name) for name in _FIELDS}
    for name, length in _STRINGS.items():
        value = values[name]
        if value is not None and not isinstance(value, str):
            value = str(value)
        if value is None and name in _REQUIRED_STRINGS:
            value = ""
        values[name] = value[:length] if value is not None else None
    created = row.created_at
    if not isinstance(created, datetime):
        created = datetime.now(UTC)
    values["created_at"] = created if created.tzinfo else created.replace(tzinfo=UTC)
    values["stream"] = bool(row.stream)
    values["status"] = _int(row.status)
    for name in _TOKENS:
        values[name] = _int(values[name])
    values["cost_usd"] = _float(row.cost_usd) or 0.0
    values["latency_ms"] = _float(row.latency_ms) or 0.0
    values["ttft_ms"] = _float(row.ttft_ms)
    return values


_INSERT_COLUMNS: Final = tuple(c.key for c in usage_ledger.columns if c.key != "id")
# Column names are our constants, not input.
_SQLITE_INSERT_INTO: Final = (
    f"INSERT INTO {usage_ledger.name} "  # noqa: S608 (our table and column names)
    f"({', '.join(c.name for c in usage_ledger.columns if c.key != 'id')}) VALUES "
)
_SQLITE_ROW: Final = "(" + ",".join("?" for _ in _INSERT_COLUMNS) + ")"
# Rows per INSERT statement: one statement, one step of SQLite for a whole chunk. (An
# executemany steps once per row, and the driver's thread hands the GIL back and forth with
# the event loop at every step: on a busy gateway that cost more than the inserts.) A batch
# is cut into chunks of these fixed sizes only, so the few statements stay in the driver's
# statement cache: preparing a new 400-row statement for each odd-sized batch cost more
# than inserting the rows.
_SQLITE_CHUNK_SIZES: Final = (400, 100, 25, 5, 1)  # 400 x 23 parameters, under SQLite's 32,766


def _sqlite_chunks(count: int) -> list[tuple[int, int]]:
    """``(start, size)`` of the chunks a batch of ``count`` rows is written in."""
    chunks = []
    start = 0
    for size in _SQLITE_CHUNK_SIZES:
        while count - start >= size:
            chunks.append((start, size))
            start += size
    return chunks


@functools.lru_cache(maxsize=len(_SQLITE_CHUNK_SIZES))
def _sqlite_insert(rows: int) -> str:
    """An INSERT of ``rows`` rows; the SQL is built from our constants, not from input."""
    return _SQLITE_INSERT_INTO + ",".join([_SQLITE_ROW] * rows)


_GET_INSERT_VALUES: Final = operator.attrgetter(*_INSERT_COLUMNS)
_AT = {key: index for index, key in enumerate(_INSERT_COLUMNS)}
_TEXT_SLOTS: Final = tuple(
    (_AT[key], length, key in _REQUIRED_STRINGS) for key, length in _STRINGS.items()
)
_INT_SLOTS: Final = tuple(_AT[key] for key in ("status", *_TOKENS))
_FLOAT_SLOTS: Final = (
    (_AT["cost_usd"], True),
    (_AT["latency_ms"], True),
    (_AT["ttft_ms"], False),
)


def _sqlite_tuple(row: LedgerRow) -> tuple[Any, ...]:
    """``row`` as parameters of a SQLite insert, made as safe as :func:`_values`
    does, but checking before converting (the common row needs nothing): timestamps in
    SQLAlchemy's SQLite text format (UTC, so reads through SQLAlchemy parse them) and
    booleans as integers."""
    values = list(_GET_INSERT_VALUES(row))
    created = values[0] if isinstance(values[0], datetime) else datetime.now(UTC)
    if created.tzinfo is not None:
        created = created.astimezone(UTC).replace(tzinfo=None)
    values[0] = created.isoformat(" ", "microseconds")
    values[_AT["stream"]] = 1 if values[_AT["stream"]] else 0
    for index, length, required in _TEXT_SLOTS:
        text = values[index]
        if text is None:
            if required:
                values[index] = ""
        elif type(text) is not str or len(text) > length:
            values[index] = str(text)[:length]
    for index in _INT_SLOTS:
        number = values[index]
        if type(number) is not int or not 0 <= number <= _INT32_MAX:
            values[index] = _int(number)
    for index, required in _FLOAT_SLOTS:
        real = values[index]
        if type(real) is not float or not math.isfinite(real):
            real = _float(real)
            values[index] = 0.0 if real is None and required else real
    return tuple(values)


#: A ledger row as column values in :data:`LEDGER_COLUMNS` order, ``created_at`` in unix
#: seconds (a float: cheaper to take and to format than a datetime), strings within their
#: columns, counts within range: what the gateway builds per request (cheaper than a
#: :class:`LedgerRow`, which is checked value by value).
LedgerValues = tuple[Any, ...]
LedgerItem = LedgerRow | LedgerValues
LEDGER_COLUMNS: Final = _INSERT_COLUMNS


def _sqlite_params(rows: Sequence[LedgerItem]) -> tuple[Any, ...]:
    """The parameters of one multi-row SQLite insert of ``rows``. A LedgerValues row needs
    only its timestamp formatted (as :func:`sqlite_timestamp` does, inlined: it runs for
    every request the gateway serves)."""
    params: list[Any] = []
    extend = params.extend
    cached_second, cached_text = _last_second[0]
    for item in rows:
        if isinstance(item, LedgerRow):
            extend(_sqlite_tuple(item))
            continue
        unix = item[0]
        second = int(unix)
        micro = round((unix - second) * 1_000_000)
        if micro >= 1_000_000:
            second, micro = second + 1, micro - 1_000_000
        if second != cached_second:
            cached_second, cached_text = second, sqlite_timestamp(second)[:19]
        values = list(item)
        values[0] = f"{cached_text}.{micro:06d}"
        # Bound as they are, an absent value (None) and the stream flag (bool) each go
        # through the driver's adapter registry (a tuple, a lookup and a call per value:
        # most of what binding a row cost); an int and a float bind directly, and SQLite
        # stores a NaN it is given as NULL (sqlite3_bind_double). A ledger row never
        # holds a NaN of its own: LedgerValues are finite.
        values[_STREAM] = 1 if values[_STREAM] else 0
        for index in _NULLABLE:
            if values[index] is None:
                values[index] = _NULL
        extend(values)
    return tuple(params)


_STREAM: Final = _AT["stream"]
_NULLABLE: Final = tuple(_AT[c.key] for c in usage_ledger.columns if c.nullable and c.key in _AT)
_NULL: Final = math.nan


_last_second: list[tuple[int, str]] = [(-1, "")]


def sqlite_timestamp(unix: float) -> str:
    """``unix`` (UTC seconds) in SQLAlchemy's SQLite DateTime text format,
    ``YYYY-MM-DD HH:MM:SS.ffffff``. The date part is formatted once per second: building a
    datetime per row and formatting it was most of what writing a ledger row cost."""
    second = int(unix)
    micro = round((unix - second) * 1_000_000)
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    cached = _last_second[0]
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second)))
        _last_second[0] = cached
    return f"{cached[1]}.{micro:06d}"


def _column_values(item: LedgerItem) -> dict[str, Any]:
    if isinstance(item, LedgerRow):
        return _values(item)
    values = dict(zip(_INSERT_COLUMNS, item, strict=True))
    values["created_at"] = datetime.fromtimestamp(item[0], UTC)
    return values


def _insert_sqlite(connection: sqlite3.Connection, rows: Sequence[LedgerItem]) -> None:
    """Insert ``rows`` in one transaction, on the ledger's own SQLite connection."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        for start, size in _sqlite_chunks(len(rows)):
            connection.execute(_sqlite_insert(size), _sqlite_params(rows[start : start + size]))
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


class LedgerStore:
    """Reads and batch writes of the ``usage_ledger`` table.

    ``own_thread`` (the gateway's ledger writer): on a SQLite file, batches are written on a
    connection and thread of the store's own (see store.sqlite_thread); :meth:`close` ends
    them. Other stores write through the engine."""

    def __init__(self, engine: AsyncEngine, *, own_thread: bool = False) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**_WRITE)
        path = sqlite_file(engine) if own_thread else None
        self._thread = None if path is None else SqliteThread(path, "sluicegate-ledger")

    @property
    def writes_run_to_end(self) -> bool:
        """Whether a write, once begun, ends as it would have even if its caller is
        cancelled (on the store's own thread): then only its outcome says what was written."""
        return self._thread is not None

    async def close(self) -> None:
        if self._thread is not None:
            await self._thread.close()

    async def insert_many(self, rows: Sequence[LedgerItem]) -> None:
        """Insert ``rows`` in one transaction."""
        if not rows:
            return
        if self._thread is not None:
            await self._thread.run(_insert_sqlite, rows)
            return
        async with self._writer.begin() as conn:
            if self._engine.dialect.name == "sqlite":
                # The gateway's own process pays for every ledger row: on SQLite, hand the
                # driver plain parameters (a fraction of SQLAlchemy's per-row binding).
                for start, size in _sqlite_chunks(len(rows)):
                    params = _sqlite_params(rows[start : start + size])
                    await conn.exec_driver_sql(_sqlite_insert(size), params)
            else:
                await conn.execute(usage_ledger.insert(), [_column_values(row) for row in rows])

    async def spend_since(
        self, column: Literal["key_id", "partner_id"], since: datetime | None
    ) -> dict[str, float]:
        """``{id: sum(cost_usd)}`` over rows with ``created_at >= since`` (all time when
        ``None``), by key or partner id; rows without that id are left out."""
        if column not in ("key_id", "partner_id"):
            raise ValueError("column must be 'key_id' or 'partner_id'")
        owner = usage_ledger.c[column]
        query = (
            select(owner, func.sum(usage_ledger.c.cost_usd))
            .where(owner.is_not(None))
            .group_by(owner)
        )
        if since is not None:
            query = query.where(usage_ledger.c.created_at >= aware(since, "since"))
        async with self._engine.connect() as conn:
            result = await conn.execute(query)
            return {str(row[0]): float(row[1] or 0.0) for row in result}

    async def report(
        self,
        *,
        group_by: Sequence[GroupBy],
        since: datetime | None = None,
        until: datetime | None = None,
        partner_id: str | None = None,
        key_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Usage summed per group, rows in ``[since, until)``, optionally of one partner or
        key. Each dict holds the group fields (``partner``: partner name, else id; ``key``:
        key name, else id; ``model``: the alias the client sent; ``day``: ``YYYY-MM-DD``
        UTC) and :data:`METRICS`. Ordered by day, then cost (highest first), then the
        group fields. Without ``group_by``: one row of totals (none when the range is empty).
        """
        groups = self._groups(group_by)
        query = self._report_query(groups, since, until, partner_id, key_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        report: list[dict[str, Any]] = []
        for row in rows:
            item: dict[str, Any] = {g: getattr(row, g) for g in groups}
            for metric in METRICS[:-1]:
                item[metric] = int(getattr(row, metric) or 0)
            item["cost_usd"] = float(row.cost_usd or 0.0)
            if item["requests"]:
                report.append(item)
        report.sort(key=lambda item: _order(item, groups))
        return report

    @staticmethod
    def _groups(group_by: Sequence[str]) -> list[str]:
        if isinstance(group_by, str):
            raise ValueError("group_by must be a sequence of dimensions, not a string")
        unknown = [g for g in group_by if g not in GROUPS]
        if unknown:
            raise ValueError(f"cannot group by {unknown}: choose from {', '.join(GROUPS)}")
        return list(dict.fromkeys(group_by))

    def _day(self) -> ColumnElement[str]:
        created = usage_ledger.c.created_at
        if self._engine.dialect.name == "postgresql":
            utc = func.timezone("UTC", created)
            return func.to_char(utc, "YYYY-MM-DD", type_=String())
        # SQLite keeps UTC timestamps as "YYYY-MM-DD HH:MM:SS.ffffff" text.
        return func.strftime("%Y-%m-%d", created, type_=String())

    def _report_query(
        self,
        groups: Sequence[str],
        since: datetime | None,
        until: datetime | None,
        partner_id: str | None,
        key_id: str | None,
    ) -> Select[Any]:
        t = usage_ledger.c
        dimension: dict[str, ColumnElement[Any]] = {
            "partner": func.coalesce(t.partner_name, t.partner_id),
            "key": func.coalesce(t.key_name, t.key_id),
            "model": t.model,
            "day": self._day(),
        }
        # Group in an outer query over labelled columns: PostgreSQL would not match a
        # GROUP BY expression whose bound parameters differ from the SELECT list's.
        inner = select(
            *(dimension[g].label(g) for g in groups),
            t.status,
            *(t[name] for name in _TOKENS),
            t.cost_usd,
        )
        if since is not None:
            inner = inner.where(t.created_at >= aware(since, "since"))
        if until is not None:
            inner = inner.where(t.created_at < aware(until, "until"))
        if partner_id is not None:
            inner = inner.where(t.partner_id == partner_id)
        if key_id is not None:
            inner = inner.where(t.key_id == key_id)
        sub = inner.subquery()
        keys = [sub.c[g] for g in groups]
        return select(
            *keys,
            func.count().label("requests"),
            func.sum(case((sub.c.status >= 400, 1), else_=0)).label("errors"),
            *(func.sum(sub.c[name]).label(name) for name in _TOKENS),
            func.sum(sub.c.cost_usd).label("cost_usd"),
        ).group_by(*keys)

    async def count(self) -> int:
        async with self._engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(usage_ledger)) or 0)

    async def request_ids(self) -> set[str]:
        async with self._engine.connect() as conn:
            return set((await conn.scalars(select(usage_ledger.c.request_id))).all())


def _order(item: dict[str, Any], groups: Sequence[str]) -> tuple[Any, ...]:
    others = tuple((item[g] is None, item[g] or "") for g in groups if g != "day")
    return (item.get("day") or "", -item["cost_usd"], *others)

"""Database URLs and engines: SQLite (default, via aiosqlite) and PostgreSQL (via asyncpg).

Users write plain URLs (``sqlite:///./data/sluicegate.db``, ``postgresql://user:pw@host/db``);
:func:`async_url` maps them onto the async drivers. URLs are only ever shown through
:func:`redact_url`, so a password never reaches a log line or an exception message.

SQLite connections get WAL, a busy timeout and foreign keys, and SQLAlchemy (not the
``sqlite3`` module) emits ``BEGIN`` so that every transaction, reads included, is real.
A connection whose execution options carry ``{SQLITE_BEGIN: "IMMEDIATE"}`` takes the write
lock when its transaction begins: writers that read first then write use it, so they wait on
the busy timeout instead of failing with "database is locked".
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = [
    "SQLITE_BEGIN",
    "SQLITE_BUSY_TIMEOUT_MS",
    "async_url",
    "create_engine",
    "is_postgres",
    "is_sqlite",
    "prepare_sqlite_connection",
    "redact_url",
    "sqlite_file",
]

SQLITE_BUSY_TIMEOUT_MS = 5000
#: Execution option naming the SQLite ``BEGIN`` mode ("DEFERRED", "IMMEDIATE", "EXCLUSIVE").
SQLITE_BEGIN = "sluicegate_sqlite_begin"

_SQLITE_DRIVER = "sqlite+aiosqlite"
_POSTGRES_DRIVER = "postgresql+asyncpg"
_SCHEME_MAP = {
    "sqlite": _SQLITE_DRIVER,
    _SQLITE_DRIVER: _SQLITE_DRIVER,
    "postgresql": _POSTGRES_DRIVER,
    "postgres": _POSTGRES_DRIVER,
    _POSTGRES_DRIVER: _POSTGRES_DRIVER,
}
_BEGIN_STATEMENTS = {
    "DEFERRED": "BEGIN DEFERRED",
    "IMMEDIATE": "BEGIN IMMEDIATE",
    "EXCLUSIVE": "BEGIN EXCLUSIVE",
}
# busy_timeout first: switching to WAL needs a lock another process may hold.
_SQLITE_PRAGMAS = (
    f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS:d}",
    "PRAGMA foreign_keys = ON",
)
# Switching a new file to WAL needs an exclusive lock. While another process holds the write
# lock (migrating the same new file: `serve --workers N` at first start) SQLite answers
# "database is locked" at once, without waiting for busy_timeout, to avoid a deadlock. WAL is
# a property of the file, so re-check and retry briefly.
_WAL_SWITCH_ATTEMPTS = 100
# sqlite3 binds None as NULL and a bool as an integer either way; without an adapter it
# first searches the adapter registry and both adaptation protocols for every such
# parameter, which made them a sizeable part of writing ledger rows. Binding is unchanged.
sqlite3.register_adapter(type(None), lambda _: None)
sqlite3.register_adapter(bool, int)
_WAL_SWITCH_PAUSE = 0.1
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def redact_url(url: str) -> str:
    """Return ``url`` with the password (if any) replaced by ``***``.

    Works on any ``scheme://user:password@host/...`` string, including ones SQLAlchemy
    cannot parse, so it is safe to use while reporting a bad URL.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower().startswith("sqlite"):
        return url
    # Split at the LAST "@": an unescaped "@", "/" or "?" inside a password must not leave
    # part of it visible. (An "@" in the query string over-redacts, which is the safe side.)
    userinfo, at, tail = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    if not colon:
        return url
    return f"{scheme}://{user}:***@{tail}"


def async_url(database_url: str) -> str:
    """Map a user-facing database URL to its async-driver form.

    ``sqlite:///...`` becomes ``sqlite+aiosqlite:///...`` and ``postgresql://`` or
    ``postgres://`` become ``postgresql+asyncpg://``; URLs already naming those drivers pass.
    Anything else raises :class:`ValueError` (with the password redacted).
    """
    scheme, sep, rest = database_url.partition("://")
    target = _SCHEME_MAP.get(scheme.lower()) if sep else None
    if target is None:
        raise ValueError(
            f"unsupported database URL {redact_url(database_url)!r}: expected "
            "'sqlite:///path/to/file.db' or 'postgresql://user:password@host:5432/dbname'"
        )
    return f"{target}://{rest}"


def _parse(database_url: str) -> URL:
    mapped = async_url(database_url)
    try:
        return make_url(mapped)
    except ArgumentError:
        raise ValueError(f"malformed database URL {redact_url(database_url)!r}") from None


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


def create_engine(database_url: str, *, schema: str | None = None) -> AsyncEngine:
    """Create an :class:`AsyncEngine` for ``database_url`` (see :func:`async_url`).

    ``schema`` (PostgreSQL only) becomes the connections' ``search_path``, so tables and the
    migration version table live there; tests use it to isolate runs.
    """
    url = _parse(database_url)
    if url.get_backend_name() == "sqlite":
        if schema is not None:
            raise ValueError("a schema can only be chosen on PostgreSQL")
        return _sqlite_engine(url)
    connect_args: dict[str, Any] = {}
    if schema is not None:
        if not _IDENTIFIER.fullmatch(schema):
            raise ValueError(f"invalid schema name {schema!r}")
        connect_args["server_settings"] = {"search_path": schema}
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        pool_recycle=1800,
        connect_args=connect_args,
    )


def sqlite_file(engine: AsyncEngine) -> Path | None:
    """The file of a SQLite engine; None for PostgreSQL and for an in-memory or URI
    database (which another connection could not open as the same database)."""
    return _sqlite_file(engine.url) if is_sqlite(engine) else None


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if (
        not database
        or database == ":memory:"
        or url.query.get("uri")
        or database.startswith("file:")
    ):
        return None
    return Path(database)


def _sqlite_engine(url: URL) -> AsyncEngine:
    path = _sqlite_file(url)
    if path is not None:
        path.expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    prepare_sqlite_connection(dbapi_connection)


def prepare_sqlite_connection(dbapi_connection: Any) -> None:
    """What every connection to the SQLite file gets: no implicit transactions (the
    caller, SQLAlchemy or the ledger's writer, emits BEGIN), the pragmas, and WAL."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(pragma)
        _ensure_wal(cursor)
    finally:
        cursor.close()


def _ensure_wal(cursor: Any) -> None:
    for attempt in range(_WAL_SWITCH_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode")
            if str(cursor.fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError:
            if attempt == _WAL_SWITCH_ATTEMPTS - 1:
                raise
            # Only at a first start on a new file, while another process holds it.
            time.sleep(_WAL_SWITCH_PAUSE)


def _sqlite_on_begin(conn: Connection) -> None:
    mode = str(conn.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")).upper()
    statement = _BEGIN_STATEMENTS.get(mode)
    if statement is None:
        raise ValueError(f"invalid {SQLITE_BEGIN} execution option {mode!r}")
    conn.exec_driver_sql(statement)

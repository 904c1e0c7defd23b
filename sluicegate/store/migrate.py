"""Schema migrations, run programmatically and safely at every start-up.

:func:`upgrade` may be awaited from inside a running event loop (the gateway's start-up): it
opens an async connection and runs Alembic synchronously on it via
``AsyncConnection.run_sync``; ``env.py`` picks the connection up from
``config.attributes`` instead of starting an event loop of its own.

Several processes may start together:

* SQLite: the whole upgrade runs in one ``BEGIN IMMEDIATE`` transaction (SQLite has
  transactional DDL), so a second process waits for the write lock, then finds the schema at
  head and does nothing.
* PostgreSQL: a session-level ``pg_advisory_lock`` is held around the upgrade; Alembic runs
  it in one transaction (transactional DDL).

The database lock is taken *before* Alembic installs its process-global ``context``/``op``
proxies, which also keeps two upgrades awaited concurrently in one process apart.
"""

from __future__ import annotations

import asyncio
import weakref

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from sluicegate.store.db import SQLITE_BEGIN, SQLITE_BUSY_TIMEOUT_MS, create_engine
from sluicegate.store.migrations import SCRIPT_LOCATION, VERSION_TABLE

__all__ = ["MigrationError", "current_revision", "head_revision", "upgrade"]

#: Arbitrary constant identifying sluicegate's migration lock among advisory locks.
PG_MIGRATION_LOCK_KEY = 0x536C_7569_6365_4D67  # "SluiceMg"
#: How long a second SQLite process waits for the first one's migration to finish.
SQLITE_MIGRATION_BUSY_TIMEOUT_MS = 120_000


class MigrationError(RuntimeError):
    """The database cannot be brought to this version's schema (e.g. it is newer)."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    # Config values go through configparser interpolation: escape "%".
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The revision the code expects (the single head of ``versions/``)."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migration revisions found")
    return head


# Alembic keeps its running migration in process-global proxies (``context``, ``op``), so two
# upgrades must never overlap inside one process; the database lock below only orders
# processes. One asyncio lock per event loop (tests run several loops in one process).
_UPGRADE_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def upgrade(database_url: str, *, schema: str | None = None) -> None:
    """Upgrade the database to the head revision (idempotent, concurrency-safe)."""
    lock = _UPGRADE_LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        engine = create_engine(database_url, schema=schema)
        try:
            await _upgrade(engine)
        finally:
            await engine.dispose()


async def current_revision(database_url: str, *, schema: str | None = None) -> str | None:
    """The database's revision, or ``None`` when it has never been migrated."""
    engine = create_engine(database_url, schema=schema)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_current_revision)
    finally:
        await engine.dispose()


def _current_revision(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def _check_known_revision(connection: Connection) -> None:
    """Refuse a database migrated by a newer sluicegate (clearer than Alembic's error)."""
    current = _current_revision(connection)
    scripts = ScriptDirectory.from_config(_config())
    if current is not None and current not in {s.revision for s in scripts.walk_revisions()}:
        raise MigrationError(
            f"the database schema is at revision {current!r}, unknown to this sluicegate "
            f"(whose newest is {scripts.get_current_head()!r}): it was migrated by a newer "
            "version; run that version, or upgrade this one"
        )


async def _upgrade(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection = await connection.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
            await connection.run_sync(_upgrade_sqlite)
        elif engine.dialect.name == "postgresql":
            await connection.run_sync(_upgrade_postgres)
        else:  # pragma: no cover - create_engine only builds the two above
            raise ValueError(f"unsupported database dialect {engine.dialect.name!r}")


def _set_busy_timeout(connection: Connection, milliseconds: int) -> None:
    # On the raw DBAPI connection: going through SQLAlchemy would begin a transaction.
    dbapi_connection = connection.connection.dbapi_connection
    if dbapi_connection is None:  # pragma: no cover - a checked-out connection has one
        raise RuntimeError("connection is closed")
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {int(milliseconds):d}")
    finally:
        cursor.close()


def _upgrade_sqlite(connection: Connection) -> None:
    _set_busy_timeout(connection, SQLITE_MIGRATION_BUSY_TIMEOUT_MS)
    try:
        # BEGIN IMMEDIATE (see db.SQLITE_BEGIN): Alembic sees a transaction already in
        # progress, runs every revision inside it and leaves the COMMIT to us.
        with connection.begin():
            _check_known_revision(connection)
            command.upgrade(_config(connection), "head")
    finally:
        _set_busy_timeout(connection, SQLITE_BUSY_TIMEOUT_MS)


def _upgrade_postgres(connection: Connection) -> None:
    connection.execute(select(func.pg_advisory_lock(PG_MIGRATION_LOCK_KEY)))
    connection.commit()  # a session-level lock: it outlives this transaction
    try:
        _check_known_revision(connection)
        connection.commit()  # let Alembic run the upgrade in a transaction of its own
        command.upgrade(_config(connection), "head")
    finally:
        if not connection.invalidated:
            connection.rollback()
            connection.execute(select(func.pg_advisory_unlock(PG_MIGRATION_LOCK_KEY)))
            connection.commit()

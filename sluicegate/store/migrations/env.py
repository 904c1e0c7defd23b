"""Alembic environment: runs migrations on a connection handed over by sluicegate.

:mod:`sluicegate.store.migrate` opens an async connection, takes the migration lock and calls
Alembic inside ``AsyncConnection.run_sync``, passing the (sync-facade) connection through
``config.attributes["connection"]``; no event loop is started here, so this works inside a
running one. Without such a connection (the ``alembic`` command line, for development) an
async engine is created from ``-x url=...`` or ``sqlalchemy.url`` and run with
``asyncio.run``.

Alembic executes this file under the module name ``env_py``; importing it as
``sluicegate.store.migrations.env`` (e.g. a test walking the package) does nothing.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from sluicegate.store.db import async_url, create_engine
from sluicegate.store.migrations import VERSION_TABLE
from sluicegate.store.tables import metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database URL: pass -x url=... or set sqlalchemy.url")
    return url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_new_engine(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=async_url(_url()),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
    else:
        asyncio.run(_run_with_new_engine(_url()))


def main() -> None:
    if context.is_offline_mode():
        run_migrations_offline()
    else:
        run_migrations_online()


if not __name__.startswith("sluicegate."):
    main()

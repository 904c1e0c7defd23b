"""Start-up check of the database schema: migrate, or refuse to run on an old schema.

The common case, a database already at this release's revision, costs one query and never
imports Alembic (which would add ~10 MiB to every gateway process).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from sluicegate.store.db import create_engine, redact_url
from sluicegate.store.migrations import HEAD_REVISION, VERSION_TABLE


class SchemaOutOfDate(RuntimeError):
    """The database schema is not the one this release expects."""


async def recorded_revision(database_url: str) -> str | None:
    """The revision stored in the database; ``None`` if it was never migrated."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            # VERSION_TABLE is our constant, not input.
            query = text(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608
            try:
                rows = (await connection.execute(query)).all()
            except DBAPIError:  # no version table yet
                return None
    finally:
        await engine.dispose()
    return str(rows[0][0]) if len(rows) == 1 else None


async def ensure_schema(database_url: str, *, auto_migrate: bool) -> None:
    current = await recorded_revision(database_url)
    if current == HEAD_REVISION:
        return
    if auto_migrate:
        from sluicegate.store.migrate import upgrade

        await upgrade(database_url)
        return
    raise SchemaOutOfDate(
        f"database {redact_url(database_url)} is at schema revision {current or 'none'}, "
        f"this release needs {HEAD_REVISION}: run `sluicegate db upgrade --config FILE` first"
    )

"""Start-up check of the database schema: migrate, or refuse to run on an old schema."""

from __future__ import annotations

from sluicegate.store.db import redact_url
from sluicegate.store.migrate import current_revision, head_revision, upgrade


class SchemaOutOfDate(RuntimeError):
    """The database schema is not the one this release expects."""


async def ensure_schema(database_url: str, *, auto_migrate: bool) -> None:
    if auto_migrate:
        await upgrade(database_url)
        return
    current, head = await current_revision(database_url), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"database {redact_url(database_url)} is at schema revision {current or 'none'}, "
            f"this release needs {head}: run `sluicegate db upgrade --config FILE` first"
        )

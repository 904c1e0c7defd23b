"""The audit log of admin actions (``audit_log`` table): who, what, when, from where.

Entries are written by the admin API (every write, and failed admin logins) and by the
CLI's admin commands (``sluicegate/cli_audit_trail.py``); they are never changed or deleted
by the gateway. The
writer decides what goes into ``detail`` and must never put a secret there (the admin
layer records field names, and values only of fields known to be harmless).

Every statement is built with SQLAlchemy Core and bound parameters.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncEngine

from sluicegate.store.db import SQLITE_BEGIN
from sluicegate.store.fields import Stamper, aware, json_dict
from sluicegate.store.tables import audit_log

__all__ = ["MAX_AUDIT_PAGE", "AuditEntry", "AuditQuery", "AuditStore"]

MAX_AUDIT_PAGE: Final = 1000
# Column widths (tables.audit_log): longer values are cut rather than refused, so an
# admin action is never lost to an over-long name.
_WIDTHS: Final = {
    "actor": 200,
    "action": 64,
    "target_type": 32,
    "target_id": 200,
    "source_ip": 64,
    "request_id": 64,
}
_WRITE = {SQLITE_BEGIN: "IMMEDIATE"}
_COLUMNS: Final = (
    "created_at",
    "actor",
    "action",
    "target_type",
    "target_id",
    "source_ip",
    "request_id",
    "status",
    "detail",
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    created_at: datetime
    actor: str
    action: str
    target_type: str | None
    target_id: str | None
    source_ip: str | None
    request_id: str | None
    status: int
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of :meth:`AuditStore.list`. ``action`` ending in ``*`` matches a prefix
    (``key.*``); ``until`` is exclusive; ``before_id`` is the cursor (entries older than
    it); entries come newest first."""

    actor: str | None = None
    action: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before_id: int | None = None
    limit: int = 100


def _cut(name: str, value: str | None) -> str | None:
    return None if value is None else value[: _WIDTHS[name]]


def _entry(row: Row[Any]) -> AuditEntry:
    return AuditEntry(
        id=int(row.id),
        created_at=row.created_at,
        actor=row.actor,
        action=row.action,
        target_type=row.target_type,
        target_id=row.target_id,
        source_ip=row.source_ip,
        request_id=row.request_id,
        status=int(row.status),
        detail=dict(row.detail or {}),
    )


class AuditStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**_WRITE)
        self._stamp = Stamper()

    async def record(
        self,
        *,
        actor: str,
        action: str,
        status: int,
        target_type: str | None = None,
        target_id: str | None = None,
        source_ip: str | None = None,
        request_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry and return it (with its id)."""
        entry = AuditEntry(
            id=0,  # set by the database
            created_at=self._stamp(),
            actor=_cut("actor", actor) or "unknown",
            action=_cut("action", action) or "unknown",
            target_type=_cut("target_type", target_type),
            target_id=_cut("target_id", target_id),
            source_ip=_cut("source_ip", source_ip),
            request_id=_cut("request_id", request_id),
            status=int(status),
            detail=json_dict(detail),
        )
        values = {name: getattr(entry, name) for name in _COLUMNS}
        async with self._writer.begin() as conn:
            result = await conn.execute(audit_log.insert().values(values))
            key = result.inserted_primary_key
        if key is None:  # pragma: no cover - every backend returns the new id
            raise RuntimeError("the audit entry was written without an id")
        return dataclasses.replace(entry, id=int(key[0]))

    async def list(self, query: AuditQuery) -> builtins.list[AuditEntry]:
        """Entries matching ``query``, newest first, at most ``query.limit`` (1-1000)."""
        if not 1 <= query.limit <= MAX_AUDIT_PAGE:
            raise ValueError(f"limit must be from 1 to {MAX_AUDIT_PAGE}")
        c = audit_log.c
        statement = select(audit_log).order_by(c.id.desc()).limit(query.limit)
        if query.actor is not None:
            statement = statement.where(c.actor == query.actor)
        if query.action is not None:
            if query.action.endswith("*"):
                # autoescape: % and _ in the prefix are literal characters, not wildcards.
                statement = statement.where(c.action.startswith(query.action[:-1], autoescape=True))
            else:
                statement = statement.where(c.action == query.action)
        if query.target_id is not None:
            statement = statement.where(c.target_id == query.target_id)
        if query.since is not None:
            statement = statement.where(c.created_at >= aware(query.since, "since"))
        if query.until is not None:
            statement = statement.where(c.created_at < aware(query.until, "until"))
        if query.before_id is not None:
            statement = statement.where(c.id < query.before_id)
        async with self._engine.connect() as conn:
            return [_entry(row) for row in await conn.execute(statement)]

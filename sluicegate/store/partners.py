"""The partner repository: teams or tenants that own gateway keys (``partners`` table).

A partner carries a fair-share ``weight``, optional limits and a budget (see
:mod:`sluicegate.store.fields`) and an IP allow-list (``allowed_ips``, CIDR networks, empty
means anywhere) that applies to all its keys.

Keys refer to a partner by ``gateway_keys.partner_id``; there is no foreign key:
:meth:`PartnerStore.delete` refuses while a non-revoked key refers to the partner, and
:class:`~sluicegate.store.keys.KeyStore` only stores existing partner ids.
On PostgreSQL both sides lock the partner row (delete: ``FOR UPDATE``, key writes:
``FOR SHARE``), so a concurrent key write and partner delete cannot both succeed.

Change detection: :meth:`PartnerStore.fingerprint` is ``(count, max(updated_at))``.
"""

from __future__ import annotations

import builtins
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sluicegate.store.db import SQLITE_BEGIN
from sluicegate.store.fields import (
    LIMIT_FIELDS,
    Stamper,
    check_allowed_ips,
    check_limits,
    check_name,
    check_weight,
    json_dict,
    merge_limits,
)
from sluicegate.store.tables import gateway_keys, partners

__all__ = [
    "DuplicatePartnerError",
    "PartnerInUseError",
    "PartnerNotFoundError",
    "PartnerRecord",
    "PartnerStore",
    "new_partner_id",
    "resolve_partner_id",
]

PARTNER_ID_PATTERN = re.compile(r"ptn_[0-9a-f]{24}")
_ID_SHAPE = "ptn_ + 24 hex characters"
_UPDATABLE = frozenset({"name", "weight", *LIMIT_FIELDS, "metadata", "allowed_ips"})
_WRITE = {SQLITE_BEGIN: "IMMEDIATE"}


@dataclass(frozen=True, slots=True)
class PartnerRecord:
    id: str
    name: str
    weight: float
    rpm: int | None
    tpm: int | None
    max_parallel: int | None
    budget_usd: float | None
    budget_period: str | None
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any]
    allowed_ips: tuple[str, ...] = ()


class DuplicatePartnerError(Exception):
    """A partner with this name already exists."""


class PartnerNotFoundError(Exception):
    """No partner has this id or name."""


class PartnerInUseError(Exception):
    """The partner still owns non-revoked keys."""


def new_partner_id() -> str:
    """A fresh partner id: ``"ptn_"`` and 24 hex characters."""
    return "ptn_" + secrets.token_hex(12)


def _record(row: Row[Any]) -> PartnerRecord:
    return PartnerRecord(
        id=row.id,
        name=row.name,
        weight=float(row.weight),
        **{name: getattr(row, name) for name in LIMIT_FIELDS},
        created_at=row.created_at,
        updated_at=row.updated_at,
        metadata=dict(row.metadata_json or {}),
        allowed_ips=tuple(row.allowed_ips or ()),
    )


def _lookup(name_or_id: str) -> ColumnElement[bool]:
    # Names may not have the shape of an id, so at most one row matches.
    if PARTNER_ID_PATTERN.fullmatch(name_or_id):
        return partners.c.id == name_or_id
    return partners.c.name == name_or_id


async def _fetch(
    conn: AsyncConnection, name_or_id: str, *, lock: str | None = None
) -> PartnerRecord:
    if not isinstance(name_or_id, str):
        raise PartnerNotFoundError(f"no partner with id or name {name_or_id!r}")
    query = select(partners).where(_lookup(name_or_id))
    if lock is not None:  # PostgreSQL row lock; SQLite's BEGIN IMMEDIATE already serialises
        query = query.with_for_update(read=lock == "share")
    row = (await conn.execute(query)).first()
    if row is None:
        raise PartnerNotFoundError(f"no partner with id or name {name_or_id!r}")
    return _record(row)


async def resolve_partner_id(conn: AsyncConnection, partner: Any) -> str | None:
    """The id of partner ``partner`` (an id or a name), share-locked until ``conn``'s
    transaction ends (used by key writes); ``None`` passes through."""
    if partner is None:
        return None
    if not isinstance(partner, str):
        raise ValueError("partner_id must be a partner id (or name)")
    return (await _fetch(conn, partner, lock="share")).id


class PartnerStore:
    """Partners in the ``partners`` table; see the module docstring."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**_WRITE)
        self._stamp = Stamper()

    async def create(
        self,
        *,
        name: str,
        weight: float = 1.0,
        rpm: int | None = None,
        tpm: int | None = None,
        max_parallel: int | None = None,
        budget_usd: float | None = None,
        budget_period: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        allowed_ips: Sequence[str] = (),
    ) -> PartnerRecord:
        check_name(name, "partner", PARTNER_ID_PATTERN, _ID_SHAPE)
        networks = check_allowed_ips(allowed_ips)
        limits = check_limits(
            rpm=rpm,
            tpm=tpm,
            max_parallel=max_parallel,
            budget_usd=budget_usd,
            budget_period=budget_period,
        )
        now = self._stamp()
        record = PartnerRecord(
            id=new_partner_id(),
            name=name,
            weight=check_weight(weight),
            created_at=now,
            updated_at=now,
            metadata=json_dict(metadata),
            allowed_ips=networks,
            **limits,
        )
        values = {
            "id": record.id,
            "name": record.name,
            "weight": record.weight,
            "created_at": now,
            "updated_at": now,
            "metadata_json": record.metadata,
            "allowed_ips": list(networks),
            **limits,
        }
        try:
            async with self._writer.begin() as conn:
                await conn.execute(partners.insert().values(values))
        except IntegrityError:
            raise await self._duplicate(name) from None
        return record

    async def _duplicate(self, name: str) -> Exception:
        async with self._engine.connect() as conn:
            if await conn.scalar(select(partners.c.id).where(partners.c.name == name)):
                return DuplicatePartnerError(f"a partner named {name!r} already exists")
        return RuntimeError("could not write the partner: constraint violation, please retry")

    async def get(self, name_or_id: str) -> PartnerRecord:
        async with self._engine.connect() as conn:
            return await _fetch(conn, name_or_id)

    async def list(self) -> builtins.list[PartnerRecord]:
        """All partners, oldest first."""
        query = select(partners).order_by(partners.c.created_at, partners.c.id)
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def update(self, name_or_id: str, changes: Mapping[str, Any]) -> PartnerRecord:
        """Set the fields named in ``changes`` (``None`` clears a limit or the budget).

        Allowed: name, weight, rpm, tpm, max_parallel, budget_usd, budget_period, metadata,
        allowed_ips.
        """
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update partner field(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        if "name" in changes:
            values["name"] = check_name(changes["name"], "partner", PARTNER_ID_PATTERN, _ID_SHAPE)
        if "weight" in changes:
            values["weight"] = check_weight(changes["weight"])
        if "metadata" in changes:
            values["metadata_json"] = json_dict(changes["metadata"])
        if "allowed_ips" in changes:
            values["allowed_ips"] = list(check_allowed_ips(changes["allowed_ips"]))
        try:
            async with self._writer.begin() as conn:
                current = await _fetch(conn, name_or_id, lock="update")
                if not changes:
                    return current
                if any(name in changes for name in LIMIT_FIELDS):
                    values.update(merge_limits(current, changes))
                values["updated_at"] = self._stamp()
                await conn.execute(
                    update(partners).where(partners.c.id == current.id).values(values)
                )
                return await _fetch(conn, current.id)
        except IntegrityError:
            raise await self._duplicate(str(values.get("name"))) from None

    async def delete(self, name_or_id: str) -> None:
        """Delete a partner; :class:`PartnerInUseError` while a non-revoked key refers to it."""
        async with self._writer.begin() as conn:
            record = await _fetch(conn, name_or_id, lock="update")
            in_use = await conn.scalar(
                select(func.count())
                .select_from(gateway_keys)
                .where(gateway_keys.c.partner_id == record.id, gateway_keys.c.revoked_at.is_(None))
            )
            if in_use:
                raise PartnerInUseError(
                    f"partner {record.name!r} still has {in_use} non-revoked key(s): "
                    "revoke them or move them to another partner first"
                )
            await conn.execute(delete(partners).where(partners.c.id == record.id))

    async def fingerprint(self) -> tuple[int, datetime | None]:
        """``(partners, max(updated_at))``: changes on create, update and delete."""
        query = select(func.count(), func.max(partners.c.updated_at)).select_from(partners)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return int(row[0]), row[1]

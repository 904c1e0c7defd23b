"""The gateway-key repository (and the server-secret store used for the key-hash pepper).

Only hashes of keys are stored (hex HMAC-SHA256, computed by the caller) plus a short,
non-secret hint. Every statement is built with SQLAlchemy Core and bound parameters.

Keys may belong to a partner (``partner_id``, checked to exist when written; see
:mod:`sluicegate.store.partners`) and carry their own limits and budget (validated by
:mod:`sluicegate.store.fields`).

Security (revision 0003): a key may be *blocked* (refused until unblocked; revocation stays
final), *regenerated* (a new secret; the old hash may keep working until
``previous_key_expires_at``, a grace period for rolling clients over) and restricted to
``allowed_ips`` (CIDR networks; empty means anywhere).

Change detection: :meth:`KeyStore.fingerprint` returns ``(row count, revoked count,
max(updated_at))``; creating a key changes the count, revoking, updating, blocking,
unblocking or regenerating one moves ``updated_at`` forward (timestamps written by one
process strictly increase, even within one clock tick).
"""

from __future__ import annotations

import builtins
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Row, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sluicegate.store.db import SQLITE_BEGIN
from sluicegate.store.fields import (
    LIMIT_FIELDS,
    Stamper,
    aware,
    check_allowed_ips,
    check_limits,
    check_models,
    check_name,
    json_dict,
    merge_limits,
)
from sluicegate.store.partners import resolve_partner_id
from sluicegate.store.tables import gateway_keys, server_secrets

__all__ = [
    "DuplicateKeyError",
    "KeyNotFoundError",
    "KeyRecord",
    "KeyStore",
    "is_key_id",
    "new_key_id",
]

_ID_PATTERN = re.compile(r"key_[0-9a-f]{24}")
_HASH_PATTERN = re.compile(r"[0-9a-f]{64}")
_ID_SHAPE = "key_ + 24 hex characters"
_MAX_HINT = 32
_MAX_SECRET_NAME = 64
_MAX_SECRET_VALUE = 200
_WRITE = {SQLITE_BEGIN: "IMMEDIATE"}
_UPDATABLE = frozenset(
    {"name", "models", "expires_at", "partner_id", *LIMIT_FIELDS, "metadata", "allowed_ips"}
)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    name: str
    key_hash: str = field(repr=False)
    key_hint: str
    models: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    updated_at: datetime
    metadata: dict[str, Any]
    partner_id: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: float | None = None
    budget_period: str | None = None
    blocked: bool = False
    previous_key_hash: str | None = field(default=None, repr=False)
    previous_key_expires_at: datetime | None = None
    allowed_ips: tuple[str, ...] = ()

    def is_active(self, now: datetime) -> bool:
        """Not revoked, not blocked and not expired at ``now``."""
        return (
            self.revoked_at is None
            and not self.blocked
            and (self.expires_at is None or self.expires_at > now)
        )

    def previous_key_valid(self, now: datetime) -> bool:
        """Whether the hash replaced by the last regeneration still authenticates at ``now``."""
        return (
            self.previous_key_hash is not None
            and self.previous_key_expires_at is not None
            and self.previous_key_expires_at > now
        )


class DuplicateKeyError(Exception):
    """A key with this name, or with this hash, already exists.

    ``field`` is ``"name"`` or ``"key_hash"``; the message never contains the hash.
    """

    def __init__(self, field: Literal["name", "key_hash"], message: str) -> None:
        super().__init__(message)
        self.field: Literal["name", "key_hash"] = field


class KeyNotFoundError(Exception):
    """No key has this id or name."""


def new_key_id() -> str:
    """A fresh key id: ``"key_"`` and 24 hex characters."""
    return "key_" + secrets.token_hex(12)


def _record(row: Row[Any]) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        name=row.name,
        key_hash=row.key_hash,
        key_hint=row.key_hint,
        models=tuple(row.models or ()),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        updated_at=row.updated_at,
        metadata=dict(row.metadata_json or {}),
        partner_id=row.partner_id,
        **{name: getattr(row, name) for name in LIMIT_FIELDS},
        blocked=bool(row.blocked),
        previous_key_hash=row.previous_key_hash,
        previous_key_expires_at=row.previous_key_expires_at,
        allowed_ips=tuple(row.allowed_ips or ()),
    )


def is_key_id(text: str) -> bool:
    """Does ``text`` have the shape of a key id (else it names a key)?"""
    return _ID_PATTERN.fullmatch(text) is not None


def _lookup(name_or_id: str) -> ColumnElement[bool]:
    # Names may not have the shape of an id (see create), so at most one row matches.
    if _ID_PATTERN.fullmatch(name_or_id):
        return gateway_keys.c.id == name_or_id
    return gateway_keys.c.name == name_or_id


def _validate_new(name: str, key_hash: str, key_hint: str, models: Sequence[str]) -> None:
    check_name(name, "key", _ID_PATTERN, _ID_SHAPE)
    if not isinstance(key_hash, str) or not _HASH_PATTERN.fullmatch(key_hash):
        raise ValueError("key_hash must be 64 lowercase hex characters (HMAC-SHA256)")
    if len(key_hint) > _MAX_HINT:
        raise ValueError(f"key_hint must be at most {_MAX_HINT} characters")
    check_models(models)


class KeyStore:
    """Gateway keys in the ``gateway_keys`` table; see the module docstring."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        # Same pool; on SQLite its transactions take the write lock up front (BEGIN IMMEDIATE).
        self._writer = engine.execution_options(**_WRITE)
        self._stamp = Stamper()

    async def create(
        self,
        *,
        name: str,
        key_hash: str,
        key_hint: str,
        models: Sequence[str] = (),
        expires_at: datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        partner_id: str | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        max_parallel: int | None = None,
        budget_usd: float | None = None,
        budget_period: str | None = None,
        allowed_ips: Sequence[str] = (),
    ) -> KeyRecord:
        """Store a new key. ``partner_id`` must name an existing partner (its id, or its
        name, stored as the id), else :class:`~sluicegate.store.partners.PartnerNotFoundError`."""
        _validate_new(name, key_hash, key_hint, models)
        networks = check_allowed_ips(allowed_ips)
        limits = check_limits(
            rpm=rpm,
            tpm=tpm,
            max_parallel=max_parallel,
            budget_usd=budget_usd,
            budget_period=budget_period,
        )
        values = {
            "id": new_key_id(),
            "name": name,
            "key_hash": key_hash,
            "key_hint": key_hint,
            "models": list(models),
            "expires_at": aware(expires_at, "expires_at"),
            "revoked_at": None,
            "metadata_json": json_dict(metadata),
            "allowed_ips": list(networks),
            **limits,
        }
        try:
            async with self._writer.begin() as conn:
                values["partner_id"] = await resolve_partner_id(conn, partner_id)
                values["created_at"] = values["updated_at"] = self._stamp()
                await conn.execute(gateway_keys.insert().values(values))
                return await self._get(conn, values["id"])
        except IntegrityError:
            raise await self._duplicate(name, key_hash) from None

    async def update(self, name_or_id: str, changes: Mapping[str, Any]) -> KeyRecord:
        """Set the fields named in ``changes`` (``None`` clears a nullable field).

        Allowed: name, models, expires_at, partner_id, rpm, tpm, max_parallel, budget_usd,
        budget_period, metadata, allowed_ips; validated as by :meth:`create`. Bumps
        ``updated_at``.
        """
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update key field(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        if "name" in changes:
            values["name"] = check_name(changes["name"], "key", _ID_PATTERN, _ID_SHAPE)
        if "models" in changes:
            values["models"] = list(check_models(changes["models"]))
        if "expires_at" in changes:
            values["expires_at"] = aware(changes["expires_at"], "expires_at")
        if "metadata" in changes:
            values["metadata_json"] = json_dict(changes["metadata"])
        if "allowed_ips" in changes:
            values["allowed_ips"] = list(check_allowed_ips(changes["allowed_ips"]))
        try:
            async with self._writer.begin() as conn:
                current = await self._get(conn, name_or_id, lock=True)
                if not changes:
                    return current
                if "partner_id" in changes:
                    values["partner_id"] = await resolve_partner_id(conn, changes["partner_id"])
                if any(name in changes for name in LIMIT_FIELDS):
                    values.update(merge_limits(current, changes))
                values["updated_at"] = self._stamp()
                await conn.execute(
                    update(gateway_keys).where(gateway_keys.c.id == current.id).values(values)
                )
                return await self._get(conn, current.id)
        except IntegrityError:
            name = values.get("name")
            if name is None:
                raise
            raise DuplicateKeyError("name", f"a key named {name!r} already exists") from None

    async def _duplicate(self, name: str, key_hash: str) -> Exception:
        async with self._engine.connect() as conn:
            if await conn.scalar(select(gateway_keys.c.id).where(gateway_keys.c.name == name)):
                return DuplicateKeyError("name", f"a key named {name!r} already exists")
            if await conn.scalar(
                select(gateway_keys.c.id).where(gateway_keys.c.key_hash == key_hash)
            ):
                return DuplicateKeyError("key_hash", "a key with the same secret already exists")
        # An id collision (2**-96 odds) or a row removed meanwhile: report it as such.
        return RuntimeError("could not insert the key: constraint violation, please retry")

    async def list(self, *, include_revoked: bool = True) -> builtins.list[KeyRecord]:
        """All keys, oldest first."""
        query = select(gateway_keys).order_by(gateway_keys.c.created_at, gateway_keys.c.id)
        if not include_revoked:
            query = query.where(gateway_keys.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            result = await conn.execute(query)
            return [_record(row) for row in result]

    async def get(self, name_or_id: str) -> KeyRecord:
        async with self._engine.connect() as conn:
            return await self._get(conn, name_or_id)

    async def _get(
        self, conn: AsyncConnection, name_or_id: str, *, lock: bool = False
    ) -> KeyRecord:
        query = select(gateway_keys).where(_lookup(name_or_id))
        if lock:  # PostgreSQL row lock; SQLite's BEGIN IMMEDIATE already serialises writers
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise KeyNotFoundError(f"no key with id or name {name_or_id!r}")
        return _record(row)

    async def revoke(self, name_or_id: str) -> KeyRecord:
        """Revoke a key; revoking it again keeps the first ``revoked_at``."""
        async with self._writer.begin() as conn:
            record = await self._get(conn, name_or_id)
            if record.revoked_at is not None:
                return record
            now = self._stamp()
            await conn.execute(
                update(gateway_keys)
                .where(gateway_keys.c.id == record.id, gateway_keys.c.revoked_at.is_(None))
                .values(revoked_at=now, updated_at=now)
            )
            return await self._get(conn, record.id)

    async def set_blocked(self, name_or_id: str, blocked: bool) -> KeyRecord:
        """Block (``True``) or unblock a key. A revoked key stays revoked (refused with
        :class:`ValueError`); setting the current state again changes nothing."""
        async with self._writer.begin() as conn:
            record = await self._get(conn, name_or_id, lock=True)
            if record.revoked_at is not None:
                raise ValueError(f"key {record.name!r} is revoked; revocation is final")
            if record.blocked == blocked:
                return record
            await conn.execute(
                update(gateway_keys)
                .where(gateway_keys.c.id == record.id)
                .values(blocked=blocked, updated_at=self._stamp())
            )
            return await self._get(conn, record.id)

    async def regenerate(
        self,
        name_or_id: str,
        *,
        key_hash: str,
        key_hint: str,
        grace: timedelta = timedelta(0),
    ) -> KeyRecord:
        """Give a key a new secret (its hash and hint); the old secret keeps working for
        ``grace`` (none by default). A grace still running from an earlier regeneration is
        replaced: only the secret just replaced keeps working. Revoked keys are refused
        (:class:`ValueError`); a blocked key stays blocked."""
        if not isinstance(key_hash, str) or not _HASH_PATTERN.fullmatch(key_hash):
            raise ValueError("key_hash must be 64 lowercase hex characters (HMAC-SHA256)")
        if len(key_hint) > _MAX_HINT:
            raise ValueError(f"key_hint must be at most {_MAX_HINT} characters")
        if grace < timedelta(0):
            raise ValueError("the grace period must not be negative")
        try:
            async with self._writer.begin() as conn:
                record = await self._get(conn, name_or_id, lock=True)
                if record.revoked_at is not None:
                    raise ValueError(f"key {record.name!r} is revoked; revocation is final")
                now = self._stamp()
                keep_old = grace > timedelta(0)
                await conn.execute(
                    update(gateway_keys)
                    .where(gateway_keys.c.id == record.id)
                    .values(
                        key_hash=key_hash,
                        key_hint=key_hint,
                        previous_key_hash=record.key_hash if keep_old else None,
                        previous_key_expires_at=now + grace if keep_old else None,
                        updated_at=now,
                    )
                )
                return await self._get(conn, record.id)
        except IntegrityError:
            raise DuplicateKeyError(
                "key_hash", "a key with the same secret already exists"
            ) from None

    async def fingerprint(self) -> tuple[int, int, datetime | None]:
        """``(keys, revoked keys, max(updated_at))``: changes whenever a key is created,
        updated or revoked. The counts make creation and revocation visible even when hosts' clocks
        disagree; ``updated_at`` covers other changes."""
        query = select(
            func.count(), func.count(gateway_keys.c.revoked_at), func.max(gateway_keys.c.updated_at)
        ).select_from(gateway_keys)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return int(row[0]), int(row[1]), row[2]

    async def load_active(self, now: datetime) -> builtins.list[KeyRecord]:
        """Keys neither revoked, blocked nor expired at ``now`` (timezone-aware), oldest
        first."""
        aware(now, "now")
        query = (
            select(gateway_keys)
            .where(
                gateway_keys.c.revoked_at.is_(None),
                gateway_keys.c.blocked.is_(False),
                or_(gateway_keys.c.expires_at.is_(None), gateway_keys.c.expires_at > now),
            )
            .order_by(gateway_keys.c.created_at, gateway_keys.c.id)
        )
        async with self._engine.connect() as conn:
            result = await conn.execute(query)
            return [_record(row) for row in result]

    async def get_or_create_secret(self, name: str, factory: Callable[[], str]) -> str:
        """The secret stored under ``name``; on first use, store ``factory()``.

        Race-safe between processes: insert-if-absent, then read back whichever value won.
        """
        if not name or len(name) > _MAX_SECRET_NAME:
            raise ValueError(f"secret name must be 1-{_MAX_SECRET_NAME} characters")
        where = server_secrets.c.name == name
        async with self._engine.connect() as conn:
            existing = await conn.scalar(select(server_secrets.c.value).where(where))
        if existing is not None:
            return str(existing)
        value = factory()
        if not value or len(value) > _MAX_SECRET_VALUE:
            raise ValueError(f"secret value must be 1-{_MAX_SECRET_VALUE} characters")
        values = {"name": name, "value": value, "created_at": datetime.now(UTC)}
        insert = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        async with self._writer.begin() as conn:
            await conn.execute(insert(server_secrets).values(values).on_conflict_do_nothing())
            stored = await conn.scalar(select(server_secrets.c.value).where(where))
        if stored is None:  # pragma: no cover - the row was just inserted or already there
            raise RuntimeError(f"secret {name!r} vanished while being created")
        return str(stored)

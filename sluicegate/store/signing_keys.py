"""HMAC request-signing keys of gateway keys (``signing_keys`` table).

The gateway must recompute signatures, so a signing secret cannot be stored as a hash: it
is sealed with envelope encryption (context ``signing-key:<id>``, so a sealed value copied
onto another row does not open there) under the configured master keys. The store only
keeps what it is given; generating and sealing the secret is
:func:`sluicegate.policy.hmac_auth.issue_signing_key`'s job.

Change detection: :meth:`SigningKeyStore.fingerprint` is ``(rows, revoked rows,
max(created_at), max(revoked_at))``; creating or revoking a key changes it. A master-key
rotation re-wraps rows without changing the secret, so it need not (and does not).
"""

from __future__ import annotations

import builtins
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sluicegate.crypto.envelope import Sealed
from sluicegate.store.db import SQLITE_BEGIN
from sluicegate.store.fields import Stamper
from sluicegate.store.keys import KeyNotFoundError
from sluicegate.store.tables import gateway_keys, signing_keys

__all__ = [
    "SIGNING_KEY_ID_PATTERN",
    "SigningKeyNotFoundError",
    "SigningKeyRecord",
    "SigningKeyStore",
    "new_signing_key_id",
]

SIGNING_KEY_ID_PATTERN: Final = re.compile(r"sgk_[0-9a-f]{24}")
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}

SigningFingerprint = tuple[int, int, datetime | None, datetime | None]


@dataclass(frozen=True, slots=True)
class SigningKeyRecord:
    id: str
    key_id: str  # the gateway key it signs for
    sealed: str = field(repr=False)
    master_key_id: str
    created_at: datetime
    revoked_at: datetime | None


class SigningKeyNotFoundError(Exception):
    """No signing key has this id."""


def new_signing_key_id() -> str:
    """A fresh signing key id: ``"sgk_"`` and 24 hex characters."""
    return "sgk_" + secrets.token_hex(12)


def _record(row: Row[Any]) -> SigningKeyRecord:
    return SigningKeyRecord(
        id=row.id,
        key_id=row.key_id,
        sealed=row.sealed,
        master_key_id=row.master_key_id,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class SigningKeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**_WRITE)
        self._stamp = Stamper()

    async def create(self, key_id: str, seal: Callable[[str], Sealed]) -> SigningKeyRecord:
        """A new signing key for gateway key ``key_id`` (which must exist and not be revoked,
        else :class:`KeyNotFoundError`); ``seal(id)`` seals the secret for the new row's id."""
        signing_id = new_signing_key_id()
        sealed = seal(signing_id)
        async with self._writer.begin() as conn:
            query = select(gateway_keys.c.revoked_at).where(gateway_keys.c.id == key_id)
            row = (await conn.execute(query)).first()
            if row is None or row.revoked_at is not None:
                raise KeyNotFoundError(f"no active key with id {key_id!r}")
            await conn.execute(
                signing_keys.insert().values(
                    id=signing_id,
                    key_id=key_id,
                    sealed=sealed.text,
                    master_key_id=sealed.master_key_id,
                    created_at=self._stamp(),
                    revoked_at=None,
                )
            )
            return await self._get(conn, signing_id)

    async def _get(self, conn: AsyncConnection, signing_id: str) -> SigningKeyRecord:
        row = (
            await conn.execute(select(signing_keys).where(signing_keys.c.id == signing_id))
        ).first()
        if row is None:
            raise SigningKeyNotFoundError(f"no signing key with id {signing_id[:40]!r}")
        return _record(row)

    async def get(self, signing_id: str) -> SigningKeyRecord:
        async with self._engine.connect() as conn:
            return await self._get(conn, signing_id)

    async def list(
        self, *, key_id: str | None = None, include_revoked: bool = True
    ) -> builtins.list[SigningKeyRecord]:
        """Signing keys (of one gateway key, if given), oldest first."""
        query = select(signing_keys).order_by(signing_keys.c.created_at, signing_keys.c.id)
        if key_id is not None:
            query = query.where(signing_keys.c.key_id == key_id)
        if not include_revoked:
            query = query.where(signing_keys.c.revoked_at.is_(None))
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def revoke(self, signing_id: str) -> SigningKeyRecord:
        """Revoke a signing key; revoking it again keeps the first ``revoked_at``."""
        async with self._writer.begin() as conn:
            record = await self._get(conn, signing_id)
            if record.revoked_at is None:
                await conn.execute(
                    update(signing_keys)
                    .where(signing_keys.c.id == record.id, signing_keys.c.revoked_at.is_(None))
                    .values(revoked_at=self._stamp())
                )
                record = await self._get(conn, record.id)
            return record

    async def fingerprint(self) -> SigningFingerprint:
        query = select(
            func.count(),
            func.count(signing_keys.c.revoked_at),
            func.max(signing_keys.c.created_at),
            func.max(signing_keys.c.revoked_at),
        ).select_from(signing_keys)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return int(row[0]), int(row[1]), row[2], row[3]

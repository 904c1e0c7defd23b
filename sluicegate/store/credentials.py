"""Provider credentials (upstream API keys) stored in the database, sealed with envelope
encryption (:mod:`sluicegate.crypto.envelope`) under the configured master keys.

A row holds the sealed value (context ``credential:<name>``, so a sealed value copied onto
another row does not open there), the id of the master key that wraps its data key (what
``sluicegate secrets rotate`` looks for) and a fingerprint: ``sha256:`` and 16 hex digits of
a labelled SHA-256 of the secret. The fingerprint is the only thing shown of a secret; it
tells whether two credentials hold the same key without revealing any of its characters.

Change detection: :meth:`CredentialStore.fingerprint` is ``(count, max(updated_at))``;
put, delete and a rotation (:mod:`sluicegate.store.rotation`) change it. A write stamps its
row later than every stored row, so the maximum moves forward even when hosts' clocks
disagree.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sluicegate.crypto.envelope import SealError
from sluicegate.crypto.keyring_source import KeyringSource, MasterKeyMissing
from sluicegate.secret import Secret
from sluicegate.store.db import SQLITE_BEGIN
from sluicegate.store.fields import Stamper, check_name
from sluicegate.store.tables import provider_credentials

__all__ = [
    "MAX_SECRET",
    "PROVIDERS",
    "CredentialNotFoundError",
    "CredentialRecord",
    "CredentialStore",
    "DuplicateCredentialError",
    "check_secret",
    "credential_context",
    "next_stamp",
    "secret_fingerprint",
]

PROVIDERS: Final = ("anthropic", "openai")
MAX_SECRET: Final = 4096
_FINGERPRINT_LABEL: Final = b"sluicegate-credential:"
# Credentials have no generated id (the name is the key): no name is "id-shaped".
_NO_ID: Final = re.compile(r"(?!)")
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}

log = logging.getLogger("sluicegate.secrets")


@dataclass(frozen=True, slots=True)
class CredentialRecord:
    """What is shown of a stored credential: never the secret, only its fingerprint."""

    name: str
    provider: str
    fingerprint: str
    master_key_id: str
    created_at: datetime
    updated_at: datetime


class DuplicateCredentialError(Exception):
    """A credential with this name already exists (and ``replace`` was not asked)."""


class CredentialNotFoundError(Exception):
    """No credential has this name."""


def credential_context(name: str) -> str:
    """The envelope context a credential is sealed with (agreed; do not change)."""
    return f"credential:{name}"


def secret_fingerprint(secret: str) -> str:
    """``sha256:`` + 16 hex digits of SHA-256 over a label and the secret."""
    digest = hashlib.sha256(_FINGERPRINT_LABEL + secret.encode()).hexdigest()
    return "sha256:" + digest[:16]


def check_secret(secret: Any) -> str:
    """A valid secret: 1-4096 characters, no control characters, no outer whitespace.

    Messages never quote the value."""
    if not isinstance(secret, str) or not secret:
        raise ValueError("the secret must be a non-empty string")
    if len(secret) > MAX_SECRET:
        raise ValueError(f"the secret must be at most {MAX_SECRET} characters")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in secret):
        raise ValueError("the secret must not contain control characters (a line break?)")
    # An API key never has outer spaces: they are a paste mistake that would fail upstream.
    if secret != secret.strip():
        raise ValueError("the secret must not start or end with whitespace")
    return secret


def _check_provider(provider: Any) -> str:
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}")
    return str(provider)


async def next_stamp(conn: AsyncConnection, stamp: Stamper) -> datetime:
    """Now, or just after the latest stored ``updated_at`` when that is later: a write must
    move ``max(updated_at)`` forward (what instances watch) even when hosts' clocks
    disagree. Call it inside the write transaction."""
    now = stamp()
    latest: datetime | None = await conn.scalar(select(func.max(provider_credentials.c.updated_at)))
    if latest is not None and now <= latest:
        return latest + timedelta(microseconds=1)
    return now


def _record(row: Any) -> CredentialRecord:  # a Row of the _SHOWN columns
    return CredentialRecord(
        name=row.name,
        provider=row.provider,
        fingerprint=row.fingerprint,
        master_key_id=row.master_key_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


_SHOWN = (
    provider_credentials.c.name,
    provider_credentials.c.provider,
    provider_credentials.c.fingerprint,
    provider_credentials.c.master_key_id,
    provider_credentials.c.created_at,
    provider_credentials.c.updated_at,
)


class CredentialStore:
    """Provider credentials in ``provider_credentials``; see the module docstring.

    Writing or opening a credential needs a master key (:class:`MasterKeyMissing` otherwise);
    listing, reading records and deleting do not.
    """

    def __init__(self, engine: AsyncEngine, keys: KeyringSource) -> None:
        self._engine = engine
        # On SQLite, write transactions take the lock up front (BEGIN IMMEDIATE).
        self._writer = engine.execution_options(**_WRITE)
        self._keys = keys
        self._stamp = Stamper()

    @property
    def keys(self) -> KeyringSource:
        """The master-key source (a key file change can make a stored credential openable,
        so watchers of this store watch its key ids too)."""
        return self._keys

    async def put(
        self, name: str, provider: str, secret: str, *, replace: bool = False
    ) -> CredentialRecord:
        """Store a credential; ``replace=True`` overwrites one of the same name (its
        ``created_at`` is kept), otherwise an existing name raises
        :class:`DuplicateCredentialError`."""
        check_name(name, "credential", _NO_ID, "")
        provider = _check_provider(provider)
        check_secret(secret)
        sealed = self._keys.keyring().seal(secret.encode(), credential_context(name))
        values: dict[str, Any] = {
            "name": name,
            "provider": provider,
            "sealed": sealed.text,
            "master_key_id": sealed.master_key_id,
            "fingerprint": secret_fingerprint(secret),
        }
        async with self._writer.begin() as conn:
            values["created_at"] = values["updated_at"] = await next_stamp(conn, self._stamp)
            if replace:
                insert = (
                    postgresql.insert
                    if self._engine.dialect.name == "postgresql"
                    else sqlite.insert
                )
                statement = insert(provider_credentials).values(values)
                changed = {k: v for k, v in values.items() if k not in ("name", "created_at")}
                await conn.execute(
                    statement.on_conflict_do_update(index_elements=["name"], set_=changed)
                )
            else:
                try:
                    await conn.execute(provider_credentials.insert().values(values))
                except IntegrityError:
                    raise DuplicateCredentialError(
                        f"a credential named {name!r} already exists"
                    ) from None
            row = (
                await conn.execute(select(*_SHOWN).where(provider_credentials.c.name == name))
            ).one()
        return _record(row)

    async def update(
        self, name: str, secret: str, *, provider: str | None = None
    ) -> CredentialRecord:
        """Replace the secret (and optionally the provider) of an existing credential;
        :class:`CredentialNotFoundError` if there is none."""
        if provider is not None:
            provider = _check_provider(provider)
        check_secret(secret)
        if not isinstance(name, str):
            raise CredentialNotFoundError("no credential with this name")
        sealed = self._keys.keyring().seal(secret.encode(), credential_context(name))
        values: dict[str, Any] = {
            "sealed": sealed.text,
            "master_key_id": sealed.master_key_id,
            "fingerprint": secret_fingerprint(secret),
        }
        if provider is not None:
            values["provider"] = provider
        where = provider_credentials.c.name == name
        async with self._writer.begin() as conn:
            values["updated_at"] = await next_stamp(conn, self._stamp)
            result = await conn.execute(update(provider_credentials).where(where).values(values))
            if result.rowcount != 1:
                raise CredentialNotFoundError(f"no credential named {name!r}")
            row = (await conn.execute(select(*_SHOWN).where(where))).one()
        return _record(row)

    async def get(self, name: str) -> CredentialRecord | None:
        if not isinstance(name, str):
            return None
        query = select(*_SHOWN).where(provider_credentials.c.name == name)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _record(row)

    async def list(self) -> builtins.list[CredentialRecord]:
        """Every credential, by name."""
        query = select(*_SHOWN).order_by(provider_credentials.c.name)
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def delete(self, name: str) -> bool:
        """Delete a credential; ``False`` if there was none."""
        if not isinstance(name, str):
            return False
        async with self._writer.begin() as conn:
            result = await conn.execute(
                delete(provider_credentials).where(provider_credentials.c.name == name)
            )
        return bool(result.rowcount)

    async def load_secrets(self) -> dict[str, Secret]:
        """Every credential opened, by name. One that cannot be opened (no master key, a key
        no longer configured, a damaged row) is left out and logged by name and reason."""
        query = select(provider_credentials.c.name, provider_credentials.c.sealed).order_by(
            provider_credentials.c.name
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return {}
        try:
            keyring = self._keys.keyring()
        except MasterKeyMissing as exc:
            log.error(
                "%d stored credential(s) cannot be opened (%s): %s",
                len(rows),
                ", ".join(repr(row.name) for row in rows),
                exc,
            )
            return {}
        secrets: dict[str, Secret] = {}
        for row in rows:
            try:
                plain = keyring.open(row.sealed, credential_context(row.name)).decode()
            except (SealError, UnicodeDecodeError) as exc:
                reason = str(exc) if isinstance(exc, SealError) else "not UTF-8 text"
                log.error("stored credential %r cannot be opened: %s", row.name, reason)
                continue
            secrets[row.name] = Secret(plain, source=f"credential {row.name}")
        return secrets

    async def fingerprint(self) -> tuple[int, datetime | None]:
        """``(credentials, max(updated_at))``: changes on put, delete and rotation."""
        query = select(func.count(), func.max(provider_credentials.c.updated_at)).select_from(
            provider_credentials
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return int(row[0]), row[1]

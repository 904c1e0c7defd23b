"""Provider credentials in the database (sluicegate.store.credentials) and master-key rotation
(sluicegate.store.rotation), on SQLite and PostgreSQL (tests/integration/store_backends.py)."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from sluicegate.crypto.envelope import Keyring, Sealed, master_key_id
from sluicegate.crypto.keyring_source import KeyringSource, MasterKeyMissing
from sluicegate.secret import Secret
from sluicegate.settings_security import SecretsSettings
from sluicegate.store.credentials import (
    CredentialNotFoundError,
    CredentialStore,
    DuplicateCredentialError,
    secret_fingerprint,
)
from sluicegate.store.migrate import upgrade
from sluicegate.store.rotation import rotate_sealed, sealed_key_usage
from sluicegate.store.tables import provider_credentials, signing_keys
from tests.integration.store_backends import Backend, backend_fixture  # noqa: F401

SECRET_A = "sk-ant-api03-canary-A-4f9b2c7e1d0a8b3c"
SECRET_B = "sk-proj-canary-B-9e8d7c6b5a4f3e2d1c0b"


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def source(primary: bytes, *previous: bytes) -> KeyringSource:
    return KeyringSource(
        SecretsSettings(
            master_key=Secret(_b64(primary)),
            previous_master_keys=[Secret(_b64(k)) for k in previous],
        )
    )


@dataclass
class Db:
    engine: AsyncEngine
    backend: Backend

    def store(self, primary: bytes, *previous: bytes) -> CredentialStore:
        return CredentialStore(self.engine, source(primary, *previous))

    async def rows(self, table: sa.Table) -> list[dict[str, Any]]:
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in await conn.execute(sa.select(table))]


@pytest.fixture
async def db(backend: Backend) -> AsyncIterator[Db]:
    await upgrade(backend.url, schema=backend.schema)
    engine = backend.engine()
    try:
        yield Db(engine, backend)
    finally:
        await engine.dispose()


def _key() -> bytes:
    return secrets.token_bytes(32)


def _pieces(secret: str, size: int = 8) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


# --- put / get / list / delete ------------------------------------------------------------


async def test_put_get_list_delete(db: Db) -> None:
    key = _key()
    store = db.store(key)
    record = await store.put("anthropic-prod", "anthropic", SECRET_A)
    assert record.name == "anthropic-prod" and record.provider == "anthropic"
    assert record.fingerprint == secret_fingerprint(SECRET_A)
    assert record.fingerprint.startswith("sha256:") and len(record.fingerprint) == 7 + 16
    assert record.master_key_id == master_key_id(key)
    assert record.created_at == record.updated_at
    assert record.created_at.tzinfo is not None
    assert await store.get("anthropic-prod") == record
    assert await store.get("missing") is None

    await store.put("openai-main", "openai", SECRET_B)
    assert [r.name for r in await store.list()] == ["anthropic-prod", "openai-main"]

    assert await store.delete("anthropic-prod") is True
    assert await store.delete("anthropic-prod") is False
    assert [r.name for r in await store.list()] == ["openai-main"]


async def test_duplicate_replace_and_update(db: Db) -> None:
    store = db.store(_key())
    first = await store.put("shared", "anthropic", SECRET_A)
    with pytest.raises(DuplicateCredentialError, match="'shared' already exists"):
        await store.put("shared", "anthropic", SECRET_B)
    assert (await store.get("shared")) == first  # unchanged by the refused put

    replaced = await store.put("shared", "openai", SECRET_B, replace=True)
    assert replaced.provider == "openai"
    assert replaced.fingerprint == secret_fingerprint(SECRET_B) != first.fingerprint
    assert replaced.created_at == first.created_at
    assert replaced.updated_at > first.updated_at
    assert (await store.load_secrets())["shared"].reveal() == SECRET_B

    # replace=True also creates.
    created = await store.put("fresh", "anthropic", SECRET_A, replace=True)
    assert created.created_at == created.updated_at

    updated = await store.update("shared", SECRET_A)
    assert updated.provider == "openai"  # kept when not given
    assert updated.fingerprint == secret_fingerprint(SECRET_A)
    assert (await store.update("shared", SECRET_A, provider="anthropic")).provider == "anthropic"
    with pytest.raises(CredentialNotFoundError):
        await store.update("nope", SECRET_A)
    assert await store.get("nope") is None


@pytest.mark.parametrize(
    ("name", "provider", "secret", "message"),
    [
        ("", "anthropic", SECRET_A, "1-200 characters"),
        (" padded", "anthropic", SECRET_A, "outer spaces"),
        ("x" * 201, "anthropic", SECRET_A, "1-200 characters"),
        ("bad\nname", "anthropic", SECRET_A, "control characters"),
        ("ok", "azure", SECRET_A, "anthropic, openai"),
        ("ok", "anthropic", "", "non-empty"),
        ("ok", "anthropic", "x" * 4097, "at most 4096"),
        ("ok", "anthropic", SECRET_A + "\n", "control characters"),
        ("ok", "anthropic", "sk-\x00-nul", "control characters"),
        ("ok", "anthropic", " " + SECRET_A, "whitespace"),
    ],
)
async def test_validation(db: Db, name: str, provider: str, secret: str, message: str) -> None:
    store = db.store(_key())
    with pytest.raises(ValueError, match=message) as caught:
        await store.put(name, provider, secret)
    if secret.strip():
        assert secret.strip() not in str(caught.value)
    assert await store.list() == []


async def test_longest_secret_round_trips(db: Db) -> None:
    store = db.store(_key())
    secret = "k" * 4096
    await store.put("long", "openai", secret)
    assert (await store.load_secrets())["long"].reveal() == secret


async def test_nothing_of_the_secret_is_stored_in_clear(db: Db) -> None:
    key = _key()
    store = db.store(key)
    await store.put("anthropic-prod", "anthropic", SECRET_A)
    await store.put("openai-main", "openai", SECRET_B, replace=True)
    await store.update("openai-main", SECRET_B + "-v2")
    raw = await db.rows(provider_credentials)
    assert len(raw) == 2
    dump = repr(raw)
    for secret in (SECRET_A, SECRET_B, SECRET_B + "-v2"):
        for piece in _pieces(secret):
            assert piece not in dump, piece
        for encoded in (_b64(secret.encode()), secret.encode().hex()):
            assert encoded[:12] not in dump
    assert _b64(key) not in dump and key.hex() not in dump
    for row in raw:
        assert row["sealed"].startswith(f"sg1.{master_key_id(key)}.")


# --- load_secrets and the fingerprint -----------------------------------------------------


async def test_load_secrets_opens_every_credential(db: Db) -> None:
    store = db.store(_key())
    assert await store.load_secrets() == {}
    await store.put("a", "anthropic", SECRET_A)
    await store.put("b", "openai", SECRET_B)
    loaded = await store.load_secrets()
    assert {name: s.reveal() for name, s in loaded.items()} == {"a": SECRET_A, "b": SECRET_B}
    assert loaded["a"].source == "credential a"
    assert SECRET_A not in repr(loaded)


async def test_load_secrets_skips_what_cannot_be_opened(
    db: Db, caplog: pytest.LogCaptureFixture
) -> None:
    key, other = _key(), _key()
    store = db.store(key)
    await store.put("good", "anthropic", SECRET_A)
    await store.put("moved", "anthropic", SECRET_B)
    await db.store(other).put("foreign", "openai", SECRET_B)
    # A sealed value copied onto another row does not open there (context binding).
    async with db.engine.begin() as conn:
        sealed = await conn.scalar(
            sa.select(provider_credentials.c.sealed).where(provider_credentials.c.name == "good")
        )
        await conn.execute(
            sa.update(provider_credentials)
            .where(provider_credentials.c.name == "moved")
            .values(sealed=sealed)
        )
    with caplog.at_level(logging.ERROR, logger="sluicegate.secrets"):
        loaded = await store.load_secrets()
    assert list(loaded) == ["good"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("'foreign'" in m and "does not hold" in m for m in messages), messages
    assert any("'moved'" in m and "another record" in m for m in messages), messages
    for secret in (SECRET_A, SECRET_B):
        assert secret not in caplog.text


async def test_load_secrets_without_master_key(db: Db, caplog: pytest.LogCaptureFixture) -> None:
    await db.store(_key()).put("stored", "anthropic", SECRET_A)
    keyless = CredentialStore(db.engine, KeyringSource(SecretsSettings()))
    with caplog.at_level(logging.ERROR, logger="sluicegate.secrets"):
        assert await keyless.load_secrets() == {}
    assert "'stored'" in caplog.text and "secrets.master_key" in caplog.text
    # Records, listing and deleting need no master key; storing does.
    assert [r.name for r in await keyless.list()] == ["stored"]
    with pytest.raises(MasterKeyMissing, match=r"secrets\.master_key"):
        await keyless.put("new", "openai", SECRET_B)
    assert await keyless.delete("stored") is True


async def test_fingerprint_changes_on_every_write(db: Db) -> None:
    old, new = _key(), _key()
    store = db.store(old)
    seen = [await store.fingerprint()]
    assert seen[0] == (0, None)

    async def changed() -> None:
        now = await store.fingerprint()
        assert now not in seen
        seen.append(now)

    await store.put("a", "anthropic", SECRET_A)
    await changed()
    await store.put("a", "anthropic", SECRET_B, replace=True)
    await changed()
    await store.update("a", SECRET_A)
    await changed()
    await store.put("b", "openai", SECRET_B)
    await changed()
    await rotate_sealed(db.engine, Keyring(new, [old]))
    await changed()
    await store.delete("a")
    await changed()
    # A different store (another process) writes later than every stored stamp.
    await db.store(new).put("c", "openai", SECRET_A)
    await changed()
    assert seen[-1][0] == 2


# --- rotation -----------------------------------------------------------------------------


async def _insert_signing_key(engine: AsyncEngine, keyring: Keyring, secret: bytes) -> str:
    row_id = "sig_" + secrets.token_hex(12)
    sealed = keyring.seal(secret, f"signing-key:{row_id}")
    async with engine.begin() as conn:
        await conn.execute(
            signing_keys.insert().values(
                id=row_id,
                key_id="key_" + secrets.token_hex(12),
                sealed=sealed.text,
                master_key_id=sealed.master_key_id,
                created_at=datetime.now(UTC),
                revoked_at=None,
            )
        )
    return row_id


async def _open_signing_keys(db: Db, keyring: Keyring) -> dict[str, bytes]:
    return {
        row["id"]: keyring.open(row["sealed"], f"signing-key:{row['id']}")
        for row in await db.rows(signing_keys)
    }


async def test_rotate_rewraps_everything_under_the_new_primary(db: Db) -> None:
    old, new = _key(), _key()
    await db.store(old).put("a", "anthropic", SECRET_A)
    await db.store(old).put("b", "openai", SECRET_B)
    hmac_secrets = [b"hmac-" + bytes([i]) * 8 for i in range(3)]
    for secret in hmac_secrets:
        await _insert_signing_key(db.engine, Keyring(old), secret)
    before = {r["name"]: r for r in await db.rows(provider_credentials)}
    fingerprint = await db.store(old).fingerprint()

    ring = Keyring(new, [old])
    dry = await rotate_sealed(db.engine, ring, dry_run=True)
    assert (dry.rewrapped, dry.current, dry.failed, dry.dry_run) == (5, 0, 0, True)
    assert {r["name"]: r for r in await db.rows(provider_credentials)} == before

    report = await rotate_sealed(db.engine, ring)
    assert report.primary_key_id == master_key_id(new)
    assert (report.rewrapped, report.current, report.failed) == (5, 0, 0)
    assert report.tables["provider_credentials"].rewrapped == 2
    assert report.tables["signing_keys"].rewrapped == 3
    assert await sealed_key_usage(db.engine) == {
        master_key_id(new): {"provider_credentials": 2, "signing_keys": 3}
    }

    # The new key alone opens everything; the old key alone opens nothing.
    only_new = db.store(new)
    loaded = await only_new.load_secrets()
    assert {k: v.reveal() for k, v in loaded.items()} == {"a": SECRET_A, "b": SECRET_B}
    opened = await _open_signing_keys(db, Keyring(new))
    assert sorted(opened.values()) == hmac_secrets
    assert await db.store(old).load_secrets() == {}
    after = {r["name"]: r for r in await db.rows(provider_credentials)}
    for name, row in after.items():
        assert row["master_key_id"] == master_key_id(new)
        assert row["fingerprint"] == before[name]["fingerprint"]
        assert row["created_at"] == before[name]["created_at"]
        assert row["updated_at"] > before[name]["updated_at"]  # instances reload
    assert await only_new.fingerprint() != fingerprint

    again = await rotate_sealed(db.engine, ring)  # idempotent
    assert (again.rewrapped, again.current, again.failed) == (0, 5, 0)
    assert {r["name"]: r for r in await db.rows(provider_credentials)} == after


async def test_rotate_reports_rows_it_cannot_open(db: Db) -> None:
    old, new, lost = _key(), _key(), _key()
    await db.store(old).put("ok", "anthropic", SECRET_A)
    await db.store(lost).put("orphan", "openai", SECRET_B)
    await db.store(new).put("current", "openai", SECRET_B)
    good_signing = await _insert_signing_key(db.engine, Keyring(old), b"hmac-ok")
    damaged = await _insert_signing_key(db.engine, Keyring(old), b"hmac-damaged")
    async with db.engine.begin() as conn:
        await conn.execute(
            sa.update(signing_keys)
            .where(signing_keys.c.id == damaged)
            .values(sealed=sa.func.replace(signing_keys.c.sealed, "sg1.", "sg9."))
        )

    report = await rotate_sealed(db.engine, Keyring(new, [old]))
    assert (report.rewrapped, report.current, report.failed) == (2, 1, 2)
    failures = {(f.table, f.name): f.reason for f in report.failures}
    assert set(failures) == {("provider_credentials", "orphan"), ("signing_keys", damaged)}
    assert master_key_id(lost) in failures[("provider_credentials", "orphan")]
    assert "not a sealed value" in failures[("signing_keys", damaged)]
    for reason in failures.values():
        assert SECRET_B not in reason
    usage = await sealed_key_usage(db.engine)
    assert usage[master_key_id(lost)] == {"provider_credentials": 1}
    assert usage[master_key_id(old)] == {"signing_keys": 1}  # the damaged one, untouched
    assert usage[master_key_id(new)] == {"provider_credentials": 2, "signing_keys": 1}
    assert (await _open_signing_keys_where(db, good_signing, Keyring(new))) == b"hmac-ok"


async def _open_signing_keys_where(db: Db, row_id: str, keyring: Keyring) -> bytes:
    for row in await db.rows(signing_keys):
        if row["id"] == row_id:
            return keyring.open(row["sealed"], f"signing-key:{row_id}")
    raise AssertionError(f"no signing key {row_id}")


class _RacingKeyring(Keyring):
    """A keyring whose first rewrap of each credential lets another process (a thread with
    its own engine and event loop, still sealing with the old key) store a new secret in
    between the rotation's read and its write."""

    def __init__(self, primary: bytes, previous: list[bytes], backend: Backend) -> None:
        super().__init__(primary, previous)
        self.backend, self.old = backend, previous[0]
        self.raced: set[str] = set()

    def rewrap(self, sealed: str, context: str) -> Sealed:
        name = context.removeprefix("credential:")
        if context.startswith("credential:") and name not in self.raced:
            self.raced.add(name)
            thread = threading.Thread(target=asyncio.run, args=(self._concurrent_put(name),))
            thread.start()
            thread.join()
        return super().rewrap(sealed, context)

    async def _concurrent_put(self, name: str) -> None:
        engine = self.backend.engine()
        try:
            store = CredentialStore(engine, source(self.old))
            await store.put(name, "openai", f"{name}-written-during-rotation", replace=True)
        finally:
            await engine.dispose()


async def test_a_put_during_rotation_is_not_lost(db: Db) -> None:
    old, new = _key(), _key()
    for name in ("a", "b"):
        await db.store(old).put(name, "anthropic", SECRET_A)
    ring = _RacingKeyring(new, [old], db.backend)
    report = await rotate_sealed(db.engine, ring)
    assert ring.raced == {"a", "b"}
    # The compare-and-set lost each race, re-read the new value and re-wrapped that one.
    assert (report.rewrapped, report.failed) == (2, 0)
    loaded = await db.store(new).load_secrets()
    assert {k: v.reveal() for k, v in loaded.items()} == {
        "a": "a-written-during-rotation",
        "b": "b-written-during-rotation",
    }
    records = {r.name: r for r in await db.store(new).list()}
    assert {r.provider for r in records.values()} == {"openai"}
    assert {r.master_key_id for r in records.values()} == {master_key_id(new)}


async def test_puts_racing_a_rotation_keep_the_last_value(db: Db) -> None:
    old, new = _key(), _key()
    names = [f"c{i}" for i in range(12)]
    writer = db.store(old)  # an instance that has not seen the new key yet
    for name in names:
        await writer.put(name, "anthropic", f"{name}-v0")

    async def keep_writing() -> None:
        for version in range(1, 4):
            for name in names:
                await writer.put(name, "anthropic", f"{name}-v{version}", replace=True)

    await asyncio.gather(keep_writing(), rotate_sealed(db.engine, Keyring(new, [old])))
    loaded = await db.store(new, old).load_secrets()
    assert {k: v.reveal() for k, v in loaded.items()} == {n: f"{n}-v3" for n in names}
    # Whatever the writer sealed with the old key after the rotation passed is picked up
    # by running it again.
    await rotate_sealed(db.engine, Keyring(new, [old]))
    assert set(await sealed_key_usage(db.engine)) == {master_key_id(new)}

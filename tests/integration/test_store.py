"""The storage layer against real databases: SQLite (a tmp file) and PostgreSQL.

Every test runs on both backends. PostgreSQL tests use a fresh schema per test and skip when
the server is unreachable, unless CI=true, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, column, inspect, table

from sluicegate.store.db import create_engine
from sluicegate.store.keys import DuplicateKeyError, KeyNotFoundError, KeyRecord, KeyStore
from sluicegate.store.migrate import MigrationError, current_revision, head_revision, upgrade
from sluicegate.store.migrations import VERSION_TABLE
from sluicegate.store.tables import metadata
from tests.integration.store_backends import Backend, backend_fixture  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[KeyStore]:
    await upgrade(backend.url, schema=backend.schema)
    engine = create_engine(backend.url, schema=backend.schema)
    try:
        yield KeyStore(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def other_store(backend: Backend, store: KeyStore) -> AsyncIterator[KeyStore]:
    """A second store on its own engine: stands in for another gateway process."""
    engine = create_engine(backend.url, schema=backend.schema)
    try:
        yield KeyStore(engine)
    finally:
        await engine.dispose()


def _hash(seed: str) -> str:
    return (seed.encode().hex() * 64)[:64]


async def _create(
    store: KeyStore,
    name: str,
    *,
    models: Sequence[str] = (),
    expires_at: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> KeyRecord:
    return await store.create(
        name=name,
        key_hash=_hash(name),
        key_hint="sk-sg-…Ab3x",
        models=models,
        expires_at=expires_at,
        metadata=metadata,
    )


def _assert_utc(*values: datetime | None) -> None:
    for value in values:
        if value is not None:
            assert value.tzinfo is UTC, value


# --- migrations -------------------------------------------------------------------------


async def test_upgrade_is_idempotent_and_reports_revision(backend: Backend) -> None:
    assert await current_revision(backend.url, schema=backend.schema) is None
    await upgrade(backend.url, schema=backend.schema)
    await upgrade(backend.url, schema=backend.schema)
    assert await current_revision(backend.url, schema=backend.schema) == head_revision()


async def test_concurrent_upgrades_in_one_loop(backend: Backend) -> None:
    await asyncio.gather(*(upgrade(backend.url, schema=backend.schema) for _ in range(3)))
    assert await current_revision(backend.url, schema=backend.schema) == head_revision()


async def test_concurrent_upgrades_from_two_processes(backend: Backend) -> None:
    code = (
        "import asyncio, sys\n"
        "from sluicegate.store.migrate import upgrade\n"
        "asyncio.run(upgrade(sys.argv[1], schema=sys.argv[2] or None))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            backend.url,
            backend.schema or "",
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    for process in processes:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, stderr.decode()
    assert await current_revision(backend.url, schema=backend.schema) == head_revision()


async def test_upgrade_refuses_a_database_from_a_newer_version(backend: Backend) -> None:
    await upgrade(backend.url, schema=backend.schema)
    engine = create_engine(backend.url, schema=backend.schema)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                table(VERSION_TABLE, column("version_num")).update().values(version_num="9999")
            )
    finally:
        await engine.dispose()
    with pytest.raises(MigrationError, match="'9999'"):
        await upgrade(backend.url, schema=backend.schema)
    assert await current_revision(backend.url, schema=backend.schema) == "9999"


def _schema_diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "version_table": VERSION_TABLE}
    )
    return list(compare_metadata(context, metadata))


def _table_names(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_migrated_schema_matches_table_definitions(backend: Backend) -> None:
    await upgrade(backend.url, schema=backend.schema)
    engine = create_engine(backend.url, schema=backend.schema)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_schema_diff) == []
            tables = await conn.run_sync(_table_names)
    finally:
        await engine.dispose()
    assert tables == {
        "audit_log",
        "gateway_keys",
        "model_deployments",
        "partners",
        "provider_credentials",
        "signing_keys",
        "server_secrets",
        "usage_ledger",
        VERSION_TABLE,
    }


# --- keys -------------------------------------------------------------------------------


async def test_create_get_list(store: KeyStore) -> None:
    expires = datetime.now(UTC) + timedelta(days=30)
    first = await _create(
        store, "alpha", models=["claude-*", "gpt-4o"], expires_at=expires, metadata={"team": "x"}
    )
    second = await _create(store, "beta")
    assert first.id.startswith("key_") and len(first.id) == 28
    assert first.models == ("claude-*", "gpt-4o")
    assert first.metadata == {"team": "x"}
    assert second.models == () and second.metadata == {}

    assert await store.get(first.id) == first
    assert await store.get("alpha") == first
    assert [r.name for r in await store.list()] == ["alpha", "beta"]
    with pytest.raises(KeyNotFoundError):
        await store.get("gamma")
    with pytest.raises(KeyNotFoundError):
        await store.get("key_" + "0" * 24)


async def test_duplicates_raise_naming_the_field(store: KeyStore) -> None:
    await _create(store, "alpha")
    with pytest.raises(DuplicateKeyError) as by_name:
        await store.create(name="alpha", key_hash=_hash("other"), key_hint="h")
    assert by_name.value.field == "name"
    assert "alpha" in str(by_name.value)
    with pytest.raises(DuplicateKeyError) as by_hash:
        await store.create(name="beta", key_hash=_hash("alpha"), key_hint="h")
    assert by_hash.value.field == "key_hash"
    assert _hash("alpha") not in str(by_hash.value)
    assert [r.name for r in await store.list()] == ["alpha"]


async def test_create_validates_input(store: KeyStore) -> None:
    with pytest.raises(ValueError, match="key id"):
        await store.create(name="key_" + "a" * 24, key_hash=_hash("x"), key_hint="h")
    with pytest.raises(ValueError, match="key_hash"):
        await store.create(name="x", key_hash="not-a-hash", key_hint="h")
    with pytest.raises(ValueError, match="JSON"):
        await store.create(name="x", key_hash=_hash("x"), key_hint="h", metadata={"a": object()})
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.create(
            name="x", key_hash=_hash("x"), key_hint="h", expires_at=datetime(2030, 1, 1)
        )
    assert await store.list() == []


async def test_revoke_is_idempotent_and_filters(store: KeyStore) -> None:
    alpha = await _create(store, "alpha")
    await _create(store, "beta")
    revoked = await store.revoke("alpha")
    assert revoked.revoked_at is not None
    assert revoked.updated_at == revoked.revoked_at and revoked.updated_at > alpha.updated_at
    again = await store.revoke(alpha.id)
    assert again.revoked_at == revoked.revoked_at
    assert again == revoked
    assert [r.name for r in await store.list(include_revoked=False)] == ["beta"]
    assert len(await store.list()) == 2
    with pytest.raises(KeyNotFoundError):
        await store.revoke("nope")


async def test_fingerprint_changes_on_create_and_revoke(
    store: KeyStore, other_store: KeyStore
) -> None:
    assert await store.fingerprint() == (0, 0, None)
    await _create(store, "alpha")
    after_create = await other_store.fingerprint()
    assert after_create[0] == 1
    await _create(other_store, "beta")
    after_second = await store.fingerprint()
    assert after_second[0] == 2 and after_second != after_create
    await store.revoke("alpha")
    after_revoke = await other_store.fingerprint()
    assert after_revoke[:2] == (2, 1) and after_revoke != after_second
    assert await store.fingerprint() == after_revoke
    await store.revoke("alpha")  # no change: no new fingerprint
    assert await store.fingerprint() == after_revoke


async def test_load_active_excludes_revoked_and_expired(store: KeyStore) -> None:
    now = datetime.now(UTC)
    await _create(store, "forever")
    await _create(store, "later", expires_at=now + timedelta(hours=1))
    await _create(store, "expired", expires_at=now - timedelta(seconds=1))
    await _create(store, "revoked")
    await store.revoke("revoked")
    active = await store.load_active(now)
    assert [r.name for r in active] == ["forever", "later"]
    assert all(r.is_active(now) for r in active)
    assert [r.name for r in await store.load_active(now + timedelta(hours=2))] == ["forever"]
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.load_active(datetime(2030, 1, 1))


async def test_datetimes_are_timezone_aware_utc(store: KeyStore) -> None:
    plus_five = timezone(timedelta(hours=5))
    expires = datetime(2031, 6, 1, 17, 30, 15, 123456, tzinfo=plus_five)
    created = await _create(store, "alpha", expires_at=expires)
    await store.revoke("alpha")
    for record in (created, await store.get("alpha"), *(await store.list())):
        _assert_utc(record.created_at, record.expires_at, record.revoked_at, record.updated_at)
        assert record.expires_at == expires
        assert record.expires_at is not None and record.expires_at.hour == 12
    count, _revoked, latest = await store.fingerprint()
    assert count == 1
    _assert_utc(latest)


async def test_get_or_create_secret(store: KeyStore, other_store: KeyStore) -> None:
    first = await store.get_or_create_secret("key_pepper", lambda: "first-value")
    assert first == "first-value"
    assert await store.get_or_create_secret("key_pepper", lambda: "second") == "first-value"
    assert await other_store.get_or_create_secret("key_pepper", lambda: "3") == "first-value"


async def test_get_or_create_secret_concurrently(store: KeyStore, other_store: KeyStore) -> None:
    results = await asyncio.gather(
        store.get_or_create_secret("pepper", lambda: "from-a"),
        other_store.get_or_create_secret("pepper", lambda: "from-b"),
        store.get_or_create_secret("pepper", lambda: "from-c"),
        other_store.get_or_create_secret("pepper", lambda: "from-d"),
    )
    assert len(set(results)) == 1
    assert results[0] in {"from-a", "from-b", "from-c", "from-d"}

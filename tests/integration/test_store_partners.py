"""Partners, key limits/budgets and key updates, and migration 0001 -> 0002, on SQLite and
PostgreSQL (see tests/integration/store_backends.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection

from sluicegate.store.keys import DuplicateKeyError, KeyNotFoundError, KeyRecord, KeyStore
from sluicegate.store.migrate import _config, current_revision, head_revision, upgrade
from sluicegate.store.partners import (
    DuplicatePartnerError,
    PartnerInUseError,
    PartnerNotFoundError,
    PartnerStore,
)
from sluicegate.store.tables import UTCDateTime
from tests.integration.store_backends import Backend, backend_fixture  # noqa: F401


@pytest.fixture
async def stores(backend: Backend) -> AsyncIterator[tuple[PartnerStore, KeyStore]]:
    await upgrade(backend.url, schema=backend.schema)
    engine = backend.engine()
    try:
        yield PartnerStore(engine), KeyStore(engine)
    finally:
        await engine.dispose()


def _hash(seed: str) -> str:
    return (seed.encode().hex() * 64)[:64]


async def _key(keys: KeyStore, name: str, **fields: Any) -> KeyRecord:
    return await keys.create(name=name, key_hash=_hash(name), key_hint="sk-…x", **fields)


# --- migration 0001 -> 0002 -------------------------------------------------------------


def _migrate_to(connection: Connection, revision: str, *, down: bool = False) -> None:
    with connection.begin():
        if down:
            command.downgrade(_config(connection), revision)
        else:
            command.upgrade(_config(connection), revision)


_OLD_KEYS = sa.table(
    "gateway_keys",
    sa.column("id", sa.String()),
    sa.column("name", sa.String()),
    sa.column("key_hash", sa.String()),
    sa.column("key_hint", sa.String()),
    sa.column("models", sa.JSON()),
    sa.column("created_at", UTCDateTime()),
    sa.column("updated_at", UTCDateTime()),
)


async def test_upgrade_from_0001_keeps_keys_working(backend: Backend) -> None:
    engine = backend.engine()
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_migrate_to, "0001")
        assert await current_revision(backend.url, schema=backend.schema) == "0001"
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            await conn.execute(
                _OLD_KEYS.insert(),
                [
                    {
                        "id": f"key_{i:024x}",
                        "name": f"old-{i}",
                        "key_hash": _hash(f"old-{i}"),
                        "key_hint": "h",
                        "models": ["claude-*"],
                        "created_at": now + timedelta(seconds=i),
                        "updated_at": now + timedelta(seconds=i),
                    }
                    for i in range(3)
                ],
            )
        await upgrade(backend.url, schema=backend.schema)
        assert await current_revision(backend.url, schema=backend.schema) == head_revision()

        keys, partners = KeyStore(engine), PartnerStore(engine)
        old = await keys.list()
        assert [k.name for k in old] == ["old-0", "old-1", "old-2"]
        for record in old:
            assert record.models == ("claude-*",)
            assert (record.partner_id, record.rpm, record.tpm, record.max_parallel) == (None,) * 4
            assert (record.budget_usd, record.budget_period) == (None, None)
        assert len(await keys.load_active(now)) == 3
        partner = await partners.create(name="acme")
        moved = await keys.update("old-1", {"partner_id": partner.id, "rpm": 5})
        assert (moved.partner_id, moved.rpm) == (partner.id, 5)
        await keys.revoke("old-2")
        assert (await keys.fingerprint())[:2] == (3, 1)

        # And back down: 0002's downgrade restores the 0001 shape, keys intact.
        async with engine.connect() as conn:
            await conn.run_sync(_migrate_to, "0001", down=True)
            names = await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in sa.inspect(c).get_columns("gateway_keys")}
            )
            count = await conn.scalar(sa.select(sa.func.count()).select_from(_OLD_KEYS))
        assert "partners" not in names and "usage_ledger" not in names
        assert "partner_id" not in columns and "budget_usd" not in columns
        assert count == 3
    finally:
        await engine.dispose()


# --- partners ---------------------------------------------------------------------------


async def test_partner_create_get_list(stores: tuple[PartnerStore, KeyStore]) -> None:
    partners, _ = stores
    acme = await partners.create(name="acme", metadata={"team": "a"})
    beta = await partners.create(
        name="beta", weight=2.5, rpm=60, tpm=1000, max_parallel=3, budget_usd=12.5
    )
    assert acme.id.startswith("ptn_") and len(acme.id) == 28
    assert (acme.weight, acme.rpm, acme.budget_usd, acme.budget_period) == (1.0, None, None, None)
    assert acme.metadata == {"team": "a"}
    assert (beta.weight, beta.rpm, beta.tpm, beta.max_parallel) == (2.5, 60, 1000, 3)
    assert (beta.budget_usd, beta.budget_period) == (12.5, "monthly")
    assert await partners.get("acme") == acme
    assert await partners.get(beta.id) == beta
    assert await partners.list() == [acme, beta]
    assert acme.created_at.tzinfo is UTC
    with pytest.raises(PartnerNotFoundError):
        await partners.get("gamma")
    with pytest.raises(PartnerNotFoundError):
        await partners.get("ptn_" + "0" * 24)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"name": ""}, "1-200"),
        ({"name": " acme"}, "outer spaces"),
        ({"name": "x" * 201}, "1-200"),
        ({"name": "ptn_" + "a" * 24}, "partner id"),
        ({"weight": 0}, "weight"),
        ({"weight": -1.0}, "weight"),
        ({"weight": float("nan")}, "weight"),
        ({"weight": True}, "weight"),
        ({"rpm": 0}, "rpm"),
        ({"tpm": "100"}, "tpm"),
        ({"max_parallel": True}, "max_parallel"),
        ({"max_parallel": 2.0}, "max_parallel"),
        ({"budget_usd": -0.01}, "budget_usd"),
        ({"budget_usd": float("inf")}, "budget_usd"),
        ({"budget_usd": 5, "budget_period": "yearly"}, "budget_period"),
        ({"budget_period": "daily"}, "needs budget_usd"),
        ({"metadata": {"a": object()}}, "JSON"),
    ],
)
async def test_partner_create_validates(
    stores: tuple[PartnerStore, KeyStore], fields: dict[str, Any], match: str
) -> None:
    partners, _ = stores
    with pytest.raises(ValueError, match=match):
        await partners.create(**{"name": "acme", **fields})
    assert await partners.list() == []


async def test_partner_duplicates(stores: tuple[PartnerStore, KeyStore]) -> None:
    partners, _ = stores
    await partners.create(name="acme")
    await partners.create(name="beta")
    with pytest.raises(DuplicatePartnerError, match="acme"):
        await partners.create(name="acme")
    with pytest.raises(DuplicatePartnerError, match="beta"):
        await partners.update("acme", {"name": "beta"})
    assert [p.name for p in await partners.list()] == ["acme", "beta"]


async def test_partner_update_each_field(stores: tuple[PartnerStore, KeyStore]) -> None:
    partners, _ = stores
    acme = await partners.create(name="acme")
    fingerprint = await partners.fingerprint()
    steps: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"name": "acme-2"}, {"name": "acme-2"}),
        ({"weight": 3}, {"weight": 3.0}),
        ({"rpm": 10, "tpm": 2000}, {"rpm": 10, "tpm": 2000}),
        ({"max_parallel": 4}, {"max_parallel": 4}),
        ({"budget_usd": 100}, {"budget_usd": 100.0, "budget_period": "monthly"}),
        ({"budget_period": "daily"}, {"budget_usd": 100.0, "budget_period": "daily"}),
        ({"metadata": {"k": [1, 2]}}, {"metadata": {"k": [1, 2]}}),
        ({"rpm": None}, {"rpm": None, "tpm": 2000}),
        ({"budget_usd": None}, {"budget_usd": None, "budget_period": None}),
    ]
    previous = acme
    for changes, expected in steps:
        updated = await partners.update(acme.id, changes)
        for field, value in expected.items():
            assert getattr(updated, field) == value, (changes, field)
        assert updated.updated_at > previous.updated_at
        assert updated.created_at == acme.created_at
        new_fingerprint = await partners.fingerprint()
        assert new_fingerprint != fingerprint and new_fingerprint[0] == 1
        fingerprint, previous = new_fingerprint, updated
        assert await partners.get(acme.id) == updated
    assert await partners.update("acme-2", {}) == previous  # no change, no bump
    assert await partners.fingerprint() == fingerprint


async def test_partner_update_refuses_bad_changes(stores: tuple[PartnerStore, KeyStore]) -> None:
    partners, _ = stores
    acme = await partners.create(name="acme", budget_usd=5, budget_period="weekly")
    with pytest.raises(ValueError, match="cannot update partner field"):
        await partners.update("acme", {"id": "x"})
    with pytest.raises(ValueError, match="weight"):
        await partners.update("acme", {"weight": None})
    with pytest.raises(ValueError, match="name"):
        await partners.update("acme", {"name": None})
    with pytest.raises(ValueError, match="needs budget_usd"):
        await partners.update("acme", {"budget_usd": None, "budget_period": "daily"})
    with pytest.raises(ValueError, match="rpm"):
        await partners.update("acme", {"rpm": -5})
    with pytest.raises(PartnerNotFoundError):
        await partners.update("nope", {"rpm": 5})
    assert await partners.get("acme") == acme


async def test_partner_delete_refused_while_keys_use_it(
    stores: tuple[PartnerStore, KeyStore],
) -> None:
    partners, keys = stores
    acme = await partners.create(name="acme")
    await _key(keys, "k1", partner_id=acme.id)
    await _key(keys, "k2", partner_id="acme")  # a name works too; the id is stored
    assert (await keys.get("k2")).partner_id == acme.id
    before = await partners.fingerprint()
    with pytest.raises(PartnerInUseError, match="2 non-revoked"):
        await partners.delete("acme")
    await keys.revoke("k1")
    with pytest.raises(PartnerInUseError, match="1 non-revoked"):
        await partners.delete(acme.id)
    await keys.update("k2", {"partner_id": None})
    assert await partners.fingerprint() == before
    await partners.delete("acme")
    assert await partners.fingerprint() == (0, None)
    with pytest.raises(PartnerNotFoundError):
        await partners.delete("acme")
    assert (await keys.get("k1")).partner_id == acme.id  # revoked keys keep their history


async def test_partner_fingerprint_changes(stores: tuple[PartnerStore, KeyStore]) -> None:
    partners, _ = stores
    seen = {await partners.fingerprint()}
    assert seen == {(0, None)}
    await partners.create(name="a")
    seen.add(await partners.fingerprint())
    await partners.create(name="b")
    seen.add(await partners.fingerprint())
    await partners.update("a", {"weight": 2})
    seen.add(await partners.fingerprint())
    await partners.delete("a")
    seen.add(await partners.fingerprint())
    await partners.delete("b")
    seen.add(await partners.fingerprint())
    assert len(seen) == 5  # (0, None) came back at the end
    assert (await partners.fingerprint()) == (0, None)


async def test_key_write_and_partner_delete_never_both_win(backend: Backend) -> None:
    """No key may be left pointing at a deleted partner, however the two writes interleave."""
    await upgrade(backend.url, schema=backend.schema)
    engines = [backend.engine(), backend.engine()]
    try:
        partners, keys = PartnerStore(engines[0]), KeyStore(engines[1])
        for i in range(8):
            partner = await partners.create(name=f"p{i}")
            results = await asyncio.gather(
                partners.delete(partner.id),
                _key(keys, f"k{i}", partner_id=partner.id),
                return_exceptions=True,
            )
            deleted = results[0] is None
            created = isinstance(results[1], KeyRecord)
            assert deleted != created, results
            if deleted:
                assert isinstance(results[1], PartnerNotFoundError)
            else:
                assert isinstance(results[0], PartnerInUseError)
    finally:
        for engine in engines:
            await engine.dispose()


# --- keys: partner, limits, update ------------------------------------------------------


async def test_key_create_with_limits(stores: tuple[PartnerStore, KeyStore]) -> None:
    partners, keys = stores
    acme = await partners.create(name="acme")
    key = await _key(
        keys, "k", partner_id=acme.id, rpm=1, tpm=2, max_parallel=3, budget_usd=0, metadata={}
    )
    assert (key.partner_id, key.rpm, key.tpm, key.max_parallel) == (acme.id, 1, 2, 3)
    assert (key.budget_usd, key.budget_period) == (0.0, "monthly")
    assert await keys.get("k") == key
    plain = await _key(keys, "plain")
    assert (plain.partner_id, plain.rpm, plain.budget_usd, plain.budget_period) == (None,) * 4
    with pytest.raises(PartnerNotFoundError):
        await _key(keys, "orphan", partner_id="ptn_" + "0" * 24)
    with pytest.raises(ValueError, match="needs budget_usd"):
        await _key(keys, "bad", budget_period="total")
    with pytest.raises(ValueError, match="tpm"):
        await _key(keys, "bad", tpm=0)
    assert [k.name for k in await keys.list()] == ["k", "plain"]


async def test_key_update_each_field(stores: tuple[PartnerStore, KeyStore]) -> None:
    partners, keys = stores
    acme = await partners.create(name="acme")
    beta = await partners.create(name="beta")
    key = await _key(keys, "k")
    expires = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    steps: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"name": "k2"}, {"name": "k2"}),
        ({"models": ["gpt-*", "claude-x"]}, {"models": ("gpt-*", "claude-x")}),
        ({"expires_at": expires}, {"expires_at": expires}),
        ({"partner_id": acme.id}, {"partner_id": acme.id}),
        ({"partner_id": "beta"}, {"partner_id": beta.id}),
        ({"rpm": 7}, {"rpm": 7}),
        ({"tpm": 70_000}, {"tpm": 70_000}),
        ({"max_parallel": 2}, {"max_parallel": 2}),
        ({"budget_usd": 3.5}, {"budget_usd": 3.5, "budget_period": "monthly"}),
        ({"budget_period": "total"}, {"budget_period": "total"}),
        ({"metadata": {"owner": "me"}}, {"metadata": {"owner": "me"}}),
        ({"expires_at": None, "partner_id": None}, {"expires_at": None, "partner_id": None}),
        ({"models": []}, {"models": ()}),
        ({"budget_usd": None}, {"budget_usd": None, "budget_period": None}),
    ]
    fingerprint, previous = await keys.fingerprint(), key
    for changes, expected in steps:
        updated = await keys.update(key.id, changes)
        for field, value in expected.items():
            assert getattr(updated, field) == value, (changes, field)
        assert updated.updated_at > previous.updated_at
        assert (updated.key_hash, updated.created_at) == (key.key_hash, key.created_at)
        assert await keys.get(key.id) == updated
        new_fingerprint = await keys.fingerprint()
        assert new_fingerprint != fingerprint and new_fingerprint[:2] == (1, 0)
        fingerprint, previous = new_fingerprint, updated


async def test_key_update_refuses_bad_changes(stores: tuple[PartnerStore, KeyStore]) -> None:
    _, keys = stores
    key = await _key(keys, "k", rpm=5)
    await _key(keys, "other")
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"key_hash": _hash("x")}, ValueError, "cannot update key field"),
        ({"revoked_at": None}, ValueError, "cannot update key field"),
        ({"name": "key_" + "b" * 24}, ValueError, "key id"),
        ({"name": "other"}, DuplicateKeyError, "other"),
        ({"models": "claude-*"}, ValueError, "models"),
        ({"models": [""]}, ValueError, "models"),
        ({"expires_at": datetime(2030, 1, 1)}, ValueError, "timezone-aware"),
        ({"partner_id": "nope"}, PartnerNotFoundError, "nope"),
        ({"partner_id": 5}, ValueError, "partner_id"),
        ({"rpm": 0}, ValueError, "rpm"),
        ({"budget_period": "monthly"}, ValueError, "needs budget_usd"),
        ({"budget_usd": -1}, ValueError, "budget_usd"),
        ({"metadata": ["not", "a", "mapping"]}, ValueError, "metadata"),
    ]
    for changes, error, match in bad:
        with pytest.raises(error, match=match):
            await keys.update("k", changes)
    assert await keys.get("k") == key
    with pytest.raises(KeyNotFoundError):
        await keys.update("missing", {"rpm": 1})
    with pytest.raises(DuplicateKeyError) as info:
        await keys.update(key.id, {"name": "other"})
    assert info.value.field == "name"


async def test_concurrent_key_updates_keep_both_changes(
    stores: tuple[PartnerStore, KeyStore], backend: Backend
) -> None:
    """Two processes updating different limits of one key: neither change is lost."""
    _, keys = stores
    await _key(keys, "k")
    engine = backend.engine()
    try:
        other = KeyStore(engine)
        for i in range(1, 6):
            await asyncio.gather(keys.update("k", {"rpm": i}), other.update("k", {"tpm": 10 * i}))
            record = await keys.get("k")
            assert (record.rpm, record.tpm) == (i, 10 * i)
    finally:
        await engine.dispose()

"""Key blocking, regeneration with a grace period, IP allow-lists and the audit log in the
store, on SQLite and PostgreSQL; and the admin auditor's rate limit on failed logins."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from sluicegate.api.admin.auditor import Auditor, describe, find_target
from sluicegate.api.asgi import Request
from sluicegate.store.audit import AuditQuery, AuditStore
from sluicegate.store.db import create_engine
from sluicegate.store.keys import KeyNotFoundError, KeyStore
from sluicegate.store.migrate import upgrade
from sluicegate.store.partners import PartnerStore
from tests.integration.store_backends import Backend, backend_fixture  # noqa: F401


@dataclass
class Stores:
    keys: KeyStore
    partners: PartnerStore
    audit: AuditStore


@pytest.fixture
async def stores(backend: Backend) -> AsyncIterator[Stores]:
    await upgrade(backend.url, schema=backend.schema)
    engine = create_engine(backend.url, schema=backend.schema)
    try:
        yield Stores(KeyStore(engine), PartnerStore(engine), AuditStore(engine))
    finally:
        await engine.dispose()


def digest(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


async def test_block_and_unblock_leave_load_active_and_move_the_fingerprint(
    stores: Stores,
) -> None:
    keys = stores.keys
    record = await keys.create(name="app", key_hash=digest("a"), key_hint="…a")
    now = datetime.now(UTC)
    before = await keys.fingerprint()
    blocked = await keys.set_blocked("app", True)
    assert blocked.blocked and not blocked.is_active(now)
    assert [r.name for r in await keys.load_active(now)] == []
    after_block = await keys.fingerprint()
    assert after_block != before
    assert (await keys.set_blocked(record.id, True)).updated_at == blocked.updated_at  # no-op
    unblocked = await keys.set_blocked("app", False)
    assert not unblocked.blocked and [r.id for r in await keys.load_active(now)] == [record.id]
    assert await keys.fingerprint() not in (before, after_block)
    await keys.revoke("app")
    with pytest.raises(ValueError, match="revoked"):
        await keys.set_blocked("app", True)
    with pytest.raises(KeyNotFoundError):
        await keys.set_blocked("nobody", True)


async def test_regenerate_keeps_the_old_hash_for_the_grace_only(stores: Stores) -> None:
    keys = stores.keys
    record = await keys.create(name="svc", key_hash=digest("old"), key_hint="…old")
    before = await keys.fingerprint()
    renewed = await keys.regenerate(
        "svc", key_hash=digest("new"), key_hint="…new", grace=timedelta(hours=1)
    )
    now = datetime.now(UTC)
    assert renewed.id == record.id and renewed.name == "svc"
    assert renewed.key_hash == digest("new") and renewed.key_hint == "…new"
    assert renewed.previous_key_hash == digest("old")
    assert renewed.previous_key_expires_at is not None
    assert timedelta(minutes=59) < renewed.previous_key_expires_at - now <= timedelta(hours=1)
    assert renewed.previous_key_valid(now)
    assert not renewed.previous_key_valid(now + timedelta(hours=2))
    assert await keys.fingerprint() != before
    # A second regeneration: only the secret just replaced keeps working.
    again = await keys.regenerate("svc", key_hash=digest("newer"), key_hint="…newer")
    assert again.previous_key_hash is None and again.previous_key_expires_at is None
    [loaded] = await keys.load_active(datetime.now(UTC))
    assert loaded.key_hash == digest("newer") and loaded.previous_key_hash is None
    with pytest.raises(ValueError, match="64 lowercase hex"):
        await keys.regenerate("svc", key_hash="not-a-hash", key_hint="x")
    with pytest.raises(ValueError, match="negative"):
        await keys.regenerate("svc", key_hash=digest("x"), key_hint="x", grace=timedelta(-1))
    await keys.revoke("svc")
    with pytest.raises(ValueError, match="revoked"):
        await keys.regenerate("svc", key_hash=digest("late"), key_hint="…late")


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"], ("10.0.0.0/8", "192.168.1.7/32",
                                                          "2001:db8::/32")),
        ([" 10.0.0.0/8 ", "10.0.0.0/8"], ("10.0.0.0/8",)),  # trimmed, deduplicated
        ([], ()),
    ],
)  # fmt: skip
async def test_allowed_ips_are_normalised_on_keys_and_partners(
    stores: Stores, given: list[str], stored: tuple[str, ...]
) -> None:
    partner = await stores.partners.create(name="acme", allowed_ips=given)
    assert partner.allowed_ips == stored
    assert (await stores.partners.get("acme")).allowed_ips == stored
    key = await stores.keys.create(name="k", key_hash=digest("k"), key_hint="…k", allowed_ips=given)
    assert key.allowed_ips == stored == (await stores.keys.get("k")).allowed_ips
    updated = await stores.keys.update("k", {"allowed_ips": ["127.0.0.1"]})
    assert updated.allowed_ips == ("127.0.0.1/32",)
    cleared = await stores.partners.update("acme", {"allowed_ips": []})
    assert cleared.allowed_ips == ()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("10.0.0.0/8", "list of CIDR"),
        (["10.0.0.5/8"], "host bits"),
        (["not-an-ip"], "not a CIDR"),
        (["10.0.0.0/33"], "not a CIDR"),
        ([7], "entries must be CIDR"),
        ([f"10.0.{i // 256}.{i % 256}" for i in range(101)], "at most 100"),
    ],
)
async def test_bad_allowed_ips_are_refused(stores: Stores, bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await stores.partners.create(name="p", allowed_ips=bad)  # type: ignore[arg-type]
    await stores.keys.create(name="k2", key_hash=digest("k2"), key_hint="…")
    with pytest.raises(ValueError, match=message):
        await stores.keys.update("k2", {"allowed_ips": bad})


async def test_audit_entries_filter_and_page(stores: Stores) -> None:
    audit = stores.audit
    made = [
        await audit.record(actor="ops", action="key.generate", status=200, target_id="key_1"),
        await audit.record(actor="ops", action="key.block", status=200, target_id="key_1"),
        await audit.record(actor="ci", action="partner.new", status=400, detail={"error": "x"}),
        await audit.record(actor="a" * 500, action="key_%", status=200, source_ip="10.0.0.1"),
    ]
    assert [e.id for e in made] == sorted(e.id for e in made)
    assert made[3].actor == "a" * 200  # cut to the column, not refused

    async def ids(**filters: object) -> list[int]:
        return [e.id for e in await audit.list(AuditQuery(**filters))]  # type: ignore[arg-type]

    newest_first = [e.id for e in reversed(made)]
    assert await ids() == newest_first
    assert await ids(actor="ops") == [made[1].id, made[0].id]
    assert await ids(action="key.*") == [made[1].id, made[0].id]  # "_" is no wildcard
    assert await ids(action="key_%") == [made[3].id]
    assert await ids(target_id="key_1", action="key.block") == [made[1].id]
    assert await ids(limit=2) == newest_first[:2]
    assert await ids(limit=2, before_id=newest_first[1]) == newest_first[2:]
    assert await ids(since=made[2].created_at) == [made[3].id, made[2].id]
    assert await ids(until=made[1].created_at) == [made[0].id]
    [entry] = await audit.list(AuditQuery(actor="ci"))
    assert entry.detail == {"error": "x"} and entry.status == 400
    with pytest.raises(ValueError, match="limit"):
        await audit.list(AuditQuery(limit=1001))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request() -> Request:
    scope = {
        "method": "POST",
        "path": "/admin/key/generate",
        "headers": [(b"x-forwarded-for", b"203.0.113.9")],
        "client": ("127.0.0.1", 5555),
    }
    return Request(scope)


async def test_failed_logins_are_rate_limited_and_the_rest_counted(stores: Stores) -> None:
    clock = Clock()
    auditor = Auditor(stores.audit, lambda r: r.client[0] if r.client else None, 3, clock)
    for n in range(10):
        await auditor.failed_login(
            request=request(), request_id=f"req_{n}", method="POST", path="/key/x", status=401
        )
    entries = await stores.audit.list(AuditQuery(action="auth.failed"))
    assert len(entries) == 3
    assert {e.actor for e in entries} == {"unknown"} and {e.status for e in entries} == {401}
    assert entries[0].source_ip == "127.0.0.1" and entries[0].target_id == "/key/x"
    clock.now += 61  # a new minute: the next one is written, with the count left out
    await auditor.failed_login(
        request=request(), request_id="req_late", method="POST", path="/key/x", status=401
    )
    latest = (await stores.audit.list(AuditQuery(limit=1)))[0]
    assert latest.request_id == "req_late"
    assert latest.detail == {"method": "POST", "suppressed": 7}


def test_detail_keeps_names_and_only_safe_values() -> None:
    body = {
        "key_alias": "app",
        "key": "sk-sg-secret-value",
        "rpm_limit": 5,
        "metadata": {"token": "hidden"},
        "allowed_ips": ["10.0.0.0/8"],
        "api_key": "sk-upstream",
    }
    detail = describe(body, body)
    assert detail["fields"] == sorted(body)
    assert detail["values"] == {"key_alias": "app", "rpm_limit": 5, "allowed_ips": ["10.0.0.0/8"]}
    assert "sk-sg-secret-value" not in str(detail) and "hidden" not in str(detail)
    # The target comes from id fields, never from a key value.
    assert find_target({"keys": ["sk-sg-secret"]}, {"deleted_keys": ["key_a", "key_b"]}) == (
        "key_a,key_b"
    )
    assert find_target({"key": "sk-sg-secret"}, None) is None

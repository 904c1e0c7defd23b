"""The in-process key map (policy/auth.KeyCache) on a real SQLite database: a regenerated
key's grace period, blocked/revoked/expired keys and what the log is told about each,
allow-lists parsed into principals, partners for JWT, and signing keys opened at load."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sluicegate.crypto.envelope import generate_master_key
from sluicegate.crypto.keyring_source import KeyringSource
from sluicegate.policy.auth import KeyCache, Principal, SigningSource
from sluicegate.policy.hmac_auth import issue_signing_key
from sluicegate.policy.key_admin import create_key
from sluicegate.policy.keys import generate_key, hash_key, key_hint
from sluicegate.settings_security import SecretsSettings
from sluicegate.store.db import create_engine
from sluicegate.store.keys import KeyStore
from sluicegate.store.migrate import upgrade
from sluicegate.store.partners import PartnerStore
from sluicegate.store.signing_keys import SigningKeyStore

PEPPER = b"pepper-for-cache-tests"


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[KeyStore, PartnerStore, KeyCache]]:
    url = f"sqlite:///{tmp_path}/cache.db"
    await upgrade(url)
    engine = create_engine(url)
    keys, partners = KeyStore(engine), PartnerStore(engine)
    secrets = SecretsSettings.model_validate({"master_key": generate_master_key()})
    signing = SigningSource(SigningKeyStore(engine), KeyringSource(secrets))
    cache = KeyCache(keys, PEPPER, 60, partners, signing=signing, load_signing=True)
    try:
        yield keys, partners, cache
    finally:
        await cache.stop()
        await engine.dispose()


async def test_a_regenerated_key_keeps_working_for_its_grace_period(
    stores: tuple[KeyStore, PartnerStore, KeyCache],
) -> None:
    keys, _, cache = stores
    record, old = await create_key(keys, PEPPER, name="rolling")
    new = generate_key()
    await keys.regenerate(
        "rolling",
        key_hash=hash_key(PEPPER, new),
        key_hint=key_hint(new),
        grace=timedelta(seconds=1),
    )
    await cache.reload()
    now = time.time()
    by_new, by_old = cache.find(new, now), cache.find(old, now)
    assert by_new is not None and by_old is not None
    assert by_new.key_id == by_old.key_id == record.id  # one principal, one set of limits
    assert by_old.expires_at is not None and by_old.expires_at <= now + 1.01
    later = now + 1.1  # the grace period is checked at lookup, without a reload
    assert cache.find(old, later) is None
    assert cache.find(new, later) is not None
    refused = cache.refusal(old, later)
    assert (refused.reason, refused.key_id) == ("replaced key past its grace period", record.id)
    assert refused.message == "Invalid or missing API key."


async def test_blocked_revoked_expired_and_unknown_keys_are_told_apart_in_the_log(
    stores: tuple[KeyStore, PartnerStore, KeyCache],
) -> None:
    keys, _, cache = stores
    blocked_record, blocked = await create_key(keys, PEPPER, name="blocked")
    revoked_record, revoked = await create_key(keys, PEPPER, name="revoked")
    soon = datetime.now(UTC) + timedelta(seconds=30)
    expiring_record, expiring = await create_key(keys, PEPPER, name="expiring", expires_at=soon)
    await keys.set_blocked("blocked", True)
    await keys.revoke("revoked")
    await cache.reload()
    now = time.time()
    assert cache.find(blocked, now) is None and cache.find(revoked, now) is None
    assert cache.find(expiring, now) is not None
    reasons = {
        name: (r.reason, r.key_id)
        for name, r in (
            ("blocked", cache.refusal(blocked, now)),
            ("revoked", cache.refusal(revoked, now)),
            ("expiring", cache.refusal(expiring, now + 60)),
            ("unknown", cache.refusal(generate_key(), now)),
        )
    }
    assert reasons == {
        "blocked": ("blocked key", blocked_record.id),
        "revoked": ("revoked key", revoked_record.id),
        "expiring": ("expired key", expiring_record.id),
        "unknown": ("unknown key", None),
    }
    await keys.set_blocked("blocked", False)
    await cache.reload()
    assert cache.find(blocked, time.time()) is not None


async def test_allow_lists_become_networks_of_the_principal(
    stores: tuple[KeyStore, PartnerStore, KeyCache],
) -> None:
    keys, partners, cache = stores
    await partners.create(name="branch", allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    _, key = await create_key(keys, PEPPER, name="branch-app", partner_id="branch")
    await keys.update("branch-app", {"allowed_ips": ["10.1.0.0/16"]})
    _, free = await create_key(keys, PEPPER, name="anywhere")
    await cache.reload()
    principal = cache.find(key, time.time())
    assert principal is not None
    assert principal.networks == (
        (ipaddress.ip_network("10.1.0.0/16"),),
        (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")),
    )
    address = ipaddress.ip_address
    assert principal.admits(address("10.1.2.3"))
    assert not principal.admits(address("10.2.0.1"))  # the partner admits it, the key not
    assert not principal.admits(address("2001:db8::1"))  # the partner admits it, the key not
    assert not principal.admits(None)
    unrestricted = cache.find(free, time.time())
    assert unrestricted is not None and unrestricted.networks == ()
    assert unrestricted.admits(None)
    template = cache.partner_principal("branch")  # what a JWT naming the partner gets
    assert template is not None and template.networks == principal.networks[1:]
    assert template.admits(address("2001:db8::1"))


def test_a_hand_edited_list_that_does_not_parse_admits_nobody() -> None:
    from sluicegate.store.partners import PartnerRecord

    now = datetime.now(UTC)
    partner = PartnerRecord("ptn_1", "p", 1.0, None, None, None, None, None, now, now, {},
                            allowed_ips=("not-a-network",))  # fmt: skip
    principal = Principal.for_partner(partner)
    assert principal.networks == ((),)
    assert not principal.admits(ipaddress.ip_address("10.0.0.1"))


async def test_signing_keys_are_opened_at_load_and_follow_their_key(
    stores: tuple[KeyStore, PartnerStore, KeyCache],
) -> None:
    keys, _, cache = stores
    record, _ = await create_key(keys, PEPPER, name="signer")
    signing = cache.signing
    assert signing is not None
    made, secret = await issue_signing_key(signing.store, signing.keyring.keyring(), record.id)
    assert secret not in made.sealed
    await cache.reload()
    entry = cache.signing_entry(made.id)
    assert entry is not None
    assert entry.secret == secret.encode() and entry.principal.key_id == record.id
    await keys.set_blocked("signer", True)  # a blocked key's signing keys stop working
    await cache.reload()
    assert cache.signing_entry(made.id) is None
    await keys.set_blocked("signer", False)
    await signing.store.revoke(made.id)
    await cache.reload()
    assert cache.signing_entry(made.id) is None


async def test_the_poll_notices_signing_key_changes(
    stores: tuple[KeyStore, PartnerStore, KeyCache],
) -> None:
    keys, _, cache = stores
    record, _ = await create_key(keys, PEPPER, name="polled")
    await cache.reload()
    signing = cache.signing
    assert signing is not None
    made, _ = await issue_signing_key(signing.store, signing.keyring.keyring(), record.id)
    generation = cache.generation
    await cache.check_after_miss()  # one fingerprint check: the new signing key is seen
    assert cache.generation == generation + 1
    assert cache.signing_entry(made.id) is not None


async def test_the_digest_memo_holds_no_key_and_follows_revocation(
    stores: tuple[KeyStore, PartnerStore, KeyCache],
) -> None:
    """A matched key's stored digest is remembered under a keyed BLAKE2b (no HMAC per
    request); the memo never holds a key, unknown keys do not grow it, and a key revoked
    after it was memoised is refused at the next load."""
    keys, _, cache = stores
    record, key = await create_key(keys, PEPPER, name="memo")
    await cache.reload()
    now = time.time()
    for _ in range(3):
        found = cache.find(key, now)
        assert found is not None and found.key_id == record.id
    for _ in range(50):
        assert cache.find(generate_key(), now) is None
    memo = cache._memo
    assert list(memo.values()) == [hash_key(PEPPER, key)]
    held = b"".join(memo) + "".join(memo.values()).encode()
    assert key.encode() not in held and key[-12:].encode() not in held
    await keys.revoke(record.id)
    await cache.reload()
    assert cache.find(key, time.time()) is None
    assert cache.refusal(key, time.time()).key_id == record.id

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from sluicegate.policy.auth import Principal, credentials_from_headers
from sluicegate.policy.key_admin import parse_expiry
from sluicegate.policy.keys import (
    KEY_PREFIX,
    WeakKeyError,
    check_imported_key,
    generate_key,
    hash_key,
    key_hint,
)


def test_generated_keys_are_prefixed_unique_and_strong() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith(KEY_PREFIX) and len(key) >= 46
        check_imported_key(key)  # our own keys pass our own bar


def test_hash_is_keyed() -> None:
    key = generate_key()
    assert hash_key(b"pepper-a", key) != hash_key(b"pepper-b", key)
    assert hash_key(b"pepper-a", key) == hash_key(b"pepper-a", key)
    assert key not in hash_key(b"pepper-a", key)


def test_hint_reveals_only_the_tail() -> None:
    key = generate_key()
    hint = key_hint(key)
    assert hint.startswith(KEY_PREFIX) and hint.endswith(key[-4:])
    assert key[len(KEY_PREFIX) : -4] not in hint


@pytest.mark.parametrize(
    "weak",
    [
        "sk-1234",
        "a" * 40,
        "password-password-password",
        "sk-abcdefabcdefabcdefabcdef",
        "sk-" + "ab" * 20,
        "key with spaces in it 1234567890",
        "é" * 30,
    ],
)
def test_weak_imports_refused(weak: str) -> None:
    with pytest.raises(WeakKeyError):
        check_imported_key(weak)


def test_strong_imports_accepted() -> None:
    check_imported_key("sk-" + secrets.token_urlsafe(24))  # a LiteLLM-style key
    check_imported_key(secrets.token_hex(24))


def test_credentials_from_either_or_both_headers() -> None:
    assert credentials_from_headers("k1", None) == ["k1"]
    assert credentials_from_headers(None, "Bearer k2") == ["k2"]
    assert credentials_from_headers("k1", "bearer k2") == ["k1", "k2"]
    assert credentials_from_headers("k1", "Bearer k1") == ["k1"]
    assert credentials_from_headers(None, "Basic abc") == []
    assert credentials_from_headers(None, None) == []


def test_model_allow_list_patterns() -> None:
    p = Principal("id", "n", "h", ("claude-sonnet-*", "team-alias"), None)
    assert p.may_use("claude-sonnet-4-6") and p.may_use("team-alias")
    assert not p.may_use("claude-opus-4-7") and not p.may_use("team-alias-2")
    assert Principal("id", "n", "h", (), None).may_use("anything")


def test_parse_expiry() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_expiry("30d", now) == now + timedelta(days=30)
    assert parse_expiry("12h", now) == now + timedelta(hours=12)
    assert parse_expiry("2w", now) == now + timedelta(weeks=2)
    assert parse_expiry("2026-02-01", now) == datetime(2026, 2, 1, tzinfo=UTC)
    for bad in ("0d", "soon", "2025-01-01", "-3d"):
        with pytest.raises(ValueError):
            parse_expiry(bad, now)

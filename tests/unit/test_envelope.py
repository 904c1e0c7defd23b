"""Envelope encryption (sluicegate.crypto.envelope) and the master-key source
(sluicegate.crypto.keyring_source): round trips, context binding, wrong keys, damage,
re-wrapping, key parsing, and the key file re-read on change."""

from __future__ import annotations

import base64
import logging
import os
import secrets
import time
from pathlib import Path

import pytest

from sluicegate.crypto.envelope import (
    Keyring,
    SealError,
    generate_master_key,
    master_key_id,
    parse_master_key,
    sealed_key_id,
)
from sluicegate.crypto.keyring_source import KeyringSource, MasterKeyMissing
from sluicegate.secret import Secret
from sluicegate.settings_security import SecretsSettings

PLAIN = b"sk-ant-api03-plaintext-canary-7f3a9c"


def _key() -> bytes:
    return secrets.token_bytes(32)


def test_seal_open_round_trip_and_format() -> None:
    key = _key()
    ring = Keyring(key)
    sealed = ring.seal(PLAIN, "credential:prod")
    assert sealed.master_key_id == master_key_id(key) == ring.primary.id
    assert sealed.text.startswith(f"sg1.{ring.primary.id}.")
    assert sealed_key_id(sealed.text) == ring.primary.id
    assert PLAIN not in sealed.text.encode()
    assert ring.open(sealed.text, "credential:prod") == PLAIN
    # Every seal uses a fresh data key and nonces: the same secret seals differently.
    again = ring.seal(PLAIN, "credential:prod")
    assert again.text != sealed.text
    assert ring.open(again.text, "credential:prod") == PLAIN


def test_empty_and_binary_plaintexts_round_trip() -> None:
    ring = Keyring(_key())
    for plain in (b"", bytes(range(256)), b"x" * 100_000):
        assert ring.open(ring.seal(plain, "c").text, "c") == plain


def test_context_is_bound() -> None:
    ring = Keyring(_key())
    sealed = ring.seal(PLAIN, "credential:a")
    with pytest.raises(SealError, match="another record"):
        ring.open(sealed.text, "credential:b")
    with pytest.raises(SealError):
        ring.open(sealed.text, "signing-key:a")


def test_wrong_key_names_the_key_ids_and_nothing_secret() -> None:
    key, other = _key(), _key()
    sealed = Keyring(key).seal(PLAIN, "c")
    with pytest.raises(SealError) as caught:
        Keyring(other).open(sealed.text, "c")
    message = str(caught.value)
    assert master_key_id(key) in message and master_key_id(other) in message
    for secret in (key.hex(), base64.b64encode(key).decode(), PLAIN.decode()):
        assert secret not in message


def test_same_key_id_but_different_key_fails() -> None:
    """A forged key id (one this ring holds) over another key's wrapping does not open."""
    key, other = _key(), _key()
    sealed = Keyring(other).seal(PLAIN, "c")
    forged = sealed.text.replace(master_key_id(other), master_key_id(key))
    with pytest.raises(SealError, match="damaged"):
        Keyring(key).open(forged, "c")


@pytest.mark.parametrize("part", [2, 3])
def test_damaged_text_is_refused(part: int) -> None:
    ring = Keyring(_key())
    pieces = ring.seal(PLAIN, "c").text.split(".")
    text = pieces[part]
    flipped = ("A" if text[5] != "A" else "B").join((text[:5], text[6:]))
    pieces[part] = flipped
    with pytest.raises(SealError, match="damaged"):
        ring.open(".".join(pieces), "c")


@pytest.mark.parametrize(
    "text",
    ["", "plain", "sg1.a.b", "sg2.x.y.z", "sg1.id.!!!.???", "sg1.id.AA.AA", "sg1.id..x"],
)
def test_malformed_text_is_refused(text: str) -> None:
    ring = Keyring(_key())
    with pytest.raises(SealError):
        ring.open(text, "c")


def test_previous_keys_still_open() -> None:
    old, new = _key(), _key()
    sealed = Keyring(old).seal(PLAIN, "c")
    ring = Keyring(new, [old])
    assert ring.key_ids == (master_key_id(new), master_key_id(old))
    assert ring.open(sealed.text, "c") == PLAIN
    assert ring.seal(PLAIN, "c").master_key_id == master_key_id(new)


def test_duplicate_previous_keys_are_ignored() -> None:
    key = _key()
    assert Keyring(key, [key, key]).key_ids == (master_key_id(key),)


def test_rewrap_keeps_plaintext_and_ciphertext_and_changes_key_id() -> None:
    old, new = _key(), _key()
    sealed = Keyring(old).seal(PLAIN, "credential:x")
    ring = Keyring(new, [old])
    fresh = ring.rewrap(sealed.text, "credential:x")
    assert fresh.master_key_id == master_key_id(new) != sealed.master_key_id
    # Only the data key is re-wrapped: the ciphertext part is unchanged.
    assert fresh.text.split(".")[3] == sealed.text.split(".")[3]
    assert fresh.text.split(".")[2] != sealed.text.split(".")[2]
    assert Keyring(new).open(fresh.text, "credential:x") == PLAIN
    # Already under the primary: returned unchanged.
    assert ring.rewrap(fresh.text, "credential:x") == fresh
    # The old key alone no longer opens it.
    with pytest.raises(SealError):
        Keyring(old).open(fresh.text, "credential:x")


def test_rewrap_checks_the_context_and_needs_the_old_key() -> None:
    old, new = _key(), _key()
    sealed = Keyring(old).seal(PLAIN, "credential:x")
    with pytest.raises(SealError):
        Keyring(new, [old]).rewrap(sealed.text, "credential:y")
    with pytest.raises(SealError, match="does not hold"):
        Keyring(new).rewrap(sealed.text, "credential:x")


def test_repr_shows_ids_only() -> None:
    key = _key()
    ring = Keyring(key)
    for text in (repr(ring), repr(ring.primary)):
        assert master_key_id(key) in text
        assert key.hex() not in text and base64.b64encode(key).decode() not in text


def test_parse_master_key_forms() -> None:
    key = _key()
    standard = base64.b64encode(key).decode()
    urlsafe = base64.urlsafe_b64encode(key).decode()
    forms = [
        standard,
        standard.rstrip("="),
        urlsafe.rstrip("="),
        key.hex(),
        key.hex().upper(),
        f"  {standard}\n",
    ]
    for text in forms:
        assert parse_master_key(text) == key, text
    generated = generate_master_key()
    assert len(parse_master_key(generated)) == 32
    assert generated != generate_master_key()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "32 bytes; this one is 0"),
        ("not base64 at all!", "base64 or hex"),
        (base64.b64encode(b"short").decode(), "this one is 5"),
        (base64.b64encode(bytes(33)).decode(), "this one is 33"),
        ("zz" * 32, "this one is 48"),  # not hex, but valid base64 of 48 bytes
    ],
)
def test_parse_master_key_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_master_key(text)


def test_settings_refuse_a_bad_master_key() -> None:
    with pytest.raises(ValueError, match="master key"):
        SecretsSettings.model_validate({"master_key": "too-short"})
    with pytest.raises(ValueError, match="master key"):
        SecretsSettings.model_validate({"previous_master_keys": ["too-short"]})


# --- KeyringSource ------------------------------------------------------------------------


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _write(path: Path, *lines: str) -> None:
    """Write the key file and move its mtime on, so a rewrite within one tick is seen."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text("\n".join(lines) + "\n")
    stamp = max(before, time.time_ns()) + 10**9
    os.utime(path, ns=(stamp, stamp))


def test_source_without_keys_raises_the_setting_message() -> None:
    source = KeyringSource(SecretsSettings())
    assert not source.configured
    with pytest.raises(MasterKeyMissing, match=r"secrets\.master_key"):
        source.keyring()


def test_source_from_settings() -> None:
    new, old = _key(), _key()
    settings = SecretsSettings(
        master_key=Secret(_b64(new)), previous_master_keys=[Secret(old.hex())]
    )
    source = KeyringSource(settings)
    assert source.configured
    ring = source.keyring()
    assert ring.key_ids == (master_key_id(new), master_key_id(old))
    assert source.keyring() is ring


def test_source_rereads_a_changed_key_file(tmp_path: Path) -> None:
    old, new = _key(), _key()
    path = tmp_path / "master.keys"
    _write(path, "# sluicegate master keys", "", _b64(old))
    source = KeyringSource(SecretsSettings(master_key_file=str(path)))
    assert source.keyring().key_ids == (master_key_id(old),)
    sealed = source.keyring().seal(PLAIN, "c")
    # Step 1 of a rotation: the new key first, the old one below it.
    _write(path, _b64(new), f"{old.hex()}  # previous")
    ring = source.keyring()
    assert ring.key_ids == (master_key_id(new), master_key_id(old))
    assert ring.open(sealed.text, "c") == PLAIN
    # Step 3: the old key removed.
    _write(path, _b64(new))
    assert source.keyring().key_ids == (master_key_id(new),)


def test_source_keeps_the_last_good_ring_on_a_broken_edit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key, later = _key(), _key()
    path = tmp_path / "master.keys"
    _write(path, _b64(key))
    source = KeyringSource(SecretsSettings(master_key_file=str(path)))
    ring = source.keyring()
    with caplog.at_level(logging.WARNING, logger="sluicegate.secrets"):
        _write(path, _b64(key), "this-is-not-a-key")
        assert source.keyring() is ring
        path.unlink()
        assert source.keyring() is ring
        _write(path, "")  # a rewrite caught half-way: truncated, nothing written yet
        assert source.keyring() is ring
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # logged once, not on every use
    assert "line 2" in warnings[0].getMessage()
    assert _b64(key) not in caplog.text
    # Fixed again: read again.
    _write(path, _b64(later))
    assert source.keyring().key_ids == (master_key_id(later),)


def test_source_with_a_broken_file_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "master.keys"
    source = KeyringSource(SecretsSettings(master_key_file=str(path)))
    assert source.configured
    with pytest.raises(MasterKeyMissing, match="master key file"):
        source.keyring()  # missing
    _write(path, "# only a comment")
    with pytest.raises(MasterKeyMissing, match="no master key"):
        source.keyring()  # empty
    _write(path, "bad-key")
    with pytest.raises(MasterKeyMissing, match="line 1"):
        source.keyring()


def test_source_file_keys_follow_the_configured_primary(tmp_path: Path) -> None:
    configured, in_file = _key(), _key()
    path = tmp_path / "master.keys"
    _write(path, _b64(in_file))
    settings = SecretsSettings(master_key=Secret(_b64(configured)), master_key_file=str(path))
    ring = KeyringSource(settings).keyring()
    assert ring.key_ids == (master_key_id(configured), master_key_id(in_file))


def test_an_unset_environment_key_is_named_not_measured() -> None:
    # Lenient commands read an unset os.environ/ reference as an empty secret.
    unset = Secret("", source="os.environ/MISSING_KEY (not set here)")
    with pytest.raises(MasterKeyMissing, match=r"secrets\.master_key: os\.environ/MISSING_KEY"):
        KeyringSource(SecretsSettings(master_key=unset)).keyring()

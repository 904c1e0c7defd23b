"""Envelope encryption: every secret gets its own data key; master keys only wrap data keys.

A sealed secret is one ASCII string::

    sg1.<master key id>.<wrapped data key>.<ciphertext>

- the data key (256 bits, random per secret) encrypts the secret with AES-256-GCM;
- the master key wraps the data key with AES-256-GCM;
- both layers authenticate a *context* (for example ``credential:anthropic-prod``), so a
  sealed value copied onto another row does not open there;
- the master key id is a hash of the master key: it tells which key wraps a value without
  revealing anything of it.

Rotating the master key re-wraps only the data keys (:meth:`Keyring.rewrap`); the secret's
ciphertext is unchanged. A :class:`Keyring` holds a primary key (used to seal) and older keys
(still accepted to open), so instances keep working while values are re-wrapped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = "sg1"
_KEY_BYTES = 32
_NONCE_BYTES = 12
_WRAP_LABEL = b"sluicegate-data-key:"


def _aead() -> type[AESGCM]:
    # Imported on first use: cryptography's bindings (OpenSSL) cost about 8 MiB of memory, and
    # a gateway that stores no secret in the database never needs them.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM


def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag


class SealError(Exception):
    """A sealed value cannot be opened: unknown master key, damaged or for another context.
    The message never contains key material or plaintext."""


def generate_master_key() -> str:
    """A new master key, as the text form :func:`parse_master_key` reads (base64)."""
    return base64.b64encode(secrets.token_bytes(_KEY_BYTES)).decode()


def parse_master_key(text: str) -> bytes:
    """32 bytes from base64 (standard or URL-safe, padding optional) or 64 hex digits."""
    value = text.strip()
    if len(value) == 2 * _KEY_BYTES:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    padded = value + "=" * (-len(value) % 4)
    altchars = b"-_" if ("-" in value or "_" in value) else None  # URL-safe alphabet
    try:
        raw = base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "a master key must be 32 bytes in base64 or hex (sluicegate secrets generate-key)"
        ) from None
    if len(raw) != _KEY_BYTES:
        raise ValueError(f"a master key must be {_KEY_BYTES} bytes; this one is {len(raw)}")
    return raw


def master_key_id(key: bytes) -> str:
    """A stable, non-secret name of a master key (16 hex digits of a labelled SHA-256)."""
    return hashlib.sha256(b"sluicegate-master-key-id:" + key).hexdigest()[:16]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class MasterKey:
    id: str
    aead: AESGCM

    @classmethod
    def of(cls, key: bytes) -> MasterKey:
        return cls(master_key_id(key), _aead()(key))

    def __repr__(self) -> str:
        return f"MasterKey(id={self.id!r})"


@dataclass(frozen=True, slots=True)
class Sealed:
    """A sealed value and the id of the master key that wraps it (stored beside it, so
    a rotation finds what is left to re-wrap with one indexed query)."""

    text: str
    master_key_id: str


def sealed_key_id(text: str) -> str:
    """The master key id a sealed value names (without opening it)."""
    parts = text.split(".")
    if len(parts) != 4 or parts[0] != FORMAT:
        raise SealError("not a sealed value")
    return parts[1]


class Keyring:
    """A primary master key that seals, and older keys that still open."""

    def __init__(self, primary: bytes, previous: Iterable[bytes] = ()) -> None:
        self.primary = MasterKey.of(primary)
        self._keys = {self.primary.id: self.primary}
        for key in previous:
            master = MasterKey.of(key)
            self._keys.setdefault(master.id, master)

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every master key id this ring opens, the primary first."""
        return tuple(self._keys)

    def __repr__(self) -> str:
        return f"Keyring(primary={self.primary.id!r}, keys={len(self._keys)})"

    def seal(self, plaintext: bytes, context: str) -> Sealed:
        aad = context.encode()
        aead = _aead()
        data_key = aead.generate_key(bit_length=8 * _KEY_BYTES)
        nonce = os.urandom(_NONCE_BYTES)
        body = nonce + aead(data_key).encrypt(nonce, plaintext, aad)
        wrapped = self._wrap(self.primary, data_key, aad)
        text = ".".join((FORMAT, self.primary.id, _b64(wrapped), _b64(body)))
        return Sealed(text, self.primary.id)

    def open(self, sealed: str, context: str) -> bytes:
        aad = context.encode()
        key_id, wrapped, body = self._split(sealed)
        data_key = self._unwrap(key_id, wrapped, aad)
        try:
            return _aead()(data_key).decrypt(body[:_NONCE_BYTES], body[_NONCE_BYTES:], aad)
        except (_invalid_tag(), ValueError):
            raise SealError("the sealed value is damaged or belongs to another record") from None

    def rewrap(self, sealed: str, context: str) -> Sealed:
        """The same secret with its data key wrapped by the primary key (ciphertext kept)."""
        aad = context.encode()
        key_id, wrapped, body = self._split(sealed)
        if key_id == self.primary.id:
            return Sealed(sealed, key_id)
        data_key = self._unwrap(key_id, wrapped, aad)
        rewrapped = self._wrap(self.primary, data_key, aad)
        text = ".".join((FORMAT, self.primary.id, _b64(rewrapped), _b64(body)))
        return Sealed(text, self.primary.id)

    @staticmethod
    def _wrap(master: MasterKey, data_key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + master.aead.encrypt(nonce, data_key, _WRAP_LABEL + aad)

    def _unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        master = self._keys.get(key_id)
        if master is None:
            raise SealError(
                f"sealed under master key {key_id}, which this keyring does not hold "
                f"(it holds {', '.join(self._keys)})"
            )
        try:
            return master.aead.decrypt(
                wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], _WRAP_LABEL + aad
            )
        except (_invalid_tag(), ValueError):
            raise SealError("the sealed value is damaged or belongs to another record") from None

    @staticmethod
    def _split(sealed: str) -> tuple[str, bytes, bytes]:
        parts = sealed.split(".")
        if len(parts) != 4 or parts[0] != FORMAT:
            raise SealError("not a sealed value")
        try:
            wrapped, body = _unb64(parts[2]), _unb64(parts[3])
        except (binascii.Error, ValueError):
            raise SealError("the sealed value is damaged") from None
        if len(wrapped) <= _NONCE_BYTES or len(body) <= _NONCE_BYTES:
            raise SealError("the sealed value is damaged")
        return parts[1], wrapped, body

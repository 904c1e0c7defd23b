"""Gateway key material: generation, strength check for imported keys, keyed hashing.

A key is shown once. The database keeps only HMAC-SHA256(pepper, key): a leaked table
cannot be replayed and, without the pepper, cannot be brute-forced offline either.
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections import Counter

KEY_PREFIX = "sk-sg-"
MIN_IMPORTED_LENGTH = 24
MIN_IMPORTED_BITS = 96.0
# Substrings that make an imported key guessable whatever its length.
_WEAK_FRAGMENTS = (
    "password",
    "passwd",
    "secret",
    "changeme",
    "qwerty",
    "letmein",
    "123456",
    "abcdef",
    "admin",
    "example",
)


class WeakKeyError(ValueError):
    """An imported key value is too easy to guess to be used as a credential."""


def generate_key() -> str:
    """A new key: recognisable prefix + 256 bits from the OS CSPRNG."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hint(key: str) -> str:
    """A non-secret reminder of which key this is (prefix and last four characters)."""
    prefix = KEY_PREFIX if key.startswith(KEY_PREFIX) else key[:3]
    return f"{prefix}…{key[-4:]}"


def hash_key(pepper: bytes, key: str) -> str:
    # hmac.digest is the one-shot C implementation: several times faster than hmac.new().
    return hmac.digest(pepper, key.encode("utf-8"), "sha256").hex()


def estimated_bits(value: str) -> float:
    """Shannon entropy of the value's own character distribution, times its length.

    A conservative estimate: repeated or few distinct characters score low however long.
    """
    counts = Counter(value)
    length = len(value)
    per_char = -sum((n / length) * math.log2(n / length) for n in counts.values())
    return per_char * length


def check_imported_key(value: str) -> None:
    """Raise :class:`WeakKeyError` when ``value`` is not fit to be a gateway key."""
    if len(value) < MIN_IMPORTED_LENGTH:
        raise WeakKeyError(f"the key must be at least {MIN_IMPORTED_LENGTH} characters long")
    if len(value) > 256:
        raise WeakKeyError("the key must be at most 256 characters long")
    if not all(33 <= ord(c) <= 126 for c in value):
        raise WeakKeyError("the key may contain only printable ASCII without spaces")
    lowered = value.lower()
    for fragment in _WEAK_FRAGMENTS:
        if fragment in lowered:
            raise WeakKeyError(f"the key contains the guessable fragment {fragment!r}")
    if len(set(value)) < 12 or estimated_bits(value) < MIN_IMPORTED_BITS:
        raise WeakKeyError(
            f"the key looks too predictable (under ~{MIN_IMPORTED_BITS:.0f} bits); "
            "use a randomly generated value"
        )

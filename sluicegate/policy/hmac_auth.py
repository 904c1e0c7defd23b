"""HMAC request signing: a gateway key's signing key signs each request (docs/security-auth.md).

Headers::

    x-sluicegate-key-id: <signing key id>
    x-sluicegate-timestamp: <unix seconds>
    x-sluicegate-signature: v1=<hex HMAC-SHA256(secret, canonical)>

    canonical = method "\\n" path[?query] "\\n" timestamp "\\n" hex(SHA-256(body))

The HMAC key is the secret exactly as issued (its base64url text, UTF-8 encoded). Checks in
order: the headers and the key id before the body is read (:meth:`HmacVerifier.check`), then
the signature over the body right after reading it (:meth:`SignedRequest.verify`), then
that the signature was not used before within the window (:mod:`sluicegate.policy.replay`).
A timestamp is accepted from ``window`` seconds in the past to ``clock_skew`` seconds in the
future; signatures are remembered for ``window + clock_skew`` seconds, as long as they can
be accepted at all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sluicegate.crypto.envelope import Keyring
from sluicegate.policy.auth import AuthRefused, Principal, SigningEntry
from sluicegate.policy.replay import ReplayGuard
from sluicegate.settings_auth import HmacSettings
from sluicegate.store.rotation import signing_key_context
from sluicegate.store.signing_keys import SigningKeyRecord, SigningKeyStore

KEY_ID_HEADER = "x-sluicegate-key-id"
TIMESTAMP_HEADER = "x-sluicegate-timestamp"
SIGNATURE_HEADER = "x-sluicegate-signature"
SIGNATURE_PREFIX = "v1="
_HEX_DIGITS = frozenset("0123456789abcdef")
_SECRET_BYTES = 32


def canonical_request(method: str, target: str, timestamp: str, body: bytes) -> bytes:
    """What is signed; ``target`` is the path with its query string (``/v1/messages?x=1``)."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{target}\n{timestamp}\n{digest}".encode()


def signature(secret: bytes, canonical: bytes) -> str:
    return hmac.digest(secret, canonical, "sha256").hex()


def sign_request(
    signing_key_id: str,
    secret: str,
    method: str,
    target: str,
    body: bytes,
    timestamp: int | None = None,
) -> dict[str, str]:
    """The three signature headers for one request (what a client computes)."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    mac = signature(secret.encode(), canonical_request(method, target, stamp, body))
    return {
        KEY_ID_HEADER: signing_key_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: SIGNATURE_PREFIX + mac,
    }


def new_signing_secret() -> str:
    """32 random bytes, base64url without padding (43 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(_SECRET_BYTES)).rstrip(b"=").decode()


async def issue_signing_key(
    store: SigningKeyStore, keyring: Keyring, key_id: str
) -> tuple[SigningKeyRecord, str]:
    """A new signing key for gateway key ``key_id``: the record and the secret (shown once)."""
    secret = new_signing_secret()
    record = await store.create(
        key_id, lambda signing_id: keyring.seal(secret.encode(), signing_key_context(signing_id))
    )
    return record, secret


def open_signing_secret(keyring: Keyring, record: SigningKeyRecord) -> bytes:
    """The HMAC key of a stored signing key (raises SealError when it cannot be opened)."""
    return keyring.open(record.sealed, signing_key_context(record.id))


def request_target(path: str, query_string: bytes) -> str:
    return f"{path}?{query_string.decode('latin-1')}" if query_string else path


@dataclass(slots=True)
class SignedRequest:
    """A request whose headers passed; its signature is checked once the body is read."""

    entry: SigningEntry
    canonical_head: str  # method, target and timestamp, each followed by "\n"
    mac: str
    replay: ReplayGuard
    ttl: float
    # Logs a refusal with the request's context (set by the authenticator).
    on_refused: Callable[[AuthRefused], None] | None = None

    @property
    def principal(self) -> Principal:
        return self.entry.principal

    async def verify(self, body: bytes) -> None:
        """Raise the uniform 401 unless the signature matches ``body`` and is fresh."""
        try:
            await self._verify(body)
        except AuthRefused as refused:
            if self.on_refused is not None:
                self.on_refused(refused)
            raise

    async def _verify(self, body: bytes) -> None:
        canonical = (self.canonical_head + hashlib.sha256(body).hexdigest()).encode()
        expected = signature(self.entry.secret, canonical)
        key_id = self.entry.principal.key_id
        if not hmac.compare_digest(expected.encode(), self.mac.encode()):
            raise AuthRefused("bad signature", key_id)
        if not await self.replay.first_use(f"{self.entry.signing_key_id}:{self.mac}", self.ttl):
            raise AuthRefused("replayed signature", key_id)


class HmacVerifier:
    """The header checks of a signed request (see the module docstring)."""

    def __init__(
        self,
        settings: HmacSettings,
        replay: ReplayGuard,
        lookup: Callable[[str], SigningEntry | None],
    ) -> None:
        self._window = settings.window
        self._skew = settings.clock_skew
        self._replay = replay
        self._lookup = lookup

    def check(
        self, signing_key_id: str, stamp: str | None, mac: str | None, method: str, target: str
    ) -> SignedRequest:
        if stamp is None or mac is None:
            raise AuthRefused("signature headers incomplete")
        entry = self._lookup(signing_key_id.strip())
        if entry is None:
            raise AuthRefused("unknown or revoked signing key")
        now = time.time()
        key_id = entry.principal.key_id
        expires = entry.principal.expires_at
        if expires is not None and expires <= now:
            raise AuthRefused("expired key", key_id)
        stamp = stamp.strip()
        if not stamp.isdigit() or len(stamp) > 12:
            raise AuthRefused("malformed timestamp", key_id)
        age = now - int(stamp)
        if age > self._window:
            raise AuthRefused("timestamp too old", key_id)
        if -age > self._skew:
            raise AuthRefused("timestamp in the future", key_id)
        mac = mac.strip()
        # Lower-cased: one signature in two spellings must not pass the replay check twice.
        digest = mac[len(SIGNATURE_PREFIX) :].lower()
        if not mac.startswith(SIGNATURE_PREFIX) or len(digest) != 64 or set(digest) - _HEX_DIGITS:
            raise AuthRefused("malformed signature", key_id)
        return SignedRequest(
            entry,
            f"{method.upper()}\n{target}\n{stamp}\n",
            digest,
            self._replay,
            float(self._window + self._skew),
        )

    async def close(self) -> None:
        await self._replay.close()

"""Authentication: gateway key -> :class:`Principal`, with no database read per request.

All active keys live in an in-process map from keyed hash to principal. A background task
polls a cheap fingerprint of the key, partner and signing-key tables every
``server.key_sync_interval`` seconds and reloads on change, so keys created, blocked or
revoked by another process (the CLI, another instance) take effect within that interval. A
key the map does not know triggers at most one coalesced reload per
``MISS_RELOAD_INTERVAL``: a key created a moment ago works at once, while a flood of random
keys costs the database at most a few queries a second.

A regenerated key's previous hash maps to the same principal until its grace period ends
(checked at lookup). Principals carry their key's and partner's IP allow-lists, parsed
once per load. Wrong, unknown, expired, revoked, blocked and wrong-address keys all get the
same answer (:class:`AuthRefused`); only the log says which.

JWT and HMAC requests (``policy/jwt_auth``, ``policy/hmac_auth``) reuse what is loaded
here: partners by name, and signing secrets opened with the master keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sluicegate.crypto.envelope import SealError
from sluicegate.crypto.keyring_source import KeyringSource, MasterKeyMissing
from sluicegate.errors import AuthenticationFailed
from sluicegate.policy.keys import hash_key
from sluicegate.policy.principal import Principal as Principal  # re-exported
from sluicegate.store.keys import KeyRecord, KeyStore
from sluicegate.store.partners import PartnerStore
from sluicegate.store.rotation import signing_key_context
from sluicegate.store.signing_keys import SigningFingerprint, SigningKeyStore

log = logging.getLogger("sluicegate.auth")

MISS_RELOAD_INTERVAL = 0.5
AUTH_FAILED_MESSAGE = "Invalid or missing API key."


class AuthRefused(AuthenticationFailed):
    """The one 401 every failed authentication gets. ``reason`` and ``key_id`` (when a key
    was recognised) are for the log only; the caller sees :data:`AUTH_FAILED_MESSAGE`."""

    def __init__(self, reason: str, key_id: str | None = None) -> None:
        super().__init__(AUTH_FAILED_MESSAGE)
        self.reason = reason
        self.key_id = key_id


def credentials_from_headers(x_api_key: str | None, authorization: str | None) -> list[str]:
    """Candidate keys: ``x-api-key`` and/or ``Authorization: Bearer`` (clients send either,
    and Claude Code may send both)."""
    found: list[str] = []
    if x_api_key:
        found.append(x_api_key.strip())
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token and token not in found:
            found.append(token)
    return found


@dataclass(frozen=True, slots=True)
class SigningSource:
    """Where HMAC signing keys come from: their table and the master keys that open them."""

    store: SigningKeyStore
    keyring: KeyringSource


@dataclass(frozen=True, slots=True)
class SigningEntry:
    """An opened signing key and the principal of the gateway key it signs for."""

    signing_key_id: str
    secret: bytes = dataclasses.field(repr=False)
    principal: Principal


Fingerprint = tuple[
    tuple[int, int, datetime | None],
    tuple[int, datetime | None],
    SigningFingerprint | None,
    tuple[str, ...] | None,
]


def _inactive_reason(record: KeyRecord) -> str:
    if record.revoked_at is not None:
        return "revoked key"
    if record.blocked:
        return "blocked key"
    return "expired key"


_MEMO_KEPT = 100_000  # keys remembered (a few hundred bytes each)


class KeyCache:
    def __init__(
        self,
        store: KeyStore,
        pepper: bytes,
        sync_interval: float,
        partners: PartnerStore,
        on_reload: Callable[[list[Principal]], Awaitable[None]] | None = None,
        signing: SigningSource | None = None,
        load_signing: bool = False,
    ) -> None:
        """``on_reload``: called with every active principal (and each partner's own) after
        each load (budget seeding); its failure is logged, never fatal to the reload.
        ``signing``: the signing-key table (used by the admin API); its keys are loaded and
        opened only with ``load_signing`` (``auth.hmac.enabled``)."""
        self._store = store
        self._partners = partners
        self._pepper = pepper
        self._sync_interval = sync_interval
        self._on_reload = on_reload
        self.signing = signing
        self._load_signing = load_signing and signing is not None
        self._by_hash: dict[str, Principal] = {}
        # Stored digest (HMAC-SHA256 under the pepper) of each key seen, remembered under a
        # keyed BLAKE2b of the key: OpenSSL's HMAC setup is the dearest part of checking a
        # key. It holds no key, only MACs under this process's own random secret, and only
        # for keys that matched (random guesses cannot grow it).
        self._memo_secret = secrets.token_bytes(32)
        self._memo: dict[bytes, str] = {}
        self._refused: dict[str, tuple[str, str]] = {}  # hash -> (reason, key id)
        self._grace: frozenset[str] = frozenset()  # previous hashes still in their grace
        self._by_partner_name: dict[str, Principal] = {}
        self._signing_entries: dict[str, SigningEntry] = {}
        self.generation = 0  # bumped by every load: derived caches compare it
        self._fingerprint: Fingerprint | None = None
        self._reload_lock = asyncio.Lock()
        self._last_check_started = 0.0  # monotonic time the latest check began
        self._miss_check: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._keyring_warned = False
        self.store_reachable = True  # did the last contact with the database succeed?

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._poll(), name="sluicegate-key-sync")

    async def stop(self) -> None:
        for task in (self._task, self._miss_check):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._miss_check = None

    async def reload(self) -> None:
        """Load every key now (at start, and after a change made by this process)."""
        async with self._reload_lock:
            self._last_check_started = time.monotonic()
            fingerprint = await self._current_fingerprint()
            now = datetime.now(UTC)
            records = await self._store.list()
            partners = {p.id: p for p in await self._partners.list()}
            by_hash: dict[str, Principal] = {}
            refused: dict[str, tuple[str, str]] = {}
            by_id: dict[str, Principal] = {}
            grace: set[str] = set()
            for record in records:
                if not record.is_active(now):
                    refused[record.key_hash] = (_inactive_reason(record), record.id)
                    if record.previous_key_hash is not None:
                        refused[record.previous_key_hash] = refused[record.key_hash]
                    continue
                principal = Principal.from_record(record, partners.get(record.partner_id or ""))
                by_hash[record.key_hash] = by_id[record.id] = principal
                previous = record.previous_key_hash
                if previous is not None and record.previous_key_valid(now):
                    by_hash[previous] = _grace_principal(principal, record)
                    grace.add(previous)
                elif previous is not None:
                    refused[previous] = ("replaced key past its grace period", record.id)
            self._by_hash, self._refused, self._grace = by_hash, refused, frozenset(grace)
            self._by_partner_name = {p.name: Principal.for_partner(p) for p in partners.values()}
            self._signing_entries = await self._open_signing_keys(by_id)
            self._fingerprint = fingerprint
            self.generation += 1
        if self._on_reload is not None:
            try:
                await self._on_reload([*by_id.values(), *self._by_partner_name.values()])
            except Exception:
                log.warning(
                    "after-reload hook failed; will retry on the next change", exc_info=True
                )

    async def _open_signing_keys(self, by_id: dict[str, Principal]) -> dict[str, SigningEntry]:
        if not self._load_signing or self.signing is None:
            return {}
        records = await self.signing.store.list(include_revoked=False)
        records = [r for r in records if r.key_id in by_id]
        if not records:
            return {}
        try:
            keyring = self.signing.keyring.keyring()
        except MasterKeyMissing as exc:
            if not self._keyring_warned:
                log.warning("signing keys cannot be opened: %s", exc)
                self._keyring_warned = True
            return {}
        self._keyring_warned = False
        entries: dict[str, SigningEntry] = {}
        for record in records:
            try:
                secret = keyring.open(record.sealed, signing_key_context(record.id))
            except SealError as exc:
                log.warning("signing key %s cannot be opened: %s", record.id, exc)
                continue
            entries[record.id] = SigningEntry(record.id, secret, by_id[record.key_id])
        return entries

    async def _current_fingerprint(self) -> Fingerprint:
        signing: SigningFingerprint | None = None
        key_ids: tuple[str, ...] | None = None
        if self._load_signing and self.signing is not None:
            signing = await self.signing.store.fingerprint()
            with contextlib.suppress(MasterKeyMissing):  # a new key file may open more
                key_ids = self.signing.keyring.keyring().key_ids
        return (
            await self._store.fingerprint(),
            await self._partners.fingerprint(),
            signing,
            key_ids,
        )

    async def _check(self) -> None:
        """Reload if the key table changed since the last load (one cheap query if not)."""
        self._last_check_started = time.monotonic()
        try:
            if await self._current_fingerprint() != self._fingerprint:
                await self.reload()
            self.store_reachable = True
        except Exception:  # keep serving from the last good map
            if self.store_reachable:
                log.warning("key sync failed; serving with the keys loaded before", exc_info=True)
            self.store_reachable = False

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._sync_interval)
            await self._check()

    # -- lookups (no database read) ------------------------------------------------------

    def find(self, candidate: str, now: float) -> Principal | None:
        """The principal of gateway key ``candidate`` if it is active at ``now``."""
        mark = hashlib.blake2b(candidate.encode(), key=self._memo_secret, digest_size=16).digest()
        digest = self._memo.get(mark)
        if digest is None:
            digest = hash_key(self._pepper, candidate)
            if digest in self._by_hash:
                if len(self._memo) >= _MEMO_KEPT:
                    self._memo.clear()
                self._memo[mark] = digest
        principal = self._by_hash.get(digest)
        if principal is None or (principal.expires_at is not None and principal.expires_at <= now):
            return None
        return principal

    def refusal(self, candidate: str, now: float) -> AuthRefused:
        """Why ``candidate`` is not a usable key (for the log; the answer is the same)."""
        digest = hash_key(self._pepper, candidate)
        principal = self._by_hash.get(digest)
        if principal is not None:  # expired since the last load
            grace = digest in self._grace
            reason = "replaced key past its grace period" if grace else "expired key"
            return AuthRefused(reason, principal.key_id)
        reason, key_id = self._refused.get(digest, ("unknown key", ""))
        return AuthRefused(reason, key_id or None)

    def partner_principal(self, name: str) -> Principal | None:
        return self._by_partner_name.get(name)

    def signing_entry(self, signing_key_id: str) -> SigningEntry | None:
        return self._signing_entries.get(signing_key_id)

    async def check_after_miss(self) -> None:
        """Wait for a check of the key table that began after this miss.

        All concurrent misses share one check, run no sooner than MISS_RELOAD_INTERVAL after
        the previous one: a key created just before its first use is found, and a flood of
        random keys costs the database at most a couple of queries a second.
        """
        missed_at = time.monotonic()
        while self._last_check_started <= missed_at:
            if self._miss_check is None or self._miss_check.done():
                self._miss_check = asyncio.create_task(self._delayed_check())
            await asyncio.shield(self._miss_check)

    async def _delayed_check(self) -> None:
        wait = self._last_check_started + MISS_RELOAD_INTERVAL - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        await self._check()


def _grace_principal(principal: Principal, record: KeyRecord) -> Principal:
    """The key's principal under its previous hash, valid until the grace period ends."""
    assert record.previous_key_hash is not None and record.previous_key_expires_at is not None
    ends = record.previous_key_expires_at.timestamp()
    expires = ends if principal.expires_at is None else min(ends, principal.expires_at)
    return dataclasses.replace(principal, key_hash=record.previous_key_hash, expires_at=expires)

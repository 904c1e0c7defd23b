"""Authentication: gateway key -> :class:`Principal`, with no database read per request.

All active keys live in an in-process map from keyed hash to principal. A background task
polls a cheap fingerprint of the key table every ``server.key_sync_interval`` seconds and
reloads on change, so keys created or revoked by another process (the CLI, another
instance) take effect within that interval. A key the map does not know triggers at most
one coalesced reload per ``MISS_RELOAD_INTERVAL``: a key created a moment ago works at once,
while a flood of random keys costs the database at most a few queries a second.

Wrong, unknown, expired and revoked keys all get the same answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sluicegate.errors import AuthenticationFailed
from sluicegate.policy.budgets import Budget
from sluicegate.policy.keys import hash_key
from sluicegate.state.base import RateLimit
from sluicegate.store.keys import KeyRecord, KeyStore
from sluicegate.store.partners import PartnerRecord, PartnerStore

log = logging.getLogger("sluicegate.auth")

MISS_RELOAD_INTERVAL = 0.5
AUTH_FAILED_MESSAGE = "Invalid or missing API key."


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the gateway key, its partner, and what they may do and spend.

    Built once per key-table load, never per request: the limits and budgets below are
    ready for the governor as they are.
    """

    key_id: str
    key_name: str
    key_hash: str
    models: tuple[str, ...]
    expires_at: float | None  # unix time
    partner_id: str | None = None
    partner_name: str | None = None
    weight: float = 1.0  # the partner's share in fair admission
    limits: tuple[RateLimit, ...] = ()  # the key's and the partner's own rate limits
    budgets: tuple[Budget, ...] = ()

    def may_use(self, model_name: str) -> bool:
        if not self.models:
            return True
        return any(fnmatch.fnmatchcase(model_name, pattern) for pattern in self.models)

    @property
    def fairness_group(self) -> str:
        """Who shares one fair-queue slot: the partner, or a key of its own without one."""
        return f"partner:{self.partner_id}" if self.partner_id else f"key:{self.key_id}"

    @classmethod
    def from_record(cls, record: KeyRecord, partner: PartnerRecord | None = None) -> Principal:
        key_scope = f"key:{record.id}"
        limits = [_rate_limit(key_scope, record.rpm, record.tpm, record.max_parallel)]
        budgets = [
            Budget.of(key_scope, f"key {record.name!r}", record.budget_usd, record.budget_period)
        ]
        if partner is not None:
            scope = f"partner:{partner.id}"
            limits.append(_rate_limit(scope, partner.rpm, partner.tpm, partner.max_parallel))
            budgets.append(
                Budget.of(
                    scope, f"partner {partner.name!r}", partner.budget_usd, partner.budget_period
                )
            )
        return cls(
            key_id=record.id,
            key_name=record.name,
            key_hash=record.key_hash,
            models=tuple(record.models),
            expires_at=record.expires_at.timestamp() if record.expires_at else None,
            partner_id=partner.id if partner else None,
            partner_name=partner.name if partner else None,
            weight=partner.weight if partner else 1.0,
            limits=tuple(x for x in limits if x is not None),
            budgets=tuple(x for x in budgets if x is not None),
        )


def _rate_limit(
    scope: str, rpm: int | None, tpm: int | None, max_parallel: int | None
) -> RateLimit | None:
    if rpm is None and tpm is None and max_parallel is None:
        return None
    return RateLimit(scope, rpm, tpm, max_parallel)


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


Fingerprint = tuple[tuple[int, int, datetime | None], tuple[int, datetime | None]]


class KeyCache:
    def __init__(
        self,
        store: KeyStore,
        pepper: bytes,
        sync_interval: float,
        partners: PartnerStore,
        on_reload: Callable[[list[Principal]], Awaitable[None]] | None = None,
    ) -> None:
        """``on_reload``: called with every active principal after each load (budget
        seeding); its failure is logged, never fatal to the reload."""
        self._store = store
        self._partners = partners
        self._pepper = pepper
        self._sync_interval = sync_interval
        self._on_reload = on_reload
        self._by_hash: dict[str, Principal] = {}
        self._fingerprint: Fingerprint | None = None
        self._reload_lock = asyncio.Lock()
        self._last_check_started = 0.0  # monotonic time the latest check began
        self._miss_check: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
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
        """Load every active key now (at start, and after a change made by this process)."""
        async with self._reload_lock:
            self._last_check_started = time.monotonic()
            fingerprint = await self._current_fingerprint()
            records = await self._store.load_active(datetime.now(UTC))
            partners = {p.id: p for p in await self._partners.list()}
            self._by_hash = {
                r.key_hash: Principal.from_record(r, partners.get(r.partner_id or ""))
                for r in records
            }
            self._fingerprint = fingerprint
        if self._on_reload is not None:
            try:
                await self._on_reload(list(self._by_hash.values()))
            except Exception:
                log.warning(
                    "after-reload hook failed; will retry on the next change", exc_info=True
                )

    async def _current_fingerprint(self) -> Fingerprint:
        return await self._store.fingerprint(), await self._partners.fingerprint()

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

    def _lookup(self, candidate: str, now: float) -> Principal | None:
        digest = hash_key(self._pepper, candidate)
        principal = self._by_hash.get(digest)
        if principal is None or not hmac.compare_digest(principal.key_hash, digest):
            return None
        if principal.expires_at is not None and principal.expires_at <= now:
            return None
        return principal

    async def authenticate(self, candidates: list[str]) -> Principal:
        now = time.time()
        for candidate in candidates:
            principal = self._lookup(candidate, now)
            if principal is not None:
                return principal
        if candidates:
            await self._check_after_miss()
            for candidate in candidates:
                principal = self._lookup(candidate, now)
                if principal is not None:
                    return principal
        raise AuthenticationFailed(AUTH_FAILED_MESSAGE)

    async def _check_after_miss(self) -> None:
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

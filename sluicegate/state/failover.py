"""Redis with an in-process fallback: ``limits.on_redis_failure`` open or closed.

Open: while the primary is unreachable each call goes to the fallback (limits then hold per
process). Closed: LimitStoreUnavailable reaches the caller (503). An admission is always
finished by the backend that granted it.

During an outage one call per ``retry_interval`` probes the primary and the others skip it:
an unreachable host costs a full timeout per attempt, which no request should pay each time.
Settles still always try the primary, since a skipped settle would lose the spend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Literal

from sluicegate.state.base import (
    Admission,
    BudgetHold,
    BudgetSpend,
    LimitBackend,
    LimitStoreUnavailable,
    RateLimit,
)

log = logging.getLogger("sluicegate.limits")


class FailoverBackend:
    def __init__(
        self,
        primary: LimitBackend,
        fallback: LimitBackend,
        mode: Literal["open", "closed"],
        *,
        retry_interval: float = 1.0,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.mode = mode
        self.name = primary.name
        self._fallback_leases: set[str] = set()
        self._outage = False
        self._retry_interval = retry_interval
        self._skip_primary_until = 0.0  # time.monotonic()
        self._last_error = ""

    def available(self) -> bool:
        return self.primary.available()

    async def start(self) -> None:
        await self.fallback.start()
        try:
            await self.primary.start()
        except LimitStoreUnavailable as exc:
            # Not fatal in either mode: the store may come back; closed mode refuses meanwhile.
            self._down(exc)

    async def close(self) -> None:
        await self.primary.close()
        await self.fallback.close()

    async def acquire(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        tokens: int,
        holds: Sequence[BudgetHold],
    ) -> Admission:
        if not self._skip_primary():
            try:
                admission = await self.primary.acquire(lease, limits, tokens, holds)
            except LimitStoreUnavailable as exc:
                self._down(exc)
            else:
                self._up()
                return admission
        self._refuse_if_closed()
        admission = await self.fallback.acquire(lease, limits, tokens, holds)
        if admission.ok:
            self._fallback_leases.add(lease)
        return admission

    async def settle(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        at: float,
        reserved_tokens: int,
        actual_tokens: int,
        holds: Sequence[BudgetHold],
        actual_nano: int,
    ) -> list[BudgetSpend]:
        """The spends after this settle; empty when the primary could not be reached."""
        if lease in self._fallback_leases:
            self._fallback_leases.discard(lease)
            return await self.fallback.settle(
                lease, limits, at, reserved_tokens, actual_tokens, holds, actual_nano
            )
        try:
            spends = await self.primary.settle(
                lease, limits, at, reserved_tokens, actual_tokens, holds, actual_nano
            )
        except LimitStoreUnavailable as exc:
            self._down(exc)  # the lease and holds expire by their TTL
            return []
        self._up()
        return spends

    async def release(
        self,
        lease: str,
        limits: Sequence[RateLimit],
        at: float,
        reserved_tokens: int,
        holds: Sequence[BudgetHold],
    ) -> None:
        if lease in self._fallback_leases:
            self._fallback_leases.discard(lease)
            await self.fallback.release(lease, limits, at, reserved_tokens, holds)
            return
        try:
            await self.primary.release(lease, limits, at, reserved_tokens, holds)
        except LimitStoreUnavailable as exc:
            self._down(exc)
            return
        self._up()

    async def seed_spend(self, scope: str, period: str, spent_nano: int) -> None:
        """Seeds both. Raises when the primary is unreachable, in either mode: the caller must
        seed it again later, or its counters would start from zero once it answers."""
        await self.fallback.seed_spend(scope, period, spent_nano)
        try:
            await self.primary.seed_spend(scope, period, spent_nano)
        except LimitStoreUnavailable as exc:
            self._down(exc)
            raise
        self._up()

    async def spent(self, scope: str, period: str) -> int:
        if not self._skip_primary():
            try:
                value = await self.primary.spent(scope, period)
            except LimitStoreUnavailable as exc:
                self._down(exc)
            else:
                self._up()
                return value
        self._refuse_if_closed()
        return await self.fallback.spent(scope, period)

    def _skip_primary(self) -> bool:
        """During an outage: True, except for one caller per retry_interval (the probe)."""
        if not self._outage:
            return False
        now = time.monotonic()
        if now < self._skip_primary_until:
            return True
        self._skip_primary_until = now + self._retry_interval
        return False

    def _refuse_if_closed(self) -> None:
        if self.mode == "closed":
            raise LimitStoreUnavailable(self._last_error)

    def _down(self, exc: LimitStoreUnavailable) -> None:
        self._last_error = str(exc)
        self._skip_primary_until = time.monotonic() + self._retry_interval
        if not self._outage:
            self._outage = True
            action = "using in-process limits" if self.mode == "open" else "refusing requests"
            log.warning("%s; %s until it answers again", exc, action)

    def _up(self) -> None:
        if self._outage:
            self._outage = False
            log.info("rate-limit store %s answers again", self.primary.name)

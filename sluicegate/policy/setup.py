"""Build and run the governance parts from the settings: the limit backend (memory, Redis,
or Redis with a fallback), prices, the governor, the usage ledger writer, and the
background upkeep of budget counters.

Start order matters: the ledger writer starts before requests arrive; at shutdown it stops
last, after in-flight requests have settled, so every ledger row is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from sluicegate.observe.cost import Price, PriceBook
from sluicegate.policy.auth import Principal
from sluicegate.policy.budgets import Budget, BudgetSeeder
from sluicegate.policy.limits import DEPLOYMENT_PREFIX, GLOBAL_SCOPE, Governor
from sluicegate.settings import ModelEntry, Settings
from sluicegate.state.base import LimitBackend, LimitStoreUnavailable, RateLimit
from sluicegate.state.failover import FailoverBackend
from sluicegate.state.memory import MemoryBackend
from sluicegate.state.redis import RedisBackend
from sluicegate.store.ledger import LedgerStore
from sluicegate.store.ledger_writer import LedgerWriter

UPKEEP_INTERVAL = 5.0  # seconds between checks for a restarted Redis and unseeded budgets
log = logging.getLogger("sluicegate.limits")


def build_backend(settings: Settings) -> LimitBackend:
    limits = settings.limits
    use_redis = limits.backend == "redis" or (
        limits.backend == "auto" and settings.redis_url is not None
    )
    memory = MemoryBackend(lease_ttl=limits.lease_ttl)
    if not use_redis or settings.redis_url is None:
        if settings.server.workers > 1:
            log.warning(
                "limits and budgets are kept per process (no redis_url) while serving with "
                "%d workers: each worker enforces them on its own",
                settings.server.workers,
            )
        return memory
    redis = RedisBackend(
        settings.redis_url.reveal(), timeout=limits.redis_timeout, lease_ttl=limits.lease_ttl
    )
    return FailoverBackend(redis, memory, limits.on_redis_failure)


def build_prices(settings: Settings) -> PriceBook:
    return PriceBook(
        {
            name: Price.of(
                p.input,
                p.output,
                cache_write=p.cache_write,
                cache_read=p.cache_read,
                cache_write_1h=p.cache_write_1h,
            )
            for name, p in settings.prices.items()
        }
    )


def deployment_capacities(named: Iterable[tuple[str, ModelEntry]]) -> dict[str, RateLimit]:
    """Deployment name -> its shared capacity limit, for the deployments that have one."""
    return {
        name: RateLimit(
            DEPLOYMENT_PREFIX + name,
            entry.limits.rpm,
            entry.limits.tpm,
            entry.limits.max_parallel,
        )
        for name, entry in named
        if entry.limits.any
    }


def build_governor(settings: Settings, backend: LimitBackend) -> Governor:
    glob = settings.limits.global_
    capacities = deployment_capacities(
        zip(settings.deployment_ids(), settings.model_list, strict=True)
    )
    return Governor(
        backend,
        build_prices(settings),
        global_limit=(
            RateLimit(GLOBAL_SCOPE, glob.rpm, glob.tpm, glob.max_parallel) if glob.any else None
        ),
        capacities=capacities,
        max_wait=settings.limits.queue.max_wait,
        max_queue=settings.limits.queue.max_size,
        soft_threshold=settings.budgets.soft_threshold,
    )


@dataclass(slots=True)
class Governance:
    backend: LimitBackend
    governor: Governor
    ledger: LedgerWriter
    seeder: BudgetSeeder
    _budgets: tuple[Budget, ...] = ()
    _upkeep: asyncio.Task[None] | None = None
    _redis_run_id: str | None = None

    @classmethod
    def build(cls, settings: Settings, engine: AsyncEngine) -> Governance:
        backend = build_backend(settings)
        store = LedgerStore(engine, own_thread=True)  # the gateway's writer: see LedgerStore
        writer = LedgerWriter(
            store,
            flush_interval=settings.ledger.flush_interval,
            batch_size=settings.ledger.batch_size,
            max_buffer=settings.ledger.max_buffer,
        )
        return cls(backend, build_governor(settings, backend), writer, BudgetSeeder(backend, store))

    async def start(self) -> None:
        await self.backend.start()
        await self.ledger.start()
        self._upkeep = asyncio.create_task(self._keep_up(), name="sluicegate-budget-upkeep")

    async def on_keys_loaded(self, principals: Iterable[Principal]) -> None:
        """Seed the counters of budgets that appeared (called after every key-table load)."""
        budgets = {b.scope: b for p in principals for b in p.budgets}
        self._budgets = tuple(budgets.values())
        await self._seed()

    async def _seed(self) -> None:
        with contextlib.suppress(LimitStoreUnavailable):  # else: on the next upkeep round
            await self.seeder.seed(self._budgets)

    async def _keep_up(self) -> None:
        redis = _redis_of(self.backend)
        while True:
            await asyncio.sleep(UPKEEP_INTERVAL)
            try:
                if redis is not None:
                    run_id = await redis.run_id()
                    if self._redis_run_id is not None and run_id != self._redis_run_id:
                        log.warning("Redis restarted: budget counters seeded again from the ledger")
                        self.seeder.forget()
                    self._redis_run_id = run_id
                await self._seed()  # also starts each new period's counters
            except LimitStoreUnavailable:
                continue
            except Exception:
                log.warning("budget upkeep failed; retrying", exc_info=True)

    async def close(self) -> None:
        """After in-flight requests settled: stop the queue, flush the ledger, disconnect."""
        if self._upkeep is not None:
            self._upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._upkeep
        await self.governor.queue.close()
        await self.ledger.stop()
        await self.backend.close()


def _redis_of(backend: LimitBackend) -> RedisBackend | None:
    if isinstance(backend, RedisBackend):
        return backend
    if isinstance(backend, FailoverBackend) and isinstance(backend.primary, RedisBackend):
        return backend.primary
    return None

"""Keep the routes in step with the database: deployments defined through the admin API and
the provider credentials they (or config-file entries) name.

At start, and then every ``server.key_sync_interval`` seconds, one cheap check compares
fingerprints of ``model_deployments``, ``provider_credentials`` and the master keyring (a key
file change can make a stored credential openable). When any moved, the routes are rebuilt
from the config file's entries, the stored deployments and the opened credentials, and
swapped into the router in one assignment (:meth:`Router.replace`); deployment capacity
limits and the deliverer's cached view follow. Breakers, statistics and upstream rate-limit
state are kept by deployment name and created on first use, so they cover stored
deployments as they are.

Nothing here is fatal: a stored deployment that no longer validates, points at a host the
allow-list refuses, or names a credential that is missing or cannot be opened is left out
and logged; a credential that fails to open keeps its last good value; a failed check keeps
the last good routes (readiness is not affected) and is retried at the next interval. The
request path never waits for any of this and never reads the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sluicegate.crypto.keyring_source import KeyringSource, MasterKeyMissing
from sluicegate.delivery.attempts import Deliverer
from sluicegate.policy.limits import Governor
from sluicegate.policy.setup import deployment_capacities
from sluicegate.routing.router import Router
from sluicegate.secret import Secret
from sluicegate.settings import ModelEntry, deployment_ids
from sluicegate.settings_security import SecuritySettings
from sluicegate.state.base import RateLimit
from sluicegate.store.credentials import CredentialStore
from sluicegate.store.deployments import DeploymentRecord, DeploymentStore

log = logging.getLogger("sluicegate.routing")

Fingerprint = tuple[tuple[int, datetime | None], tuple[int, datetime | None], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class StoredState:
    """What the last rebuild used: the stored rows and why some were left out."""

    records: tuple[DeploymentRecord, ...] = ()
    skipped: dict[str, str] | None = None  # deployment name -> reason


class RouteSync:
    """Rebuilds the router when stored deployments, credentials or master keys change."""

    def __init__(
        self,
        router: Router,
        config_entries: Sequence[ModelEntry],
        deployments: DeploymentStore,
        credentials: CredentialStore,
        keys: KeyringSource,
        security: SecuritySettings,
        interval: float,
        *,
        deliverer: Deliverer | None = None,
        governor: Governor | None = None,
    ) -> None:
        self.router = router
        self.config_entries = tuple(config_entries)
        self.config_ids = tuple(deployment_ids(config_entries))
        self.deployments = deployments
        self.credentials = credentials
        self.keys = keys
        self.security = security
        self._interval = interval
        self._deliverer = deliverer
        self._governor = governor
        self._secrets: dict[str, Secret] = {}  # last good value of every credential
        self._fingerprint: Fingerprint | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._healthy = True
        self.state = StoredState()

    async def start(self) -> None:
        """Build the routes once (a database failure here fails the start), then poll."""
        await self.reload()
        self._task = asyncio.create_task(self._poll(), name="sluicegate-route-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def reload(self) -> None:
        """Rebuild the routes from the database now (at start, and after an admin change
        on this instance, so it is in force before the answer is sent)."""
        async with self._lock:
            fingerprint = await self._current_fingerprint()
            records = await self.deployments.list()
            self._secrets = await self._open_credentials()
            self._rebuild(records)
            self._fingerprint = fingerprint

    async def check(self) -> None:
        """Rebuild if anything changed since the last rebuild (one cheap query per table
        otherwise). Failures keep the last good routes and are logged once."""
        try:
            if await self._current_fingerprint() != self._fingerprint:
                await self.reload()
        except Exception:
            if self._healthy:
                log.warning(
                    "model route sync failed; serving with the routes built before", exc_info=True
                )
            self._healthy = False
            return
        if not self._healthy:
            log.info("model route sync recovered")
        self._healthy = True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check()

    async def _current_fingerprint(self) -> Fingerprint:
        return (
            await self.deployments.fingerprint(),
            await self.credentials.fingerprint(),
            self._key_ids(),
        )

    def _key_ids(self) -> tuple[str, ...]:
        if not self.keys.configured:
            return ()
        try:
            return tuple(self.keys.keyring().key_ids)  # re-reads a changed key file
        except MasterKeyMissing:
            return ()

    async def _open_credentials(self) -> dict[str, Secret]:
        """Every stored credential opened; one that exists but fails to open now keeps the
        value it had (the store logs why it failed)."""
        opened = await self.credentials.load_secrets()
        existing = {record.name for record in await self.credentials.list()}
        kept = {
            name: secret
            for name, secret in self._secrets.items()
            if name in existing and name not in opened
        }
        for name in sorted(kept):
            log.warning("credential %r cannot be opened now; its last good value stays", name)
        return {**kept, **opened}

    def _rebuild(self, records: Sequence[DeploymentRecord]) -> None:
        skipped: dict[str, str] = {}
        stored: list[ModelEntry] = []
        for record in records:
            try:
                entry = record.entry()
            except ValueError as exc:
                skipped[record.deployment_id] = f"no longer valid: {exc}"
                continue
            refusal = self.security.refusal(entry.api_base)
            if refusal is not None:
                skipped[record.deployment_id] = f"api_base: {refusal}"
                continue
            stored.append(entry)
        table = self.router.replace(self.config_entries, self._secrets, stored)
        skipped.update(table.skipped)
        if self._deliverer is not None:
            self._deliverer.routes_changed()
        if self._governor is not None:
            self._governor.set_capacities(self._capacities(stored))
        for name, reason in sorted(skipped.items()):
            log.warning("deployment %r left out: %s", name, reason)
        log.info(
            "model routes rebuilt: %d config entries, %d stored deployments, %d left out",
            len(self.config_entries),
            len(records),
            len(skipped),
        )
        self.state = StoredState(tuple(records), skipped)

    def _capacities(self, stored: Sequence[ModelEntry]) -> dict[str, RateLimit]:
        named = list(zip(self.config_ids, self.config_entries, strict=True))
        taken = set(self.config_ids)
        # A stored deployment named like a config entry does not serve: the config's wins.
        named += [
            (e.deployment_id, e)
            for e in stored
            if e.deployment_id is not None and e.deployment_id not in taken
        ]
        return deployment_capacities(named)

    def skipped_reason(self, name: str) -> str | None:
        """Why the deployment ``name`` does not serve now (None when it does)."""
        return (self.state.skipped or {}).get(name)

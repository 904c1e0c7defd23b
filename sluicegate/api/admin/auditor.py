"""What the admin API writes to the audit log, and how (see :mod:`sluicegate.store.audit`).

The generic admin handler calls :class:`Auditor` for every write (any method but GET),
whatever its outcome, and for failed admin logins; a route needs nothing of its own to be
audited. What an entry says (target, ``detail.fields``, ``detail.values``) follows
:mod:`sluicegate.audit_detail`, shared with the CLI; ``detail.error`` is the error type of
a refused request.

Failed logins are rate-limited per process (``admin.failed_auth_audit_per_minute``); the
ones left out are counted in the next entry (``detail.suppressed``), so a flood of wrong
tokens cannot fill the table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Final

from sluicegate.api.asgi import Request
from sluicegate.audit_detail import SAFE_VALUE_FIELDS, describe, find_target
from sluicegate.store.audit import AuditStore

__all__ = [
    "SAFE_VALUE_FIELDS",
    "Auditor",
    "ClientIp",
    "default_action",
    "describe",
    "find_target",
    "target_type_of",
]

log = logging.getLogger("sluicegate.admin")

ClientIp = Callable[[Request], "str | None"]
Target = Callable[[Any, Any], "str | None"]

FAILED_LOGIN: Final = "auth.failed"
_WINDOW: Final = 60.0


def default_action(path: str) -> str:
    """``/key/generate`` -> ``key.generate``."""
    return path.strip("/").replace("/", ".")


def target_type_of(path: str) -> str:
    """``/key/generate`` -> ``key``."""
    return path.strip("/").split("/", 1)[0]


class Auditor:
    """Writes admin actions to the audit log (nothing when ``store`` is None)."""

    def __init__(
        self,
        store: AuditStore | None,
        client_ip: ClientIp,
        failed_logins_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._client_ip = client_ip
        self._budget = failed_logins_per_minute
        self._clock = clock
        self._window_start = clock()
        self._written = 0
        self._suppressed = 0

    async def write(
        self,
        *,
        request: Request,
        request_id: str,
        actor: str,
        action: str,
        target_type: str,
        target_id: str | None,
        status: int,
        detail: dict[str, Any],
    ) -> None:
        """Record one admin write. A failure to record is logged, not raised: the change
        is already made, and the answer must say so."""
        if self._store is None:
            return
        try:
            await self._store.record(
                actor=actor,
                action=action,
                status=status,
                target_type=target_type,
                target_id=target_id,
                source_ip=self._client_ip(request),
                request_id=request_id,
                detail=detail,
            )
        except Exception:
            log.exception("could not write the audit entry of %s (request %s)", action, request_id)

    async def failed_login(
        self, *, request: Request, request_id: str, method: str, path: str, status: int
    ) -> None:
        """Record a refused admin token, unless this minute's allowance is used up."""
        now = self._clock()
        if now - self._window_start >= _WINDOW:
            self._window_start, self._written = now, 0
        if self._written >= self._budget:
            self._suppressed += 1
            return
        self._written += 1
        detail: dict[str, Any] = {"method": method}
        if self._suppressed:
            detail["suppressed"], self._suppressed = self._suppressed, 0
        await self.write(
            request=request,
            request_id=request_id,
            actor="unknown",
            action=FAILED_LOGIN,
            target_type="route",
            target_id=path,
            status=status,
            detail=detail,
        )

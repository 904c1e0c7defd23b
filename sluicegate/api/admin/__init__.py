"""The admin API: keys, partners, limits, budgets and usage, in shapes LiteLLM users know.

Guarded by ``admin_token`` (``Authorization: Bearer`` or ``x-api-key``), compared in constant
time; without an ``admin_token`` in the config the admin API answers 403. ``GET
/openapi.json`` (unauthenticated) describes every route. A change made here takes effect on
this instance before the answer is sent, and on other instances within
``server.key_sync_interval``.

Routes: ``/key/generate|info|list|update|delete``, ``/partner/new|info|list|update|delete``,
``/usage/report``, ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any

from sluicegate.api.admin.base import ADMIN_BODY_LIMIT, AdminContext, Gate, Handler, Route, handler
from sluicegate.api.admin.keys import KeyRoutes
from sluicegate.api.admin.openapi import openapi_document
from sluicegate.api.admin.partners import PartnerRoutes
from sluicegate.api.admin.usage import UsageRoutes
from sluicegate.api.admin.views import OpenApiDocument, key_view
from sluicegate.policy.auth import KeyCache
from sluicegate.settings import Secret
from sluicegate.store.keys import KeyStore
from sluicegate.store.ledger import LedgerStore
from sluicegate.store.partners import PartnerStore

__all__ = ["ADMIN_BODY_LIMIT", "AdminApi", "Handler", "key_view"]


class AdminApi:
    def __init__(
        self,
        token: Secret | None,
        keys: KeyStore,
        partners: PartnerStore,
        ledger: LedgerStore,
        cache: KeyCache,
        pepper: bytes,
    ) -> None:
        self._gate = Gate(token.reveal().encode() if token else None)
        context = AdminContext(keys, partners, ledger, cache, pepper)
        self._routes: list[Route] = [
            *KeyRoutes(context).routes(),
            *PartnerRoutes(context).routes(),
            *UsageRoutes(context).routes(),
        ]
        self._routes.append(
            Route(
                "GET",
                "/openapi.json",
                "This document (no token needed).",
                self._openapi,
                OpenApiDocument,
                public=True,
                errors=(),
                tags=("meta",),
            )
        )
        self._document: dict[str, Any] | None = None

    async def _openapi(self, _: None) -> dict[str, Any]:
        if self._document is None:
            self._document = openapi_document(self._routes)
        return self._document

    def routes(self) -> dict[tuple[str, str], Handler]:
        """Every admin route, for the gateway's route table."""
        return {(r.method, r.path): handler(r, self._gate) for r in self._routes}

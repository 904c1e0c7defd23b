"""The admin API: keys, partners, limits, budgets, usage, provider credentials and the
audit log, in shapes LiteLLM users know.

Guarded by admin tokens (``Authorization: Bearer`` or ``x-api-key``; see
:mod:`sluicegate.api.admin.gate`): ``admin_token`` (full) and ``admin.tokens`` (each
``read`` or ``full``); without any token the admin API answers 403. Every route is served
under ``/admin`` and, unless ``admin.root_paths: false``, at the root too (``/key/generate``),
on the API port or, with ``admin.port``, only on a listener of its own. ``GET
/admin/openapi.json`` (unauthenticated) describes every route. Every write is audited. A
change made here takes effect on this instance before the answer is sent, and on other
instances within ``server.key_sync_interval``.

Routes: ``/key/generate|info|list|update|delete|regenerate|block|unblock``,
``/key/signing_key/new|list|revoke``,
``/partner/new|info|list|update|delete``, ``/credentials/new|info|list|update|delete``,
``/model/new|info|list|update|delete``, ``/usage/report``, ``/audit/list``, ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sluicegate.api.admin.audit import AuditRoutes
from sluicegate.api.admin.auditor import Auditor
from sluicegate.api.admin.base import ADMIN_BODY_LIMIT, AdminContext, Handler, Route, handler
from sluicegate.api.admin.credentials import CredentialRoutes
from sluicegate.api.admin.gate import admin_gate
from sluicegate.api.admin.keys import KeyRoutes
from sluicegate.api.admin.models import ModelRoutes
from sluicegate.api.admin.openapi import openapi_document
from sluicegate.api.admin.partners import PartnerRoutes
from sluicegate.api.admin.signing_keys import SigningKeyRoutes
from sluicegate.api.admin.usage import UsageRoutes
from sluicegate.api.admin.views import OpenApiDocument, key_view
from sluicegate.api.asgi import Request
from sluicegate.policy.client_ip import client_address
from sluicegate.settings import Settings
from sluicegate.settings_auth import Network

__all__ = ["ADMIN_BODY_LIMIT", "ADMIN_PREFIX", "AdminApi", "AdminContext", "Handler", "key_view"]

ADMIN_PREFIX = "/admin"


class AdminApi:
    def __init__(self, settings: Settings, context: AdminContext) -> None:
        self._gate = admin_gate(settings)
        trusted: Sequence[Network] = settings.auth.trusted_proxies

        def source_ip(request: Request) -> str | None:
            return client_address(request, trusted)

        self._auditor = Auditor(
            context.audit, source_ip, settings.admin.failed_auth_audit_per_minute
        )
        self._root_paths = settings.admin.root_paths
        self._routes: list[Route] = [
            *KeyRoutes(context).routes(),
            *SigningKeyRoutes(context).routes(),
            *PartnerRoutes(context).routes(),
            *UsageRoutes(context).routes(),
            *AuditRoutes(context).routes(),
        ]
        if context.credentials is not None:
            self._routes.extend(CredentialRoutes(context).routes())
        if context.deployments is not None:
            self._routes.extend(ModelRoutes(context).routes())
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
            self._document = openapi_document(self._routes, ADMIN_PREFIX)
        return self._document

    def routes(self) -> dict[tuple[str, str], Handler]:
        """Every admin route under ``/admin``, and at the root unless ``admin.root_paths``
        is off, for a route table."""
        table: dict[tuple[str, str], Handler] = {}
        for route in self._routes:
            handle = handler(route, self._gate, self._auditor)
            table[(route.method, ADMIN_PREFIX + route.path)] = handle
            if self._root_paths:
                table[(route.method, route.path)] = handle
        return table

"""``/audit/list``: the audit log of admin actions, newest first, filtered and paged.

Readable with any admin token (read scope included). What is recorded, and what never is,
is described in :mod:`sluicegate.api.admin.auditor`.
"""

from __future__ import annotations

from datetime import datetime

from sluicegate.api.admin.base import AdminContext, Route
from sluicegate.api.admin.schemas import AuditListQuery
from sluicegate.api.admin.views import AuditEntryView, AuditList
from sluicegate.errors import InvalidRequest
from sluicegate.policy.usage_report import parse_instant
from sluicegate.store.audit import AuditQuery


def instant(name: str, text: str | None, *, end: bool = False) -> datetime | None:
    try:
        return parse_instant(text, end=end) if text else None
    except ValueError as exc:
        raise InvalidRequest(f"{name}: {exc}") from None


class AuditRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        return [
            Route(
                "GET",
                "/audit/list",
                "Admin actions (who, what, when, from where), newest first.",
                self.list,
                AuditList,
                query=AuditListQuery,
                tags=("audit",),
            )
        ]

    async def list(self, query: AuditListQuery) -> AuditList:
        since = instant("since", query.since)
        until = instant("until", query.until, end=True)
        if since is not None and until is not None and until <= since:
            raise InvalidRequest("until: must be later than since")
        if self.ctx.audit is None:  # pragma: no cover - the gateway always has one
            return AuditList(entries=[], next_cursor=None)
        entries = await self.ctx.audit.list(
            AuditQuery(
                actor=query.actor,
                action=query.action,
                target_id=query.target_id,
                since=since,
                until=until,
                before_id=query.cursor,
                limit=query.limit,
            )
        )
        full_page = len(entries) == query.limit
        return AuditList(
            entries=[AuditEntryView.model_validate(e, from_attributes=True) for e in entries],
            next_cursor=entries[-1].id if full_page and entries else None,
        )

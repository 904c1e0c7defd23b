"""``/usage/report``: requests, tokens and cost from the usage ledger, grouped."""

from __future__ import annotations

from sluicegate.api.admin.base import AdminContext, Route
from sluicegate.api.admin.schemas import UsageQuery
from sluicegate.api.admin.views import UsageReport
from sluicegate.errors import InvalidRequest, NotFound
from sluicegate.policy.usage_report import parse_group_by, parse_instant, usage_report
from sluicegate.store.keys import KeyNotFoundError
from sluicegate.store.partners import PartnerNotFoundError


class UsageRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        return [
            Route(
                "GET",
                "/usage/report",
                "Usage and cost grouped by partner, key, model and/or day, with totals.",
                self.report,
                UsageReport,
                query=UsageQuery,
                errors=(400, 401, 403, 404),
                tags=("usage",),
            )
        ]

    async def report(self, query: UsageQuery) -> UsageReport:
        try:
            group_by = parse_group_by(query.group_by)
        except ValueError as exc:
            raise InvalidRequest(f"group_by: {exc}") from None
        try:
            since = parse_instant(query.since) if query.since else None
        except ValueError as exc:
            raise InvalidRequest(f"since: {exc}") from None
        try:
            until = parse_instant(query.until, end=True) if query.until else None
        except ValueError as exc:
            raise InvalidRequest(f"until: {exc}") from None
        if since is not None and until is not None and until <= since:
            raise InvalidRequest("until: must be later than since")
        partner_id = key_id = None
        if query.partner is not None:
            try:
                partner_id = (await self.ctx.partners.get(query.partner)).id
            except PartnerNotFoundError:
                raise NotFound(f"no partner named or with id {query.partner[:80]!r}") from None
        if query.key is not None:
            try:
                key_id = (await self.ctx.keys.get(query.key)).id
            except KeyNotFoundError:
                raise NotFound(f"no key named or with id {query.key[:80]!r}") from None
        report = await usage_report(
            self.ctx.ledger,
            group_by=group_by,
            since=since,
            until=until,
            partner_id=partner_id,
            key_id=key_id,
        )
        return UsageReport.model_validate(report)

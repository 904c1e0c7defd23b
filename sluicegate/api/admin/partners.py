"""``/partner/*``: create, inspect, list, update and delete partners (owners of keys).

Partner changes reload this instance's key cache (a key's limits include its partner's)
before the answer is sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sluicegate.api.admin.base import AdminContext, Conflict, Route, api_message
from sluicegate.api.admin.keys import limit_values
from sluicegate.api.admin.schemas import NewPartner, PartnerRef, UpdatePartner
from sluicegate.api.admin.views import (
    DeletedPartner,
    PartnerInfo,
    PartnerList,
    PartnerView,
    key_view,
    partner_fields,
    partner_view,
)
from sluicegate.errors import InvalidRequest, NotFound
from sluicegate.policy.usage_report import current_spend
from sluicegate.state.periods import period_end
from sluicegate.store.partners import (
    DuplicatePartnerError,
    PartnerInUseError,
    PartnerNotFoundError,
    PartnerRecord,
)

_NOT_FOUND = (400, 401, 403, 404)


class PartnerRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        tags = ("partners",)
        return [
            Route("POST", "/partner/new", "Create a partner.",
                  self.new, PartnerView, body=NewPartner, tags=tags),
            Route("GET", "/partner/info", "One partner, its keys and current-period spend.",
                  self.info, PartnerInfo, query=PartnerRef, errors=_NOT_FOUND, tags=tags),
            Route("GET", "/partner/list", "All partners.",
                  self.list, PartnerList, tags=tags),
            Route("POST", "/partner/update", "Change a partner; null clears a limit or budget.",
                  self.update, PartnerView, body=UpdatePartner, errors=_NOT_FOUND, tags=tags),
            Route("POST", "/partner/delete", "Delete a partner that has no active keys left.",
                  self.delete, DeletedPartner, body=PartnerRef, errors=(*_NOT_FOUND, 409),
                  tags=tags),
        ]  # fmt: skip

    async def get(self, ref: str) -> PartnerRecord:
        try:
            return await self.ctx.partners.get(ref)
        except PartnerNotFoundError:
            raise NotFound(f"no partner named or with id {ref[:80]!r}") from None

    async def new(self, body: NewPartner) -> PartnerView:
        try:
            record = await self.ctx.partners.create(
                name=body.name,
                weight=body.weight,
                metadata=body.metadata,
                allowed_ips=body.allowed_ips or [],
                **limit_values(body, only_set=False),
            )
        except DuplicatePartnerError as exc:
            raise InvalidRequest(f"name: {exc}") from None
        except ValueError as exc:
            raise InvalidRequest(api_message(exc)) from None
        await self.ctx.cache.reload()
        return partner_view(record)

    async def info(self, query: PartnerRef) -> PartnerInfo:
        record = await self.get(query.partner)
        now = datetime.now(UTC)
        keys = [k for k in await self.ctx.keys.list() if k.partner_id == record.id]
        spend, since = await current_spend(
            self.ctx.ledger, "partner_id", record.id, record.budget_period, now
        )
        reset = period_end(record.budget_period, now) if record.budget_period else None
        names = {record.id: record.name}
        return PartnerInfo(
            keys=[key_view(k, names, now) for k in keys],
            spend=spend,
            spend_since=since,
            budget_reset_at=reset,
            **partner_fields(record),
        )

    async def list(self, _: None) -> PartnerList:
        return PartnerList(partners=[partner_view(p) for p in await self.ctx.partners.list()])

    async def update(self, body: UpdatePartner) -> PartnerView:
        current = await self.get(body.partner)
        present = body.model_fields_set
        changes: dict[str, Any] = limit_values(body, only_set=True)
        if "name" in present:
            if body.name is None:
                raise InvalidRequest("name: a partner's name cannot be cleared")
            changes["name"] = body.name
        if "weight" in present:
            changes["weight"] = 1.0 if body.weight is None else body.weight
        if "metadata" in present:
            changes["metadata"] = body.metadata or {}
        if "allowed_ips" in present:
            changes["allowed_ips"] = body.allowed_ips or []
        if not changes:
            raise InvalidRequest("nothing to change: give at least one field besides partner")
        try:
            record = await self.ctx.partners.update(current.id, changes)
        except PartnerNotFoundError:
            raise NotFound(f"no partner with id {current.id!r}") from None
        except DuplicatePartnerError as exc:
            raise InvalidRequest(f"name: {exc}") from None
        except ValueError as exc:
            raise InvalidRequest(api_message(exc)) from None
        await self.ctx.cache.reload()
        return partner_view(record)

    async def delete(self, body: PartnerRef) -> DeletedPartner:
        record = await self.get(body.partner)
        try:
            await self.ctx.partners.delete(record.id)
        except PartnerNotFoundError:
            raise NotFound(f"no partner named or with id {body.partner[:80]!r}") from None
        except PartnerInUseError as exc:
            raise Conflict(str(exc)) from None
        await self.ctx.cache.reload()
        return DeletedPartner(deleted_partner=record.id)

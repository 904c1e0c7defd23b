"""``/key/*``: generate, info, list, update, delete (revoke), regenerate, block and unblock
gateway keys.

Every change is applied to this instance's key cache before the answer is sent; other
instances pick it up within ``server.key_sync_interval``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sluicegate.api.admin.base import AdminContext, Conflict, Route, api_message
from sluicegate.api.admin.schemas import (
    DeleteKeys,
    GenerateKey,
    KeyFields,
    KeyListQuery,
    KeyRef,
    RegenerateKey,
    UpdateKey,
)
from sluicegate.api.admin.views import (
    DeletedKeys,
    GeneratedKey,
    KeyInfo,
    KeyList,
    KeyView,
    RegeneratedKey,
    key_fields,
    key_view,
)
from sluicegate.errors import InvalidRequest, NotFound
from sluicegate.policy.key_admin import create_key, parse_expiry, regenerate_key
from sluicegate.policy.keys import WeakKeyError, hash_key
from sluicegate.policy.usage_report import current_spend
from sluicegate.state.periods import period_end
from sluicegate.store.keys import DuplicateKeyError, KeyNotFoundError, KeyRecord
from sluicegate.store.partners import PartnerNotFoundError, PartnerRecord

# Regenerating, blocking or unblocking a revoked key is a conflict (409): revocation is final.
_REVOCABLE = (400, 401, 403, 404, 409)

# Request field -> store field, for the limits shared by keys and partners.
LIMIT_FIELDS = {
    "rpm_limit": "rpm",
    "tpm_limit": "tpm",
    "max_parallel_requests": "max_parallel",
    "max_budget": "budget_usd",
    "budget_duration": "budget_period",
}


def limit_values(body: Any, *, only_set: bool) -> dict[str, Any]:
    """The store's limit fields from a request (on updates: only those present)."""
    present = body.model_fields_set
    return {
        store: getattr(body, name)
        for name, store in LIMIT_FIELDS.items()
        if not only_set or name in present
    }


def partner_ref(body: KeyFields) -> tuple[bool, str | None]:
    """(given?, reference) from ``partner`` or its alias ``team_id``."""
    given = body.model_fields_set & {"partner", "team_id"}
    if body.partner is not None and body.team_id is not None and body.partner != body.team_id:
        raise InvalidRequest("partner, team_id: give one of them (team_id is an alias)")
    return bool(given), body.partner if body.partner is not None else body.team_id


def expiry(duration: str | None) -> datetime | None:
    try:
        return parse_expiry(duration) if duration else None
    except ValueError as exc:
        raise InvalidRequest(f"duration: {exc}") from None


class KeyRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        tags = ("keys",)
        return [
            Route("POST", "/key/generate", "Create (or import) a key; the key is shown once.",
                  self.generate, GeneratedKey, body=GenerateKey, errors=(400, 401, 403, 404),
                  tags=tags),
            Route("GET", "/key/info", "One key, its limits and current-period spend.",
                  self.info, KeyInfo, query=KeyRef, errors=(400, 401, 403, 404), tags=tags),
            Route("GET", "/key/list", "All keys (optionally one partner's).",
                  self.list, KeyList, query=KeyListQuery, errors=(400, 401, 403, 404), tags=tags),
            Route("POST", "/key/update", "Change a key; null clears a setting.",
                  self.update, KeyView, body=UpdateKey, errors=(400, 401, 403, 404), tags=tags),
            Route("POST", "/key/delete", "Revoke keys (the rows stay for the record).",
                  self.delete, DeletedKeys, body=DeleteKeys, errors=(400, 401, 403, 404),
                  tags=tags),
            Route("POST", "/key/regenerate",
                  "New secret for a key (shown once); the old one works for grace_period.",
                  self.regenerate, RegeneratedKey, body=RegenerateKey, errors=_REVOCABLE,
                  tags=tags),
            Route("POST", "/key/block", "Refuse a key until it is unblocked.",
                  self.block, KeyView, body=KeyRef, errors=_REVOCABLE, tags=tags),
            Route("POST", "/key/unblock", "Accept a blocked key again.",
                  self.unblock, KeyView, body=KeyRef, errors=_REVOCABLE, tags=tags),
        ]  # fmt: skip

    async def partner(self, ref: str) -> PartnerRecord:
        try:
            return await self.ctx.partners.get(ref)
        except PartnerNotFoundError:
            raise NotFound(f"no partner named or with id {ref[:80]!r}") from None

    async def partner_names(self) -> dict[str, str]:
        return {p.id: p.name for p in await self.ctx.partners.list()}

    async def find(self, *, alias: str | None, key_id: str | None, value: str | None) -> KeyRecord:
        if value is not None:
            digest = hash_key(self.ctx.pepper, value)
            records = await self.ctx.keys.list()
            for record in records:
                if record.key_hash == digest:
                    return record
            now = datetime.now(UTC)  # a key replaced by /key/regenerate, still in its grace
            for record in records:
                if record.previous_key_hash == digest and record.previous_key_valid(now):
                    return record
            raise NotFound("the given key is not known to this gateway")
        ref = key_id if key_id is not None else alias
        if ref is None:
            raise InvalidRequest("name the key: key_alias, key_id or key")
        try:
            return await self.ctx.keys.get(ref)
        except KeyNotFoundError:
            raise NotFound(f"no key named or with id {ref[:80]!r}") from None

    async def generate(self, body: GenerateKey) -> GeneratedKey:
        _, ref = partner_ref(body)
        partner = await self.partner(ref) if ref is not None else None
        expires_at = expiry(body.duration)
        try:
            record, key = await create_key(
                self.ctx.keys,
                self.ctx.pepper,
                name=body.key_alias,
                models=body.models or [],
                expires_at=expires_at,
                value=body.key,
                partner_id=partner.id if partner else None,
                metadata=body.metadata,
                allowed_ips=body.allowed_ips or [],
                **limit_values(body, only_set=False),
            )
        except WeakKeyError as exc:
            raise InvalidRequest(f"key: {exc}") from None
        except PartnerNotFoundError:  # deleted between the check and the insert
            raise NotFound(f"no partner named or with id {ref!r}") from None
        except DuplicateKeyError as exc:
            raise InvalidRequest(str(exc)) from None
        except ValueError as exc:
            raise InvalidRequest(api_message(exc)) from None
        await self.ctx.cache.reload()
        names = {partner.id: partner.name} if partner else {}
        return GeneratedKey(key=key, **key_fields(record, names, datetime.now(UTC)))

    async def info(self, query: KeyRef) -> KeyInfo:
        record = await self.find(alias=query.key_alias, key_id=query.key_id, value=query.key)
        now = datetime.now(UTC)
        spend, since = await current_spend(
            self.ctx.ledger, "key_id", record.id, record.budget_period, now
        )
        reset = period_end(record.budget_period, now) if record.budget_period else None
        return KeyInfo(
            spend=spend,
            spend_since=since,
            budget_reset_at=reset,
            **key_fields(record, await self.partner_names(), now),
        )

    async def list(self, query: KeyListQuery) -> KeyList:
        records = await self.ctx.keys.list()
        if query.partner is not None:
            partner_id = (await self.partner(query.partner)).id
            records = [r for r in records if r.partner_id == partner_id]
        names, now = await self.partner_names(), datetime.now(UTC)
        return KeyList(keys=[key_view(r, names, now) for r in records])

    async def update(self, body: UpdateKey) -> KeyView:
        by_other = body.key_id is not None or body.key is not None
        current = await self.find(
            alias=None if by_other else body.key_alias, key_id=body.key_id, value=body.key
        )
        present = body.model_fields_set
        changes: dict[str, Any] = limit_values(body, only_set=True)
        if by_other and body.key_alias is not None:
            changes["name"] = body.key_alias
        if "models" in present:
            changes["models"] = body.models or []
        if "duration" in present:
            changes["expires_at"] = expiry(body.duration)
        if "metadata" in present:
            changes["metadata"] = body.metadata or {}
        if "allowed_ips" in present:
            changes["allowed_ips"] = body.allowed_ips or []
        given, ref = partner_ref(body)
        if given:
            changes["partner_id"] = (await self.partner(ref)).id if ref is not None else None
        if not changes:
            raise InvalidRequest("nothing to change: give at least one field besides the key")
        try:
            record = await self.ctx.keys.update(current.id, changes)
        except KeyNotFoundError:
            raise NotFound(f"no key with id {current.id!r}") from None
        except PartnerNotFoundError:
            raise NotFound(f"no partner named or with id {ref!r}") from None
        except DuplicateKeyError as exc:
            raise InvalidRequest(str(exc)) from None
        except ValueError as exc:
            raise InvalidRequest(api_message(exc)) from None
        await self.ctx.cache.reload()
        return key_view(record, await self.partner_names(), datetime.now(UTC))

    async def delete(self, body: DeleteKeys) -> DeletedKeys:
        found: list[KeyRecord] = []
        for ref in [*body.key_aliases, *body.key_ids]:
            found.append(await self.find(alias=ref, key_id=None, value=None))
        for value in body.keys:
            found.append(await self.find(alias=None, key_id=None, value=value))
        if not found:
            raise InvalidRequest("name the keys to delete: key_aliases, key_ids or keys")
        revoked = [await self.ctx.keys.revoke(record.id) for record in found]
        await self.ctx.cache.reload()  # effective on this instance before we answer
        return DeletedKeys(deleted_keys=[r.id for r in revoked])

    async def regenerate(self, body: RegenerateKey) -> RegeneratedKey:
        current = await self.find(alias=body.key_alias, key_id=body.key_id, value=body.key)
        try:
            record, key = await regenerate_key(
                self.ctx.keys,
                self.ctx.pepper,
                current.id,
                timedelta(seconds=body.grace_period),
            )
        except KeyNotFoundError:
            raise NotFound(f"no key with id {current.id!r}") from None
        except DuplicateKeyError as exc:  # 2**-256 odds: the same secret drawn twice
            raise InvalidRequest(str(exc)) from None
        except ValueError as exc:  # revoked
            raise Conflict(str(exc)) from None
        await self.ctx.cache.reload()
        now = datetime.now(UTC)
        return RegeneratedKey(key=key, **key_fields(record, await self.partner_names(), now))

    async def block(self, body: KeyRef) -> KeyView:
        return await self._set_blocked(body, True)

    async def unblock(self, body: KeyRef) -> KeyView:
        return await self._set_blocked(body, False)

    async def _set_blocked(self, body: KeyRef, blocked: bool) -> KeyView:
        current = await self.find(alias=body.key_alias, key_id=body.key_id, value=body.key)
        try:
            record = await self.ctx.keys.set_blocked(current.id, blocked)
        except KeyNotFoundError:
            raise NotFound(f"no key with id {current.id!r}") from None
        except ValueError as exc:  # revoked
            raise Conflict(str(exc)) from None
        await self.ctx.cache.reload()  # effective on this instance before we answer
        return key_view(record, await self.partner_names(), datetime.now(UTC))

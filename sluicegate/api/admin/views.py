"""Response models of the admin API and the functions that build them from records.

A view never contains a gateway key or its hash: the key is returned once, by
``/key/generate`` (:class:`GeneratedKey`), and never again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sluicegate.store.keys import KeyRecord
from sluicegate.store.partners import PartnerRecord


class KeyView(BaseModel):
    key_id: str
    key_alias: str
    key_hint: str = Field(description="The key's last characters, to tell keys apart.")
    models: list[str]
    status: Literal["active", "blocked", "expired", "revoked"]
    blocked: bool = Field(description="Refused until unblocked (see /key/unblock).")
    created_at: datetime
    updated_at: datetime
    expires: datetime | None
    revoked_at: datetime | None
    partner_id: str | None
    partner: str | None = Field(description="The partner's name.")
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel_requests: int | None
    max_budget: float | None
    budget_duration: str | None
    metadata: dict[str, Any]
    allowed_ips: list[str] = Field(description="Client networks allowed; empty: anywhere.")
    previous_key_expires_at: datetime | None = Field(
        description="After /key/regenerate with a grace period: when the old key stops working."
    )


class Spend(BaseModel):
    spend: float = Field(
        description="USD spent in the current budget period (this month without a budget)."
    )
    spend_since: datetime | None = Field(description="Start of that period; null: lifetime.")
    budget_reset_at: datetime | None = Field(description="End of that period; null: lifetime.")


class GeneratedKey(KeyView):
    key: str = Field(description="The key itself. Shown only in this answer.")


class KeyInfo(KeyView, Spend):
    pass


class KeyList(BaseModel):
    keys: list[KeyView]


class RegeneratedKey(GeneratedKey):
    pass


class DeletedKeys(BaseModel):
    deleted_keys: list[str]


class PartnerView(BaseModel):
    partner_id: str
    name: str
    weight: float
    rpm_limit: int | None
    tpm_limit: int | None
    max_parallel_requests: int | None
    max_budget: float | None
    budget_duration: str | None
    metadata: dict[str, Any]
    allowed_ips: list[str] = Field(
        description="Client networks allowed for all its keys; empty: anywhere."
    )
    created_at: datetime
    updated_at: datetime


class PartnerInfo(PartnerView, Spend):
    keys: list[KeyView]


class PartnerList(BaseModel):
    partners: list[PartnerView]


class DeletedPartner(BaseModel):
    deleted_partner: str


class UsageTotals(BaseModel):
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float


class UsageReport(BaseModel):
    rows: list[dict[str, Any]] = Field(
        description="One object per group: the group_by fields, then the totals' fields."
    )
    totals: UsageTotals


class OpenApiDocument(BaseModel):
    """An OpenAPI 3.1 document."""

    model_config = ConfigDict(extra="allow")
    openapi: str


class ErrorDetail(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    """Anthropic's error shape."""

    type: Literal["error"]
    error: ErrorDetail


def key_status(
    record: KeyRecord, now: datetime
) -> Literal["active", "blocked", "expired", "revoked"]:
    """The most final state first: revoked (for good), expired, blocked (until unblocked)."""
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    if record.blocked:
        return "blocked"
    return "active"


def key_fields(
    record: KeyRecord, partner_names: Mapping[str, str], now: datetime
) -> dict[str, Any]:
    """The fields of a :class:`KeyView` (to extend into :class:`KeyInfo` etc.)."""
    return {
        "key_id": record.id,
        "key_alias": record.name,
        "key_hint": record.key_hint,
        "models": list(record.models),
        "status": key_status(record, now),
        "blocked": record.blocked,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "expires": record.expires_at,
        "revoked_at": record.revoked_at,
        "partner_id": record.partner_id,
        "partner": partner_names.get(record.partner_id) if record.partner_id else None,
        "rpm_limit": record.rpm,
        "tpm_limit": record.tpm,
        "max_parallel_requests": record.max_parallel,
        "max_budget": record.budget_usd,
        "budget_duration": record.budget_period,
        "metadata": record.metadata,
        "allowed_ips": list(record.allowed_ips),
        # Only while it is in the future: an ended grace is of no interest.
        "previous_key_expires_at": record.previous_key_expires_at
        if record.previous_key_valid(now)
        else None,
    }


def key_view(record: KeyRecord, partner_names: Mapping[str, str], now: datetime) -> KeyView:
    return KeyView(**key_fields(record, partner_names, now))


def partner_fields(record: PartnerRecord) -> dict[str, Any]:
    return {
        "partner_id": record.id,
        "name": record.name,
        "weight": record.weight,
        "rpm_limit": record.rpm,
        "tpm_limit": record.tpm,
        "max_parallel_requests": record.max_parallel,
        "max_budget": record.budget_usd,
        "budget_duration": record.budget_period,
        "metadata": record.metadata,
        "allowed_ips": list(record.allowed_ips),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def partner_view(record: PartnerRecord) -> PartnerView:
    return PartnerView(**partner_fields(record))


class AuditEntryView(BaseModel):
    id: int
    created_at: datetime
    actor: str = Field(description="The admin token's name; unknown for a refused token.")
    action: str = Field(description="e.g. key.generate, partner.update, auth.failed.")
    target_type: str | None
    target_id: str | None = Field(description="Ids or names of what was acted on.")
    source_ip: str | None
    request_id: str | None
    status: int = Field(description="The HTTP status of the answer.")
    detail: dict[str, Any] = Field(
        description="Field names given (values only of non-secret fields), error type."
    )


class AuditList(BaseModel):
    entries: list[AuditEntryView] = Field(description="Newest first.")
    next_cursor: int | None = Field(
        description="Pass as cursor for the next (older) page; null: no more entries."
    )

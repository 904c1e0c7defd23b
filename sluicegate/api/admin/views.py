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
    status: Literal["active", "expired", "revoked"]
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


def key_status(record: KeyRecord, now: datetime) -> Literal["active", "expired", "revoked"]:
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
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
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def partner_view(record: PartnerRecord) -> PartnerView:
    return PartnerView(**partner_fields(record))

"""Request models of the admin API (pydantic; unknown fields are refused).

Field names follow LiteLLM's key API (``key_alias``, ``rpm_limit``, ``max_budget``,
``budget_duration`` ...) so existing scripts carry over; ``team_id`` is accepted as an alias
of ``partner``. On updates a field that is present and ``null`` clears the setting.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from sluicegate.policy.key_admin import budget_period
from sluicegate.policy.usage_report import DEFAULT_GROUP_BY
from sluicegate.store.audit import MAX_AUDIT_PAGE
from sluicegate.store.fields import MAX_ALLOWED_IPS, MAX_BUDGET_USD, MAX_WEIGHT, MIN_WEIGHT

_INT32_MAX = 2**31 - 1

Count = Annotated[int, Field(ge=1, le=_INT32_MAX)]
# The store's bounds, stated here too so that the OpenAPI document shows them.
Usd = Annotated[float, Field(ge=0, le=MAX_BUDGET_USD, allow_inf_nan=False)]
Weight = Annotated[float, Field(ge=MIN_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Ref = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Pattern = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Cidr = Annotated[str, StringConstraints(min_length=1, max_length=64)]
# Seven days: long enough to roll a key out over a week-end, short enough that a leaked
# key cannot be kept alive by regenerating it.
MAX_GRACE_SECONDS = 7 * 86400


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Limits(Strict):
    rpm_limit: Count | None = Field(None, description="Requests per minute; null: no limit.")
    tpm_limit: Count | None = Field(None, description="Tokens per minute; null: no limit.")
    max_parallel_requests: Count | None = Field(
        None, description="Requests in flight at once; null: no limit."
    )
    max_budget: Usd | None = Field(
        None, description="Spend limit in USD per budget period; null: no budget."
    )
    budget_duration: str | None = Field(
        None,
        description="daily, weekly, monthly or total (also 1d, 7d, 1w, 30d, 1mo); "
        "monthly when max_budget is set without it.",
    )
    metadata: dict[str, Any] | None = Field(None, description="Free-form JSON object.")
    allowed_ips: list[Cidr] | None = Field(
        None,
        max_length=MAX_ALLOWED_IPS,
        description="Client networks (CIDR, e.g. 10.0.0.0/8) allowed to use it; "
        "empty/null: anywhere.",
    )

    @field_validator("budget_duration")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        return None if value is None else budget_period(value)


class KeyFields(Limits):
    models: list[Pattern] | None = Field(
        None, description="Model names or glob patterns the key may use; empty/null: all."
    )
    duration: str | None = Field(
        None, description="Expiry: 30d, 12h, 2w, or an ISO 8601 date; null: never."
    )
    partner: Ref | None = Field(None, description="Owning partner (name or id); null: none.")
    team_id: Ref | None = Field(None, description="Alias of partner (LiteLLM).")


class GenerateKey(KeyFields):
    key_alias: Name = Field(description="Unique key name.")
    key: Secret | None = Field(
        None, description="Import this existing key value instead of generating one."
    )


class UpdateKey(KeyFields):
    key_id: Ref | None = Field(None, description="Identifies the key.")
    key: Secret | None = Field(None, description="Identifies the key by its value.")
    key_alias: Name | None = Field(
        None,
        description="Identifies the key; with key_id or key given instead, renames it.",
    )


class DeleteKeys(Strict):
    key_aliases: list[Ref] = Field(default_factory=list)
    key_ids: list[Ref] = Field(default_factory=list)
    keys: list[Secret] = Field(default_factory=list)


class KeyRef(Strict):
    key_alias: Ref | None = None
    key_id: Ref | None = None
    key: Secret | None = None


class RegenerateKey(KeyRef):
    grace_period: int = Field(
        0,
        ge=0,
        le=MAX_GRACE_SECONDS,
        description="Seconds the old key keeps working beside the new one; 0: it stops now.",
    )


class KeyListQuery(Strict):
    partner: Ref | None = Field(None, description="Only this partner's keys (name or id).")


class NewPartner(Limits):
    name: Name = Field(description="Unique partner name.")
    weight: Weight = Field(1.0, description="Share of queued capacity relative to others.")


class PartnerRef(Strict):
    partner: Ref = Field(description="The partner's name or id.")


class UpdatePartner(Limits):
    partner: Ref = Field(description="The partner's name or id.")
    name: Name | None = Field(None, description="A new unique name.")
    weight: Weight | None = Field(None, description="Share of queued capacity.")


class UsageQuery(Strict):
    group_by: str = Field(
        ",".join(DEFAULT_GROUP_BY),
        description="Comma-separated: partner, key, model, day.",
    )
    since: str | None = Field(None, description="From this ISO date/date-time (UTC).")
    until: str | None = Field(
        None, description="Up to this ISO date/date-time (UTC), exclusive; a date is included."
    )
    partner: Ref | None = Field(None, description="Only this partner (name or id).")
    key: Ref | None = Field(None, description="Only this key (name or id).")


class AuditListQuery(Strict):
    actor: Ref | None = Field(None, description="Only this actor (an admin token's name).")
    action: Ref | None = Field(
        None, description="Only this action (key.generate), or a prefix ending in * (key.*)."
    )
    target_id: Ref | None = Field(None, description="Only actions on this id or name.")
    since: str | None = Field(None, description="From this ISO date/date-time (UTC).")
    until: str | None = Field(
        None, description="Up to this ISO date/date-time (UTC), exclusive; a date is included."
    )
    # Query values arrive as text: these two are parsed leniently ("100" -> 100).
    limit: int = Field(100, ge=1, le=MAX_AUDIT_PAGE, strict=False, description="Entries per page.")
    cursor: int | None = Field(
        None,
        ge=1,
        strict=False,
        description="next_cursor of the previous page: the entries older than it.",
    )

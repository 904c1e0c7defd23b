"""What an audit entry may say about an admin change (see :mod:`sluicegate.store.audit`):
shared by the admin API (``api/admin/auditor.py``) and the CLI (``cli_audit_trail.py``), so
both record the same fields under the same no-secrets rule. Ids and names only:

- ``target_id``: the first id-like field of the answer (``key_id``, ``partner_id`` ...),
  else of the request; never a field holding a secret (``key``, ``token``, ``api_key`` ...);
- ``detail.fields``: the names of the request's fields; ``detail.values``: values of the
  fields on :data:`SAFE_VALUE_FIELDS` only (limits, budgets, models, networks ...).

Kept apart from the admin API's modules so the CLI can use it without importing them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

from pydantic import BaseModel

__all__ = ["SAFE_VALUE_FIELDS", "describe", "find_target"]

# Request fields whose values are recorded (others: the name only). Values of anything
# that may hold a secret or free-form text (key, token, api_key, secret, metadata ...) never
# are: this list names fields, it does not try to recognise secrets.
SAFE_VALUE_FIELDS: Final = frozenset(
    {
        "key_id",
        "key_ids",
        "key_alias",
        "key_aliases",
        "partner",
        "team_id",
        "name",
        "weight",
        "models",
        "duration",
        "rpm_limit",
        "tpm_limit",
        "max_parallel_requests",
        "max_budget",
        "budget_duration",
        "allowed_ips",
        "grace_period",
        "provider",
        "model_name",
        "deployment_id",
    }
)
# Answer fields, then request fields, that name what was acted on (first present wins).
_RESULT_IDS: Final = (
    "key_id",
    "partner_id",
    "deployment_id",
    "deleted_keys",
    "deleted_partner",
    "id",
    "name",
)
_REQUEST_IDS: Final = ("key_id", "partner", "team_id", "key_alias", "name", "deployment_id")
_MAX_FIELDS: Final = 50
_MAX_NAME: Final = 64
_MAX_TEXT: Final = 200
_MAX_ITEMS: Final = 20


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return value


def _short(value: Any) -> Any:
    """A bounded copy of a safe value (lists cut to 20 items, text to 200 characters)."""
    if isinstance(value, str):
        return value[:_MAX_TEXT]
    if isinstance(value, list | tuple):
        return [_short(item) for item in list(value)[:_MAX_ITEMS]]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return str(value)[:_MAX_TEXT]


def _id_text(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return ",".join(value)
    return None


def find_target(argument: Any, result: Any) -> str | None:
    """The id or name of what a request acted on, from the answer, else the request."""
    for source, names in ((_plain(result), _RESULT_IDS), (_plain(argument), _REQUEST_IDS)):
        if not isinstance(source, Mapping):
            continue
        for name in names:
            found = _id_text(source.get(name))
            if found is not None:
                return found
    return None


def describe(fields: Iterable[str], argument: Any) -> dict[str, Any]:
    """``{"fields": [...], "values": {...}}`` for a request (see the module docstring)."""
    names = sorted({str(name)[:_MAX_NAME] for name in fields})[:_MAX_FIELDS]
    detail: dict[str, Any] = {"fields": names}
    data = _plain(argument)
    if isinstance(data, Mapping):
        values = {n: _short(data[n]) for n in names if n in SAFE_VALUE_FIELDS and n in data}
        if values:
            detail["values"] = values
    return detail

"""Field validation shared by the gateway-key and partner repositories.

Limits: ``rpm``, ``tpm``, ``max_parallel`` are an int >= 1 or ``None`` (no limit);
``budget_usd`` a number from 0 to :data:`MAX_BUDGET_USD` or ``None``; ``budget_period`` one of
:data:`BUDGET_PERIODS` or ``None``. A budget without a period gets ``"monthly"``; a period
without a budget is refused. ``weight`` (partners) is a number from :data:`MIN_WEIGHT` to
:data:`MAX_WEIGHT`.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

__all__ = [
    "BUDGET_PERIODS",
    "DEFAULT_BUDGET_PERIOD",
    "LIMIT_FIELDS",
    "MAX_ALLOWED_IPS",
    "MAX_BUDGET_USD",
    "MAX_NAME",
    "MAX_WEIGHT",
    "MIN_WEIGHT",
    "Stamper",
    "aware",
    "check_allowed_ips",
    "check_limits",
    "check_models",
    "check_name",
    "check_weight",
    "json_dict",
    "merge_limits",
]

BUDGET_PERIODS: Final = ("daily", "weekly", "monthly", "total")
DEFAULT_BUDGET_PERIOD: Final = "monthly"
LIMIT_FIELDS: Final = ("rpm", "tpm", "max_parallel", "budget_usd", "budget_period")
MAX_NAME: Final = 200
_INT32_MAX: Final = 2**31 - 1
# Budgets are counted in nano-USD integers: a billion dollars keeps them far inside 64 bits
# (a larger finite float, such as 1e308, overflowed when the key table was loaded).
MAX_BUDGET_USD: Final = 1e9
# Weights are relative shares (the fair queue divides by them): a million to one is plenty,
# and the bounds keep 1/weight finite.
MIN_WEIGHT: Final = 1e-3
MAX_WEIGHT: Final = 1e6
# An allow-list is checked on every request of the key: a hundred networks is plenty (use a
# wider prefix for more), and the bound keeps the check cheap.
MAX_ALLOWED_IPS: Final = 100
_MAX_CIDR_TEXT: Final = 64


def check_name(name: Any, what: str, id_pattern: re.Pattern[str], id_shape: str) -> str:
    """A valid key or partner name: 1-200 characters, no outer spaces, not id-shaped."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME or name != name.strip():
        raise ValueError(f"{what} name must be 1-{MAX_NAME} characters without outer spaces")
    if id_pattern.fullmatch(name):
        raise ValueError(f"{what} name must not look like a {what} id ({id_shape})")
    if _has_control(name):  # names are printed by the CLI and written to logs
        raise ValueError(f"{what} name must not contain control characters")
    return name


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text)


def aware(value: datetime | None, what: str) -> datetime | None:
    """``value`` in UTC; a naive datetime raises :class:`ValueError`."""
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")
    return value.astimezone(UTC)


def json_dict(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A plain JSON-compatible copy of ``metadata``, as it will read back from the database."""
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ValueError("metadata must be a mapping")
    try:
        copy = json.loads(json.dumps(dict(metadata or {})))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON-serialisable: {exc}") from None
    if not isinstance(copy, dict):  # pragma: no cover - dict() in, dict out
        raise ValueError("metadata must be a mapping")
    return copy


class Stamper:
    """``now`` (UTC), strictly later than the previous stamp it gave (even within a tick)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: datetime | None = None

    def __call__(self) -> datetime:
        now = datetime.now(UTC)
        if self._last is not None and now <= self._last:
            now = self._last + timedelta(microseconds=1)
        self._last = now
        return now


def _count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _INT32_MAX:
        raise ValueError(f"{name} must be an integer from 1 to {_INT32_MAX} (or unset)")
    return int(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def check_limits(
    *,
    rpm: Any = None,
    tpm: Any = None,
    max_parallel: Any = None,
    budget_usd: Any = None,
    budget_period: Any = None,
) -> dict[str, Any]:
    """The validated, normalised limit fields (all of :data:`LIMIT_FIELDS`)."""
    budget: float | None = None
    if budget_usd is not None:
        budget = _number(budget_usd)
        if budget is None or not 0 <= budget <= MAX_BUDGET_USD:
            raise ValueError(
                f"budget_usd must be a number from 0 to {MAX_BUDGET_USD:.0f} (or unset)"
            )
    if budget_period is not None and budget_period not in BUDGET_PERIODS:
        raise ValueError(f"budget_period must be one of {', '.join(BUDGET_PERIODS)} (or unset)")
    if budget is None and budget_period is not None:
        raise ValueError("budget_period needs budget_usd")
    if budget is not None and budget_period is None:
        budget_period = DEFAULT_BUDGET_PERIOD
    return {
        "rpm": _count("rpm", rpm),
        "tpm": _count("tpm", tpm),
        "max_parallel": _count("max_parallel", max_parallel),
        "budget_usd": budget,
        "budget_period": budget_period,
    }


def merge_limits(current: Any, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The limit fields of record ``current`` after applying the partial ``changes``.

    Clearing ``budget_usd`` (``None``) without naming ``budget_period`` clears the period too.
    """
    merged = {name: getattr(current, name) for name in LIMIT_FIELDS}
    merged.update({name: changes[name] for name in LIMIT_FIELDS if name in changes})
    if "budget_usd" in changes and changes["budget_usd"] is None and "budget_period" not in changes:
        merged["budget_period"] = None
    return check_limits(**merged)


def check_models(models: Any) -> tuple[str, ...]:
    """A key's model patterns: a sequence (not a string) of non-empty strings."""
    if isinstance(models, str | bytes | Mapping) or not all(
        isinstance(m, str) and m and not _has_control(m) for m in models
    ):
        raise ValueError(
            "models must be a sequence of non-empty model-name patterns without control characters"
        )
    return tuple(models)


def check_weight(weight: Any) -> float:
    number = _number(weight)
    if number is None or not MIN_WEIGHT <= number <= MAX_WEIGHT:
        raise ValueError(f"weight must be a number from {MIN_WEIGHT} to {MAX_WEIGHT:.0f}")
    return number


def check_allowed_ips(value: Any) -> tuple[str, ...]:
    """An IP allow-list: a sequence (not a string) of at most :data:`MAX_ALLOWED_IPS`
    networks in CIDR notation (a bare address is its own /32 or /128), normalised by
    :mod:`ipaddress` and without duplicates. Host bits set (``10.0.0.5/8``) are refused
    rather than silently widened. Empty means no restriction."""
    if value is None:
        return ()
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, list | tuple):
        raise ValueError("allowed_ips must be a list of CIDR networks (e.g. 10.0.0.0/8)")
    if len(value) > MAX_ALLOWED_IPS:
        raise ValueError(f"allowed_ips takes at most {MAX_ALLOWED_IPS} networks")
    networks: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item or len(item) > _MAX_CIDR_TEXT:
            raise ValueError("allowed_ips entries must be CIDR networks (e.g. 10.0.0.0/8)")
        try:
            network = str(ipaddress.ip_network(item.strip()))
        except ValueError:
            shown = item[:_MAX_CIDR_TEXT] if not _has_control(item) else "(unprintable)"
            raise ValueError(
                f"allowed_ips entry {shown!r} is not a CIDR network with its host bits clear"
                " (e.g. 10.0.0.0/8 or 2001:db8::/32)"
            ) from None
        if network not in networks:
            networks.append(network)
    return tuple(networks)

"""Creating, importing, regenerating and revoking gateway keys: shared by the CLI and the
admin API.

Also the vocabulary both front ends share for limits and budgets: budget periods (with
the LiteLLM-style aliases ``1d``, ``7d``, ``30d`` ...) and expiry durations.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sluicegate.policy.keys import check_imported_key, generate_key, hash_key, key_hint
from sluicegate.settings import Settings
from sluicegate.store.keys import KeyRecord, KeyStore

PEPPER_SECRET_NAME = "key_hash_pepper"  # noqa: S105 (a row name, not a secret)
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

BUDGET_PERIODS = ("daily", "weekly", "monthly", "total")
_PERIOD_ALIASES = {
    **{p: p for p in BUDGET_PERIODS},
    "day": "daily",
    "1d": "daily",
    "24h": "daily",
    "week": "weekly",
    "7d": "weekly",
    "1w": "weekly",
    "month": "monthly",
    "30d": "monthly",
    "1mo": "monthly",
    "lifetime": "total",
}


def budget_period(text: str) -> str:
    """``daily|weekly|monthly|total``, also from ``1d``, ``7d``/``1w``, ``30d``/``1mo``."""
    period = _PERIOD_ALIASES.get(text.strip().lower())
    if period is None:
        raise ValueError(
            f"{text[:40]!r} is not a budget period: use daily, weekly, monthly or total "
            "(or 1d, 7d, 1w, 30d, 1mo)"
        )
    return period


async def key_pepper(settings: Settings, store: KeyStore) -> bytes:
    """The server secret keyed into gateway-key hashes (config first, else the database)."""
    if settings.key_hash_secret is not None:
        return settings.key_hash_secret.reveal().encode()
    value = await store.get_or_create_secret(PEPPER_SECRET_NAME, lambda: secrets.token_urlsafe(32))
    return value.encode()


def parse_expiry(text: str, now: datetime | None = None) -> datetime:
    """``30d``, ``12h``, ``2w``, ``90m`` from now, or an ISO 8601 date/time (UTC if naive)."""
    now = now or datetime.now(UTC)
    match = _DURATION.match(text.strip().lower())
    if match:
        amount = int(match.group(1))
        if amount <= 0:
            raise ValueError("the duration must be positive")
        try:
            return now + timedelta(seconds=amount * _UNIT_SECONDS[match.group(2)])
        except OverflowError:  # past year 9999, or more seconds than timedelta holds
            raise ValueError(f"{text!r} reaches past the year 9999") from None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30d, 12h) nor an ISO date") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= now:
        raise ValueError(f"{text!r} is in the past")
    try:
        return when.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:00-05:00 is in the year 10000 in UTC
        raise ValueError(f"{text!r} reaches past the year 9999") from None


async def create_key(
    store: KeyStore,
    pepper: bytes,
    *,
    name: str,
    models: Sequence[str] = (),
    expires_at: datetime | None = None,
    value: str | None = None,
    partner_id: str | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    max_parallel: int | None = None,
    budget_usd: float | None = None,
    budget_period: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    allowed_ips: Sequence[str] = (),
) -> tuple[KeyRecord, str]:
    """Store a new key (generated, or ``value`` imported after a strength check) and
    return its record and the key itself, which is not kept anywhere.

    ``partner_id`` must be a partner's id (resolve names with ``PartnerStore.get`` first).
    A budget without a period is monthly.
    """
    if value is not None:
        check_imported_key(value)
        key = value
    else:
        key = generate_key()
    record = await store.create(
        name=name,
        key_hash=hash_key(pepper, key),
        key_hint=key_hint(key),
        models=list(models),
        expires_at=expires_at,
        metadata=metadata,
        partner_id=partner_id,
        rpm=rpm,
        tpm=tpm,
        max_parallel=max_parallel,
        budget_usd=budget_usd,
        budget_period=budget_period,
        allowed_ips=allowed_ips,
    )
    return record, key


async def regenerate_key(
    store: KeyStore, pepper: bytes, name_or_id: str, grace: timedelta = timedelta(0)
) -> tuple[KeyRecord, str]:
    """Give a key a freshly generated secret and return its record and the new key (shown
    once). The old key keeps working for ``grace``; the key keeps its id, name, limits and
    history."""
    key = generate_key()
    record = await store.regenerate(
        name_or_id, key_hash=hash_key(pepper, key), key_hint=key_hint(key), grace=grace
    )
    return record, key

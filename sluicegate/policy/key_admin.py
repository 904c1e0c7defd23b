"""Creating, importing and revoking gateway keys: shared by the CLI and the admin API."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sluicegate.policy.keys import check_imported_key, generate_key, hash_key, key_hint
from sluicegate.settings import Settings
from sluicegate.store.keys import KeyRecord, KeyStore

PEPPER_SECRET_NAME = "key_hash_pepper"  # noqa: S105 (a row name, not a secret)
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


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
        return now + timedelta(seconds=amount * _UNIT_SECONDS[match.group(2)])
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30d, 12h) nor an ISO date") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= now:
        raise ValueError(f"{text!r} is in the past")
    return when.astimezone(UTC)


async def create_key(
    store: KeyStore,
    pepper: bytes,
    *,
    name: str,
    models: Sequence[str] = (),
    expires_at: datetime | None = None,
    value: str | None = None,
) -> tuple[KeyRecord, str]:
    """Store a new key (generated, or ``value`` imported after a strength check) and
    return its record and the key itself, which is not kept anywhere."""
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
    )
    return record, key

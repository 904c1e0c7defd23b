"""``sluicegate keys create|list|update|revoke``: gateway keys from the command line.

``keys create`` prints the key alone on stdout so scripts can capture it; everything else
goes to stderr. A key is shown once and never again: ``keys list`` shows hints only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sluicegate.cli_common import ConfigOption, fail, run_async, settings_for
from sluicegate.cli_limits import (
    BudgetOption,
    BudgetPeriodOption,
    MaxParallelOption,
    RpmOption,
    Stores,
    TpmOption,
    budget_text,
    limit_changes,
    limit_fields,
    limits_text,
    opened_stores,
    option_message,
)
from sluicegate.policy.key_admin import create_key, key_pepper, parse_expiry
from sluicegate.policy.keys import WeakKeyError
from sluicegate.store.keys import DuplicateKeyError, KeyNotFoundError, KeyRecord
from sluicegate.store.partners import PartnerNotFoundError

keys_app = typer.Typer(help="Create, list, update and revoke gateway keys.", no_args_is_help=True)

PartnerOption = Annotated[
    str | None,
    typer.Option(
        "--partner", metavar="PARTNER", help="The partner (name or id) that owns the key."
    ),
]
ModelsOption = Annotated[
    str | None,
    typer.Option(help="Comma-separated model names or patterns this key may use (default: all)."),
]


def _status(record: KeyRecord, now: datetime) -> str:
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    return "active"


def _models(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


async def _partner_id(stores: Stores, partner: str) -> str:
    try:
        return (await stores.partners.get(partner)).id
    except PartnerNotFoundError:
        fail(f"--partner: no partner named or with id {partner[:80]!r}")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="Unique name (partner or app).")],
    config: ConfigOption = None,
    models: ModelsOption = None,
    expires: Annotated[
        str | None,
        typer.Option(help="Expiry: a duration such as 30d, 12h, 2w, or an ISO 8601 date."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            help="Import this existing key value (migration from another gateway). "
            "Weak values are refused.",
        ),
    ] = None,
    partner: PartnerOption = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_parallel: MaxParallelOption = None,
    budget: BudgetOption = None,
    budget_period: BudgetPeriodOption = None,
) -> None:
    """Create a gateway key and print it (alone, on stdout). It is shown only once."""
    settings = settings_for(config, lenient=True)
    allowed = _models(models) if models else []
    try:
        expires_at = parse_expiry(expires) if expires else None
    except ValueError as exc:
        fail(f"--expires: {exc}")
    limits = limit_fields(
        rpm=rpm, tpm=tpm, max_parallel=max_parallel, budget=budget, period=budget_period
    )

    async def work() -> tuple[KeyRecord, str]:
        async with opened_stores(settings) as stores:
            partner_id = await _partner_id(stores, partner) if partner else None
            pepper = await key_pepper(settings, stores.keys)
            return await create_key(
                stores.keys,
                pepper,
                name=name,
                models=allowed,
                expires_at=expires_at,
                value=key,
                partner_id=partner_id,
                **limits,
            )

    try:
        record, value = run_async(work())
    except WeakKeyError as exc:
        fail(f"--key: {exc}")
    except DuplicateKeyError as exc:
        fail(str(exc))
    except PartnerNotFoundError:  # deleted meanwhile
        fail(f"--partner: no partner named or with id {partner!r}")
    except ValueError as exc:
        fail(option_message(exc))
    typer.echo(value)
    typer.echo(f"created key {record.name!r} ({record.id}); it will not be shown again", err=True)


def _key_row(record: KeyRecord, partner_names: dict[str, str], now: datetime) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "hint": record.key_hint,
        "models": list(record.models),
        "status": _status(record, now),
        "created_at": record.created_at.isoformat(),
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "partner_id": record.partner_id,
        "partner": partner_names.get(record.partner_id) if record.partner_id else None,
        "rpm": record.rpm,
        "tpm": record.tpm,
        "max_parallel": record.max_parallel,
        "budget_usd": record.budget_usd,
        "budget_period": record.budget_period,
    }


@keys_app.command("list")
def keys_list(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List keys (names, hints, models, status, partner, limits, budget). Never prints a key."""
    settings = settings_for(config, lenient=True)

    async def work() -> tuple[list[KeyRecord], dict[str, str]]:
        async with opened_stores(settings) as stores:
            partners = {p.id: p.name for p in await stores.partners.list()}
            return await stores.keys.list(), partners

    records, partner_names = run_async(work())
    now = datetime.now(UTC)
    if as_json:
        rows = [_key_row(r, partner_names, now) for r in records]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(
        "id", "name", "hint", "models", "status", "partner", "limits", "budget",
        "created (UTC)", "expires (UTC)",
    )  # fmt: skip
    for r in records:
        table.add_row(
            r.id,
            r.name,
            r.key_hint,
            ",".join(r.models) or "*",
            _status(r, now),
            partner_names.get(r.partner_id, r.partner_id) if r.partner_id else "-",
            limits_text(r.rpm, r.tpm, r.max_parallel),
            budget_text(r.budget_usd, r.budget_period),
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.expires_at:%Y-%m-%d %H:%M}" if r.expires_at else "-",
        )
    Console().print(table)


@keys_app.command("update")
def keys_update(
    name_or_id: Annotated[str, typer.Argument(help="The key's name or id.")],
    config: ConfigOption = None,
    rename: Annotated[
        str | None, typer.Option("--rename", metavar="NAME", help="A new unique name.")
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(help='Comma-separated model names or patterns; "" allows all models.'),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(help="New expiry: 30d, 12h, 2w, an ISO 8601 date, or never."),
    ] = None,
    partner: Annotated[
        str | None,
        typer.Option(
            "--partner", metavar="PARTNER", help='Move the key to this partner; "" detaches it.'
        ),
    ] = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_parallel: MaxParallelOption = None,
    budget: BudgetOption = None,
    budget_period: BudgetPeriodOption = None,
) -> None:
    """Change a key's models, expiry, partner, limits or budget (only the options given).

    Running gateways apply the change within server.key_sync_interval.
    """
    settings = settings_for(config, lenient=True)
    changes = limit_changes(
        rpm=rpm, tpm=tpm, max_parallel=max_parallel, budget=budget, period=budget_period
    )
    if rename is not None:
        changes["name"] = rename
    if models is not None:
        changes["models"] = _models(models)
    if expires is not None:
        try:
            never = expires.strip().lower() == "never"
            changes["expires_at"] = None if never else parse_expiry(expires)
        except ValueError as exc:
            fail(f"--expires: {exc}")
    if not changes and partner is None:
        fail("nothing to change: give at least one option (see --help)")

    async def work() -> KeyRecord:
        async with opened_stores(settings) as stores:
            if partner is not None:
                changes["partner_id"] = (
                    await _partner_id(stores, partner) if partner.strip() else None
                )
            return await stores.keys.update(name_or_id, changes)

    try:
        record = run_async(work())
    except KeyNotFoundError:
        fail(f"no key named or with id {name_or_id[:80]!r}")
    except DuplicateKeyError as exc:
        fail(str(exc))
    except PartnerNotFoundError:  # deleted meanwhile
        fail(f"--partner: no partner named or with id {partner!r}")
    except ValueError as exc:
        fail(option_message(exc))
    typer.echo(f"updated key {record.name!r} ({record.id})", err=True)


@keys_app.command("revoke")
def keys_revoke(
    name_or_id: Annotated[str, typer.Argument(help="The key's name or id.")],
    config: ConfigOption = None,
) -> None:
    """Revoke a key. Running gateways stop accepting it within server.key_sync_interval."""
    settings = settings_for(config, lenient=True)

    async def work() -> KeyRecord:
        async with opened_stores(settings) as stores:
            return await stores.keys.revoke(name_or_id)

    try:
        record = run_async(work())
    except KeyNotFoundError:
        fail(f"no key named or with id {name_or_id!r}")
    typer.echo(f"revoked key {record.name!r} ({record.id})", err=True)

"""``sluicegate keys create|list|update|revoke|regenerate|block|unblock``: gateway keys from
the command line.

``keys create`` and ``keys regenerate`` print the key alone on stdout so scripts can
capture it; everything else goes to stderr. A key is shown once and never again: ``keys
list`` shows hints only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sluicegate.cli_audit_trail import CliChange, api_fields, audited, key_ref
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
from sluicegate.cli_signing_keys import signing_app
from sluicegate.policy.key_admin import create_key, key_pepper, parse_expiry, regenerate_key
from sluicegate.policy.keys import WeakKeyError
from sluicegate.store.keys import DuplicateKeyError, KeyNotFoundError, KeyRecord
from sluicegate.store.partners import PartnerNotFoundError

keys_app = typer.Typer(
    help="Create, list, update, regenerate, block and revoke gateway keys.", no_args_is_help=True
)
keys_app.add_typer(signing_app, name="signing-key")

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
AllowedIpOption = Annotated[
    list[str] | None,
    typer.Option(
        "--allowed-ip",
        metavar="CIDR",
        help="Client network allowed (e.g. 10.0.0.0/8); repeat for more. On update the "
        'list given replaces the old one; --allowed-ip "" allows any address again.',
    ),
]
NameOrIdArgument = Annotated[str, typer.Argument(help="The key's name or id.")]
# As /key/regenerate: a week at most.
MAX_GRACE_SECONDS = 7 * 86400


def allowed_ips(values: list[str] | None) -> list[str] | None:
    """The networks given with --allowed-ip (None: option not given; [] after ``""``)."""
    if values is None:
        return None
    return [v.strip() for v in values if v.strip()]


def _status(record: KeyRecord, now: datetime) -> str:
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    if record.blocked:
        return "blocked"
    return "active"


def _models(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


async def _partner_id(stores: Stores, partner: str) -> str:
    """Raises PartnerNotFoundError: the command reports it (and the audit log records it)."""
    return (await stores.partners.get(partner)).id


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
    allowed_ip: AllowedIpOption = None,
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
    given: dict[str, Any] = {
        "key_alias": name,
        "models": allowed if models is not None else None,
        "duration": expires,
        "partner": partner,
        "allowed_ips": allowed_ips(allowed_ip),
    }
    request = {k: v for k, v in given.items() if v is not None}
    if key is not None:
        request["key"] = None  # imported: the field is recorded, never its value
    change = CliChange("key.generate", "key", {**request, **api_fields(limits)}, ref=name)

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
                allowed_ips=allowed_ips(allowed_ip) or [],
                **limits,
            )

    try:
        record, value = audited(settings, change, work(), lambda done: done[0].id)
    except WeakKeyError as exc:
        fail(f"--key: {exc}")
    except DuplicateKeyError as exc:
        fail(str(exc))
    except PartnerNotFoundError:
        fail(f"--partner: no partner named or with id {(partner or '')[:80]!r}")
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
        "blocked": record.blocked,
        "allowed_ips": list(record.allowed_ips),
        "previous_key_expires_at": record.previous_key_expires_at.isoformat()
        if record.previous_key_valid(now) and record.previous_key_expires_at
        else None,
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
    allowed_ip: AllowedIpOption = None,
) -> None:
    """Change a key's models, expiry, partner, limits, budget or allowed networks (only the
    options given).

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
    if allowed_ip is not None:
        changes["allowed_ips"] = allowed_ips(allowed_ip)
    if expires is not None:
        try:
            never = expires.strip().lower() == "never"
            changes["expires_at"] = None if never else parse_expiry(expires)
        except ValueError as exc:
            fail(f"--expires: {exc}")
    if not changes and partner is None:
        fail("nothing to change: give at least one option (see --help)")
    request: dict[str, Any] = key_ref(name_or_id)
    for field, value in api_fields(changes).items():
        if field == "name":  # the admin API renames a key named by id with key_alias
            field = "key_alias" if "key_id" in request else "rename"
        request[field] = value
    if partner is not None:
        request["partner"] = partner.strip() or None
    change = CliChange("key.update", "key", request, ref=name_or_id)

    async def work() -> KeyRecord:
        async with opened_stores(settings) as stores:
            if partner is not None:
                changes["partner_id"] = (
                    await _partner_id(stores, partner) if partner.strip() else None
                )
            return await stores.keys.update(name_or_id, changes)

    try:
        record = audited(settings, change, work(), lambda done: done.id)
    except KeyNotFoundError:
        fail(f"no key named or with id {name_or_id[:80]!r}")
    except DuplicateKeyError as exc:
        fail(str(exc))
    except PartnerNotFoundError:
        fail(f"--partner: no partner named or with id {(partner or '')[:80]!r}")
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

    # As /key/delete, which takes lists of names or ids.
    ref_field = "key_ids" if "key_id" in key_ref(name_or_id) else "key_aliases"
    change = CliChange("key.delete", "key", {ref_field: [name_or_id]}, ref=name_or_id)

    async def work() -> KeyRecord:
        async with opened_stores(settings) as stores:
            return await stores.keys.revoke(name_or_id)

    try:
        record = audited(settings, change, work(), lambda done: done.id)
    except KeyNotFoundError:
        fail(f"no key named or with id {name_or_id!r}")
    typer.echo(f"revoked key {record.name!r} ({record.id})", err=True)


@keys_app.command("regenerate")
def keys_regenerate(
    name_or_id: NameOrIdArgument,
    config: ConfigOption = None,
    grace: Annotated[
        int,
        typer.Option(
            "--grace",
            metavar="SECONDS",
            min=0,
            max=MAX_GRACE_SECONDS,
            help="Seconds the old key keeps working beside the new one (default 0: it stops "
            "at once).",
        ),
    ] = 0,
) -> None:
    """Give a key a new secret and print it (alone, on stdout; shown only once). The key
    keeps its name, id, limits and history."""
    settings = settings_for(config, lenient=True)
    request = {**key_ref(name_or_id), "grace_period": grace}
    # A revoked key (ValueError) is a conflict, as on /key/regenerate.
    change = CliChange("key.regenerate", "key", request, ref=name_or_id, invalid_status=409)

    async def work() -> tuple[KeyRecord, str]:
        async with opened_stores(settings) as stores:
            pepper = await key_pepper(settings, stores.keys)
            return await regenerate_key(stores.keys, pepper, name_or_id, timedelta(seconds=grace))

    try:
        record, value = audited(settings, change, work(), lambda done: done[0].id)
    except KeyNotFoundError:
        fail(f"no key named or with id {name_or_id[:80]!r}")
    except (DuplicateKeyError, ValueError) as exc:
        fail(str(exc))
    typer.echo(value)
    ends = record.previous_key_expires_at
    after = (
        f"the old key works until {ends:%Y-%m-%d %H:%M:%S} UTC"
        if ends is not None
        else "the old key no longer works"
    )
    typer.echo(f"regenerated key {record.name!r} ({record.id}); {after}", err=True)


def _set_blocked(name_or_id: str, config: ConfigOption, blocked: bool) -> None:
    settings = settings_for(config, lenient=True)
    action = "key.block" if blocked else "key.unblock"
    change = CliChange(action, "key", key_ref(name_or_id), ref=name_or_id, invalid_status=409)

    async def work() -> KeyRecord:
        async with opened_stores(settings) as stores:
            return await stores.keys.set_blocked(name_or_id, blocked)

    try:
        record = audited(settings, change, work(), lambda done: done.id)
    except KeyNotFoundError:
        fail(f"no key named or with id {name_or_id[:80]!r}")
    except ValueError as exc:  # revoked
        fail(str(exc))
    verb = "blocked" if blocked else "unblocked"
    typer.echo(f"{verb} key {record.name!r} ({record.id})", err=True)


@keys_app.command("block")
def keys_block(name_or_id: NameOrIdArgument, config: ConfigOption = None) -> None:
    """Refuse a key until it is unblocked. Running gateways apply it within
    server.key_sync_interval."""
    _set_blocked(name_or_id, config, True)


@keys_app.command("unblock")
def keys_unblock(name_or_id: NameOrIdArgument, config: ConfigOption = None) -> None:
    """Accept a blocked key again."""
    _set_blocked(name_or_id, config, False)

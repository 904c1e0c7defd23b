"""``sluicegate partners create|list|update|delete``: partners (teams, tenants) own keys and
carry their own rate limits, budget and fair-queue weight (see docs/governance.md).

``partners create`` prints the partner id alone on stdout; messages go to stderr.
On ``update``, 0 removes a limit or the budget.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sluicegate.cli_audit_trail import CliChange, api_fields, audited
from sluicegate.cli_common import ConfigOption, fail, run_async, settings_for
from sluicegate.cli_keys import AllowedIpOption, allowed_ips
from sluicegate.cli_limits import (
    BudgetOption,
    BudgetPeriodOption,
    MaxParallelOption,
    RpmOption,
    TpmOption,
    budget_text,
    limit_changes,
    limit_fields,
    limits_text,
    opened_stores,
    option_message,
    positive_float,
)
from sluicegate.store.partners import (
    DuplicatePartnerError,
    PartnerInUseError,
    PartnerNotFoundError,
    PartnerRecord,
)

partners_app = typer.Typer(
    help="Create, list, update and delete partners (owners of keys, with limits and budgets).",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="The partner's name or id.")]
WeightOption = Annotated[
    str | None,
    typer.Option(
        "--weight", metavar="W", help="Share of queued capacity relative to others (default 1)."
    ),
]


def partner_row(record: PartnerRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "weight": record.weight,
        "rpm": record.rpm,
        "tpm": record.tpm,
        "max_parallel": record.max_parallel,
        "budget_usd": record.budget_usd,
        "budget_period": record.budget_period,
        "metadata": record.metadata,
        "allowed_ips": list(record.allowed_ips),
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


@partners_app.command("create")
def partners_create(
    name: Annotated[str, typer.Argument(help="Unique partner name.")],
    config: ConfigOption = None,
    weight: WeightOption = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_parallel: MaxParallelOption = None,
    budget: BudgetOption = None,
    budget_period: BudgetPeriodOption = None,
    allowed_ip: AllowedIpOption = None,
) -> None:
    """Create a partner and print its id (alone, on stdout)."""
    settings = settings_for(config, lenient=True)
    fields: dict[str, Any] = limit_fields(
        rpm=rpm, tpm=tpm, max_parallel=max_parallel, budget=budget, period=budget_period
    )
    fields["allowed_ips"] = allowed_ips(allowed_ip) or []
    if weight is not None:
        fields["weight"] = positive_float("--weight", weight)
    request = {"name": name, **api_fields(fields)}
    if allowed_ip is None:
        del request["allowed_ips"]  # not given
    change = CliChange("partner.new", "partner", request, ref=name)

    async def work() -> PartnerRecord:
        async with opened_stores(settings) as stores:
            return await stores.partners.create(name=name, **fields)

    try:
        record = audited(settings, change, work(), lambda done: done.id)
    except DuplicatePartnerError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(option_message(exc))
    typer.echo(record.id)
    typer.echo(f"created partner {record.name!r} ({record.id})", err=True)


@partners_app.command("list")
def partners_list(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List partners with their weight, limits, budget and number of keys (not revoked)."""
    settings = settings_for(config, lenient=True)

    async def work() -> tuple[list[PartnerRecord], dict[str, int]]:
        async with opened_stores(settings) as stores:
            counts: dict[str, int] = {}
            for key in await stores.keys.list(include_revoked=False):
                if key.partner_id:
                    counts[key.partner_id] = counts.get(key.partner_id, 0) + 1
            return await stores.partners.list(), counts

    records, counts = run_async(work())
    if as_json:
        rows = [{**partner_row(r), "keys": counts.get(r.id, 0)} for r in records]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "name", "weight", "limits", "budget", "keys", "created (UTC)")
    for r in records:
        table.add_row(
            r.id,
            r.name,
            f"{r.weight:g}",
            limits_text(r.rpm, r.tpm, r.max_parallel),
            budget_text(r.budget_usd, r.budget_period),
            str(counts.get(r.id, 0)),
            f"{r.created_at:%Y-%m-%d %H:%M}",
        )
    Console().print(table)


@partners_app.command("update")
def partners_update(
    name_or_id: NameArgument,
    config: ConfigOption = None,
    rename: Annotated[
        str | None, typer.Option("--rename", metavar="NAME", help="A new unique name.")
    ] = None,
    weight: WeightOption = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    max_parallel: MaxParallelOption = None,
    budget: BudgetOption = None,
    budget_period: BudgetPeriodOption = None,
    allowed_ip: AllowedIpOption = None,
) -> None:
    """Change a partner's weight, limits, budget or allowed networks (only the options
    given; 0 removes a limit or the budget). Running gateways apply it within
    server.key_sync_interval."""
    settings = settings_for(config, lenient=True)
    changes = limit_changes(
        rpm=rpm, tpm=tpm, max_parallel=max_parallel, budget=budget, period=budget_period
    )
    if weight is not None:
        changes["weight"] = positive_float("--weight", weight)
    if rename is not None:
        changes["name"] = rename
    if allowed_ip is not None:
        changes["allowed_ips"] = allowed_ips(allowed_ip)
    if not changes:
        fail("nothing to change: give at least one option (see --help)")
    request = {"partner": name_or_id, **api_fields(changes)}
    change = CliChange("partner.update", "partner", request, ref=name_or_id)

    async def work() -> PartnerRecord:
        async with opened_stores(settings) as stores:
            return await stores.partners.update(name_or_id, changes)

    try:
        record = audited(settings, change, work(), lambda done: done.id)
    except PartnerNotFoundError:
        fail(f"no partner named or with id {name_or_id[:80]!r}")
    except DuplicatePartnerError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(option_message(exc))
    typer.echo(f"updated partner {record.name!r} ({record.id})", err=True)


@partners_app.command("delete")
def partners_delete(name_or_id: NameArgument, config: ConfigOption = None) -> None:
    """Delete a partner. Refused while active keys belong to it: revoke or move them first."""
    settings = settings_for(config, lenient=True)
    change = CliChange("partner.delete", "partner", {"partner": name_or_id}, ref=name_or_id)

    async def work() -> PartnerRecord:
        async with opened_stores(settings) as stores:
            record = await stores.partners.get(name_or_id)
            await stores.partners.delete(record.id)
            return record

    try:
        record = audited(settings, change, work(), lambda done: done.id)
    except PartnerNotFoundError:
        fail(f"no partner named or with id {name_or_id[:80]!r}")
    except PartnerInUseError as exc:
        fail(str(exc), code=1)
    typer.echo(f"deleted partner {record.name!r} ({record.id})", err=True)

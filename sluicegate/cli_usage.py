"""``sluicegate usage``: requests, tokens and cost from the usage ledger, grouped.

Dates are ISO 8601, UTC unless an offset is given; a bare ``--until`` date includes that
day. ``--json`` prints ``{"rows": [...], "totals": {...}}`` (the admin API's
``/usage/report`` shape).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sluicegate.cli_common import (
    ConfigOption,
    SinceOption,
    UntilOption,
    fail,
    run_async,
    settings_for,
)
from sluicegate.cli_limits import opened_stores
from sluicegate.policy.usage_report import (
    DEFAULT_GROUP_BY,
    METRICS,
    parse_group_by,
    report_range,
    usage_report,
)
from sluicegate.store.keys import KeyNotFoundError
from sluicegate.store.partners import PartnerNotFoundError

_HEADINGS = {
    "requests": "requests",
    "errors": "errors",
    "input_tokens": "input tok",
    "output_tokens": "output tok",
    "cache_read_tokens": "cache read",
    "cache_write_tokens": "cache write",
    "cost_usd": "cost (USD)",
}


def usage(
    config: ConfigOption = None,
    by: Annotated[
        str,
        typer.Option(
            "--by", metavar="GROUPS", help="Comma-separated groupings: partner, key, model, day."
        ),
    ] = ",".join(DEFAULT_GROUP_BY),
    since: SinceOption = None,
    until: UntilOption = None,
    partner: Annotated[
        str | None, typer.Option(metavar="PARTNER", help="Only this partner (name or id).")
    ] = None,
    key: Annotated[
        str | None, typer.Option(metavar="KEY", help="Only this key (name or id).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Usage and cost per partner, key, model and day, with a totals row."""
    settings = settings_for(config, lenient=True)
    try:
        group_by = parse_group_by(by)
    except ValueError as exc:
        fail(f"--by: {exc}")
    try:
        start, stop = report_range(since, None)
    except ValueError as exc:
        fail(f"--since: {exc}")
    try:
        _, stop = report_range(None, until)
    except ValueError as exc:
        fail(f"--until: {exc}")
    if start is not None and stop is not None and stop <= start:
        fail("--until: must be later than --since")

    async def work() -> dict[str, Any]:
        async with opened_stores(settings) as stores:
            partner_id = key_id = None
            if partner is not None:
                try:
                    partner_id = (await stores.partners.get(partner)).id
                except PartnerNotFoundError:
                    fail(f"--partner: no partner named or with id {partner[:80]!r}")
            if key is not None:
                try:
                    key_id = (await stores.keys.get(key)).id
                except KeyNotFoundError:
                    fail(f"--key: no key named or with id {key[:80]!r}")
            return await usage_report(
                stores.ledger,
                group_by=group_by,
                since=start,
                until=stop,
                partner_id=partner_id,
                key_id=key_id,
            )

    report = run_async(work())
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    Console().print(_table(report))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.6f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(report: dict[str, Any]) -> Table:
    rows: list[dict[str, Any]] = report["rows"]
    groups = [name for name in (rows[0] if rows else {}) if name not in METRICS]
    table = Table(*groups, *(_HEADINGS[m] for m in METRICS), show_footer=False)
    for column in table.columns[len(groups) :]:
        column.justify = "right"
    totals = report["totals"]
    if not groups:  # totals only
        table.add_row(*(_cell(totals[m]) for m in METRICS), style="bold")
        return table
    for row in rows:
        table.add_row(*(_cell(row.get(g)) for g in groups), *(_cell(row[m]) for m in METRICS))
    table.add_section()
    label = ["total", *([""] * (len(groups) - 1))]
    table.add_row(*label, *(_cell(totals[m]) for m in METRICS), style="bold")
    return table

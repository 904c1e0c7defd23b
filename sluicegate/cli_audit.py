"""``sluicegate audit``: the audit log of admin actions, newest first.

Dates are ISO 8601, UTC unless an offset is given; a bare ``--until`` date includes that
day. ``--json`` prints a list of entries in the admin API's ``/audit/list`` shape.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from sluicegate.cli_common import (
    ConfigOption,
    SinceOption,
    UntilOption,
    fail,
    run_async,
    settings_for,
)
from sluicegate.policy.usage_report import report_range
from sluicegate.store.audit import MAX_AUDIT_PAGE, AuditEntry, AuditQuery, AuditStore
from sluicegate.store.db import create_engine
from sluicegate.store.startup import ensure_schema


def entry_row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "created_at": entry.created_at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "source_ip": entry.source_ip,
        "request_id": entry.request_id,
        "status": entry.status,
        "detail": entry.detail,
    }


def _printable(text: str | None) -> str:
    """Names come from admin requests: no control characters or rich markup reach the
    terminal."""
    if text is None:
        return "-"
    return escape("".join(c if c.isprintable() else "?" for c in text))


def audit(
    config: ConfigOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    actor: Annotated[
        str | None, typer.Option(metavar="NAME", help="Only this actor (admin token name).")
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(metavar="ACTION", help="Only this action (key.generate) or prefix (key.*)."),
    ] = None,
    target: Annotated[
        str | None, typer.Option(metavar="ID", help="Only actions on this id or name.")
    ] = None,
    limit: Annotated[
        int, typer.Option(min=1, max=MAX_AUDIT_PAGE, help="At most this many entries.")
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show admin actions (who, what, when, from where), newest first."""
    settings = settings_for(config, lenient=True)
    try:
        start, stop = report_range(since, until)
    except ValueError as exc:
        fail(str(exc))
    query = AuditQuery(
        actor=actor, action=action, target_id=target, since=start, until=stop, limit=limit
    )

    async def work() -> list[AuditEntry]:
        await ensure_schema(settings.database_url, auto_migrate=settings.migrate_on_start)
        engine: AsyncEngine = create_engine(settings.database_url)
        try:
            return await AuditStore(engine).list(query)
        finally:
            await engine.dispose()

    entries = run_async(work())
    if as_json:
        typer.echo(json.dumps([entry_row(e) for e in entries], indent=2))
        return
    table = Table("time (UTC)", "actor", "action", "target", "source", "status", "fields")
    for e in entries:
        fields = e.detail.get("fields")
        table.add_row(
            f"{e.created_at:%Y-%m-%d %H:%M:%S}",
            _printable(e.actor),
            _printable(e.action),
            _printable(f"{e.target_type}:{e.target_id}" if e.target_id else e.target_type),
            _printable(e.source_ip),
            str(e.status),
            _printable(",".join(map(str, fields)) if isinstance(fields, list) else None),
        )
    Console().print(table)

"""``sluicegate keys create|list|revoke``: gateway keys from the command line.

``keys create`` prints the key alone on stdout so scripts can capture it; everything else
goes to stderr. A key is shown once and never again: ``keys list`` shows hints only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sluicegate.cli_common import ConfigOption, fail, run_async, settings_for
from sluicegate.policy.key_admin import create_key, key_pepper, parse_expiry
from sluicegate.policy.keys import WeakKeyError
from sluicegate.settings import Settings
from sluicegate.store.db import create_engine
from sluicegate.store.keys import DuplicateKeyError, KeyNotFoundError, KeyRecord, KeyStore
from sluicegate.store.startup import ensure_schema

keys_app = typer.Typer(help="Create, list and revoke gateway keys.", no_args_is_help=True)


@asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[KeyStore]:
    await ensure_schema(settings.database_url, auto_migrate=settings.migrate_on_start)
    engine = create_engine(settings.database_url)
    try:
        yield KeyStore(engine)
    finally:
        await engine.dispose()


def _status(record: KeyRecord, now: datetime) -> str:
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    return "active"


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", help="Unique name (partner or app).")],
    config: ConfigOption = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated model names or patterns this key may use (default: all)."
        ),
    ] = None,
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
) -> None:
    """Create a gateway key and print it (alone, on stdout). It is shown only once."""
    settings = settings_for(config, lenient=True)
    allowed = [m.strip() for m in models.split(",") if m.strip()] if models else []
    try:
        expires_at = parse_expiry(expires) if expires else None
    except ValueError as exc:
        fail(f"--expires: {exc}")

    async def work() -> tuple[KeyRecord, str]:
        async with opened_store(settings) as store:
            pepper = await key_pepper(settings, store)
            return await create_key(
                store, pepper, name=name, models=allowed, expires_at=expires_at, value=key
            )

    try:
        record, value = run_async(work())
    except WeakKeyError as exc:
        fail(f"--key: {exc}")
    except DuplicateKeyError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc))
    typer.echo(value)
    typer.echo(f"created key {record.name!r} ({record.id}); it will not be shown again", err=True)


@keys_app.command("list")
def keys_list(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List keys (names, hints, models, status). Never prints a key."""
    settings = settings_for(config, lenient=True)

    async def work() -> list[KeyRecord]:
        async with opened_store(settings) as store:
            return await store.list()

    records = run_async(work())
    now = datetime.now(UTC)
    if as_json:
        rows = [
            {
                "id": r.id,
                "name": r.name,
                "hint": r.key_hint,
                "models": list(r.models),
                "status": _status(r, now),
                "created_at": r.created_at.isoformat(),
                "expires_at": r.expires_at.isoformat() if r.expires_at else None,
            }
            for r in records
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "name", "hint", "models", "status", "created (UTC)", "expires (UTC)")
    for r in records:
        table.add_row(
            r.id,
            r.name,
            r.key_hint,
            ",".join(r.models) or "*",
            _status(r, now),
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.expires_at:%Y-%m-%d %H:%M}" if r.expires_at else "-",
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    name_or_id: Annotated[str, typer.Argument(help="The key's name or id.")],
    config: ConfigOption = None,
) -> None:
    """Revoke a key. Running gateways stop accepting it within server.key_sync_interval."""
    settings = settings_for(config, lenient=True)

    async def work() -> KeyRecord:
        async with opened_store(settings) as store:
            return await store.revoke(name_or_id)

    try:
        record = run_async(work())
    except KeyNotFoundError:
        fail(f"no key named or with id {name_or_id!r}")
    typer.echo(f"revoked key {record.name!r} ({record.id})", err=True)

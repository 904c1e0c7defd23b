"""``sluicegate secrets generate-key|rotate|status``: the master keys that protect secrets
stored in the database (provider credentials, HMAC signing secrets); docs/security.md.

``generate-key`` prints a new key alone on stdout. ``rotate`` re-wraps every stored value
under the configured primary key (the old keys must still be configured, in
``secrets.previous_master_keys`` or below the first line of the key file) and exits 1 if
some value could not be opened. No command here ever prints a key or a secret it read.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from sluicegate.cli_audit_trail import CliChange, record_cli_change
from sluicegate.cli_common import ConfigOption, fail, run_async, settings_for
from sluicegate.crypto.envelope import Keyring, generate_master_key
from sluicegate.crypto.keyring_source import KeyringSource, MasterKeyMissing
from sluicegate.settings import Settings
from sluicegate.store.db import create_engine
from sluicegate.store.rotation import (
    SEALED_TABLES,
    RotationReport,
    rotate_sealed,
    sealed_key_usage,
)
from sluicegate.store.startup import ensure_schema

secrets_app = typer.Typer(
    help="Master keys for secrets stored in the database: generate, rotate, status.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def keyring_source(settings: Settings) -> KeyringSource:
    """The master-key source of ``settings``. Settings are read leniently (provider keys need
    not be set here), so a master key naming an unset variable arrives empty: say so."""
    secrets = settings.secrets
    for what, secret in (
        ("secrets.master_key", secrets.master_key),
        *(("secrets.previous_master_keys", s) for s in secrets.previous_master_keys),
    ):
        if secret is not None and not secret.reveal():
            fail(f"{what} refers to {secret.source}; set it in this environment")
    return KeyringSource(secrets)


def keyring_for(settings: Settings) -> Keyring:
    """The current keyring, or a one-line error (no key configured, unreadable key file)."""
    try:
        return keyring_source(settings).keyring()
    except MasterKeyMissing as exc:
        fail(str(exc))


@asynccontextmanager
async def opened_engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The schema migrated (if allowed), then an engine, disposed after."""
    await ensure_schema(settings.database_url, auto_migrate=settings.migrate_on_start)
    engine = create_engine(settings.database_url)
    try:
        yield engine
    finally:
        await engine.dispose()


@secrets_app.command("generate-key")
def secrets_generate_key() -> None:
    """Print a new random master key (base64, 32 bytes) alone on stdout."""
    typer.echo(generate_master_key())


def _report_rows(report: RotationReport) -> dict[str, Any]:
    return {
        "primary_key_id": report.primary_key_id,
        "dry_run": report.dry_run,
        "rewrapped": report.rewrapped,
        "current": report.current,
        "failed": report.failed,
        "tables": {
            name: {"rewrapped": c.rewrapped, "current": c.current, "failed": c.failed}
            for name, c in report.tables.items()
        },
        "failures": [
            {"table": f.table, "name": f.name, "reason": f.reason} for f in report.failures
        ],
    }


@secrets_app.command("rotate")
def secrets_rotate(
    config: ConfigOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be re-wrapped; change nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Re-wrap every stored secret under the primary master key. Exits 1 if some value
    cannot be opened with the configured keys (listed)."""
    settings = settings_for(config, lenient=True)
    keyring = keyring_for(settings)

    async def work() -> RotationReport:
        async with opened_engine(settings) as engine:
            return await rotate_sealed(engine, keyring, dry_run=dry_run)

    report = run_async(work())
    if not dry_run:
        _audit_rotation(settings, report)
    if as_json:
        typer.echo(json.dumps(_report_rows(report), indent=2))
    else:
        verb = "would re-wrap" if dry_run else "re-wrapped"
        table = Table("table", verb, "already current", "failed")
        for name, c in report.tables.items():
            table.add_row(name, str(c.rewrapped), str(c.current), str(c.failed))
        Console().print(table)
        for failure in report.failures:
            typer.echo(f"cannot open {failure.table} {failure.name!r}: {failure.reason}", err=True)
        typer.echo(
            f"{verb} {report.rewrapped} value(s) under master key {report.primary_key_id}; "
            f"{report.current} already current, {report.failed} failed",
            err=True,
        )
    if report.failures:
        raise typer.Exit(1)


def _audit_rotation(settings: Settings, report: RotationReport) -> None:
    """One audit entry (the admin API has no rotation route): target the primary master
    key's id, the counts in ``detail``; values left unopened make it a 409, as the admin
    API answers a change the stored state does not allow."""
    counts = {"rewrapped": report.rewrapped, "current": report.current, "failed": report.failed}
    extra: dict[str, Any] = {"values": counts}
    if report.failed:
        extra["error"] = "invalid_request_error"
    record_cli_change(
        settings,
        CliChange("secrets.rotate", "master_key"),
        target_id=report.primary_key_id,
        status=409 if report.failed else 200,
        extra=extra,
    )


@secrets_app.command("status")
def secrets_status(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The configured master key ids (primary first) and how many stored values each wraps;
    ids still wrapping values but no longer configured are listed too (those values cannot
    be opened until their key is configured again)."""
    settings = settings_for(config, lenient=True)
    keyring = keyring_for(settings)

    async def work() -> dict[str, dict[str, int]]:
        async with opened_engine(settings) as engine:
            return await sealed_key_usage(engine)

    usage = run_async(work())
    names = [t.name for t in SEALED_TABLES]
    key_ids = [*keyring.key_ids, *sorted(set(usage) - set(keyring.key_ids))]
    counts = {k: {name: usage.get(k, {}).get(name, 0) for name in names} for k in key_ids}
    roles = {k: _role(keyring, k) for k in key_ids}
    if as_json:
        rows = [{"master_key_id": k, "role": roles[k], **counts[k]} for k in key_ids]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("master key id", "role", *names)
    for k in key_ids:
        table.add_row(k, roles[k], *(str(n) for n in counts[k].values()))
    Console().print(table)
    stale = sum(sum(counts[k].values()) for k in key_ids if roles[k] != "primary")
    if stale:
        typer.echo(
            f"{stale} value(s) are not under the primary key: run `sluicegate secrets rotate`",
            err=True,
        )


def _role(keyring: Keyring, key_id: str) -> str:
    if key_id == keyring.primary.id:
        return "primary"
    return "previous" if key_id in keyring.key_ids else "not configured"

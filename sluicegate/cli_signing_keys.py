"""``sluicegate keys signing-key create|list|revoke``: HMAC request-signing keys.

``create`` prints ``{"signing_key_id": ..., "key_id": ..., "secret": ...}`` on stdout, the
only time the secret is shown; it needs a master key (``secrets.master_key`` or
``secrets.master_key_file``) to seal it. Running gateways with ``auth.hmac.enabled`` pick
changes up within ``server.key_sync_interval``. See docs/security-auth.md.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from sluicegate.cli_audit_trail import CliChange, audited, key_ref
from sluicegate.cli_common import ConfigOption, fail, run_async, settings_for
from sluicegate.cli_secrets import keyring_for, opened_engine
from sluicegate.policy.hmac_auth import issue_signing_key
from sluicegate.store.keys import KeyNotFoundError, KeyStore
from sluicegate.store.signing_keys import (
    SigningKeyNotFoundError,
    SigningKeyRecord,
    SigningKeyStore,
)

signing_app = typer.Typer(
    help="HMAC request-signing keys of gateway keys: create, list, revoke.",
    no_args_is_help=True,
)

KeyOption = Annotated[str, typer.Option("--key", metavar="KEY", help="The key's name or id.")]


@signing_app.command("create")
def signing_key_create(key: KeyOption, config: ConfigOption = None) -> None:
    """Create a signing key for a gateway key; prints its id and secret (shown only once)."""
    settings = settings_for(config, lenient=True)
    keyring = keyring_for(settings)
    change = CliChange("key.signing_key.new", "signing_key", key_ref(key), ref=key)

    async def work() -> tuple[SigningKeyRecord, str]:
        async with opened_engine(settings) as engine:
            record = await KeyStore(engine).get(key)
            if record.revoked_at is not None:
                # ValueError: a 400 in the audit log, as on /key/signing_key/new.
                raise ValueError(f"key {record.name!r} is revoked")
            try:
                return await issue_signing_key(SigningKeyStore(engine), keyring, record.id)
            except KeyNotFoundError:  # revoked meanwhile
                raise ValueError(f"key {record.name!r} is revoked") from None

    try:
        record, secret = audited(settings, change, work(), lambda done: done[0].id)
    except (KeyNotFoundError, ValueError) as exc:
        fail(f"--key: {exc}")
    typer.echo(json.dumps({"signing_key_id": record.id, "key_id": record.key_id, "secret": secret}))
    typer.echo(f"created signing key {record.id}; the secret will not be shown again", err=True)


@signing_app.command("list")
def signing_key_list(
    config: ConfigOption = None,
    key: Annotated[
        str | None, typer.Option("--key", metavar="KEY", help="Only this key's (name or id).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List signing keys (ids, gateway key, status). Never prints a secret."""
    settings = settings_for(config, lenient=True)

    async def work() -> list[SigningKeyRecord]:
        async with opened_engine(settings) as engine:
            key_id = (await KeyStore(engine).get(key)).id if key else None
            return await SigningKeyStore(engine).list(key_id=key_id)

    try:
        records = run_async(work())
    except KeyNotFoundError as exc:
        fail(f"--key: {exc}")
    rows = [
        {
            "signing_key_id": r.id,
            "key_id": r.key_id,
            "status": "revoked" if r.revoked_at else "active",
            "master_key_id": r.master_key_id,
            "created_at": r.created_at.isoformat(),
            "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
        }
        for r in records
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "key", "status", "master key", "created (UTC)", "revoked (UTC)")
    for r in records:
        table.add_row(
            r.id,
            r.key_id,
            "revoked" if r.revoked_at else "active",
            r.master_key_id,
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.revoked_at:%Y-%m-%d %H:%M}" if r.revoked_at else "-",
        )
    Console().print(table)


@signing_app.command("revoke")
def signing_key_revoke(
    signing_key_id: Annotated[str, typer.Argument(help="The signing key's id (sgk_...).")],
    config: ConfigOption = None,
) -> None:
    """Revoke a signing key (final). Running gateways refuse it within key_sync_interval."""
    settings = settings_for(config, lenient=True)
    request = {"signing_key_id": signing_key_id}
    change = CliChange("key.signing_key.revoke", "signing_key", request, ref=signing_key_id)

    async def work() -> SigningKeyRecord:
        async with opened_engine(settings) as engine:
            return await SigningKeyStore(engine).revoke(signing_key_id)

    try:
        record = audited(settings, change, work(), lambda done: done.id)
    except SigningKeyNotFoundError:
        fail(f"no signing key with id {signing_key_id[:40]!r}")
    typer.echo(f"revoked signing key {record.id}", err=True)

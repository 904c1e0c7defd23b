"""``sluicegate credentials set|list|delete``: provider API keys stored in the database,
sealed under the master key (docs/security.md).

The secret is read from an environment variable (``--from-env VAR``) or from stdin (typed
without echo on a terminal), never from the command line, where it would land in the shell
history and in ``ps``. Listings show a fingerprint, never the secret. Running gateways pick
up a change within ``server.key_sync_interval``.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sluicegate.cli_audit_trail import CliChange, audited
from sluicegate.cli_common import ConfigOption, fail, run_async, settings_for
from sluicegate.cli_secrets import JsonOption, keyring_for, keyring_source, opened_engine
from sluicegate.crypto.keyring_source import KeyringSource, MasterKeyMissing
from sluicegate.store.credentials import (
    PROVIDERS,
    CredentialNotFoundError,
    CredentialRecord,
    CredentialStore,
    check_secret,
)

credentials_app = typer.Typer(
    help="Store, list and delete provider API keys kept (encrypted) in the database.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="The credential's name.")]


def credential_row(record: CredentialRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "provider": record.provider,
        "fingerprint": record.fingerprint,
        "master_key_id": record.master_key_id,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }


def _read_secret(from_env: str | None) -> str:
    if from_env is not None:
        value = os.environ.get(from_env)
        if not value:
            fail(f"--from-env: environment variable {from_env[:80]} is not set")
        return value
    if sys.stdin.isatty():
        return getpass.getpass("secret (not echoed): ")
    # A trailing line break (echo, a file) is not part of the key.
    return sys.stdin.read().rstrip("\r\n")


@credentials_app.command("set")
def credentials_set(
    name: NameArgument,
    provider: Annotated[
        str, typer.Option("--provider", metavar="|".join(PROVIDERS), help="The provider.")
    ],
    config: ConfigOption = None,
    from_env: Annotated[
        str | None,
        typer.Option(
            "--from-env", metavar="VAR", help="Read the secret from this environment variable."
        ),
    ] = None,
) -> None:
    """Store a credential (or replace the one of this name). The secret comes from
    --from-env VAR or stdin; its fingerprint is printed, never the secret."""
    settings = settings_for(config, lenient=True)
    if provider not in PROVIDERS:
        fail(f"--provider must be one of {', '.join(PROVIDERS)}")
    keyring_for(settings)  # no master key: say so before asking for the secret
    secret = _read_secret(from_env)
    try:
        check_secret(secret)
    except ValueError as exc:
        fail(str(exc))

    # /credentials/new, or /credentials/update when the name is taken; the key's field is
    # recorded, never its value.
    request = {"credential_name": name, "provider": provider, "api_key": None}
    change = CliChange("credentials.new", "credential", request, ref=name)

    async def work() -> tuple[CredentialRecord, bool]:
        async with opened_engine(settings) as engine:
            store = CredentialStore(engine, keyring_source(settings))
            existed = await store.get(name) is not None
            return await store.put(name, provider, secret, replace=True), existed

    try:
        record, existed = audited(
            settings,
            change,
            work(),
            lambda done: done[0].name,
            action=lambda done: "credentials.update" if done[1] else "credentials.new",
        )
    except (ValueError, MasterKeyMissing) as exc:
        fail(str(exc))
    action = "replaced" if existed else "stored"
    typer.echo(
        f"{action} credential {record.name!r} ({record.provider}, {record.fingerprint}, "
        f"master key {record.master_key_id})",
        err=True,
    )


@credentials_app.command("list")
def credentials_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List credentials: name, provider, fingerprint, master key id, dates. Never a secret
    (and no master key needed)."""
    settings = settings_for(config, lenient=True)

    async def work() -> list[CredentialRecord]:
        async with opened_engine(settings) as engine:
            return await CredentialStore(engine, KeyringSource(settings.secrets)).list()

    records = run_async(work())
    if as_json:
        typer.echo(json.dumps([credential_row(r) for r in records], indent=2))
        return
    table = Table("name", "provider", "created (UTC)", "updated (UTC)")
    # Folded, not cut with an ellipsis, on a narrow terminal: they are compared by eye.
    table.add_column("fingerprint", overflow="fold")
    table.add_column("master key id", overflow="fold")
    for r in records:
        table.add_row(
            r.name,
            r.provider,
            f"{r.created_at:%Y-%m-%d %H:%M}",
            f"{r.updated_at:%Y-%m-%d %H:%M}",
            r.fingerprint,
            r.master_key_id,
        )
    Console().print(table)


@credentials_app.command("delete")
def credentials_delete(name: NameArgument, config: ConfigOption = None) -> None:
    """Delete a credential. Models that name it stop working on running gateways within
    server.key_sync_interval."""
    settings = settings_for(config, lenient=True)
    change = CliChange("credentials.delete", "credential", {"credential_name": name}, ref=name)

    async def work() -> None:
        async with opened_engine(settings) as engine:
            if not await CredentialStore(engine, KeyringSource(settings.secrets)).delete(name):
                raise CredentialNotFoundError(name)

    try:
        audited(settings, change, work(), lambda _: name)
    except CredentialNotFoundError:
        fail(f"no credential named {name[:80]!r}")
    typer.echo(f"deleted credential {name!r}", err=True)

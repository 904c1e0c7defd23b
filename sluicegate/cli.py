"""The ``sluicegate`` command: serve, keys, partners, credentials, secrets, usage, check-config,
db, fake-upstream."""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
import yaml

from sluicegate import __version__
from sluicegate.cli_audit import audit
from sluicegate.cli_common import ConfigOption, fail, run_async, settings_for
from sluicegate.cli_credentials import credentials_app
from sluicegate.cli_keys import keys_app
from sluicegate.cli_partners import partners_app
from sluicegate.cli_secrets import secrets_app
from sluicegate.cli_usage import usage
from sluicegate.settings import DEFAULT_PORT

app = typer.Typer(
    help="sluicegate: a self-hosted LLM API gateway (Anthropic Messages API first).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(partners_app, name="partners")
app.add_typer(credentials_app, name="credentials")
app.add_typer(secrets_app, name="secrets")
app.command("usage")(usage)
app.command("audit")(audit)
app.add_typer(db_app, name="db")


def ensure_port_free(host: str, port: int) -> None:
    """Fail loudly now rather than let the server start and then die on bind."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(
                    f"port {port} on {host} is already in use; stop the other process or "
                    "pick another port with --port",
                    code=1,
                )
            fail(f"cannot listen on {host}:{port}: {exc.strerror}", code=1)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help=f"Port (default {DEFAULT_PORT}).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
) -> None:
    """Start the gateway."""
    import uvicorn

    from sluicegate.app import CONFIG_ENV
    from sluicegate.observe.logging import configure_logging

    settings = settings_for(config)
    bind_host = host or settings.server.host
    bind_port = settings.server.port if port is None else port
    ensure_port_free(bind_host, bind_port)
    configure_logging(settings.server.log_level)
    if config:
        os.environ[CONFIG_ENV] = str(config.resolve())
    else:
        os.environ.pop(CONFIG_ENV, None)
    worker_count = workers or settings.server.workers
    if worker_count > 1:
        share_metrics_between_workers()
    typer.echo(f"sluicegate {__version__} starting on http://{bind_host}:{bind_port}", err=True)
    # uvicorn drains on SIGTERM, then re-raises the signal under the handler that was in
    # place before it started: make that an orderly exit 0 (orchestrators read 143 as a
    # crash), once the ledger is flushed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        "sluicegate.app:create_app_from_env",
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=worker_count,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        # httptools, with the gateway's limits on the request head (api/http_protocol.py).
        http="sluicegate.api.http_protocol:GatewayHttpProtocol",
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        # Forwarded headers are never trusted implicitly (a trusted-proxy setting is planned).
        proxy_headers=False,
        # The drain deadline: in-flight requests get this long after SIGTERM, then the rest
        # are cancelled (a cancelled stream still ends with an error event).
        timeout_graceful_shutdown=round(settings.server.shutdown_grace),
    )


def share_metrics_between_workers() -> None:
    """Give the workers a directory for their metric snapshots (any worker answering a
    scrape merges them all): ``SLUICEGATE_METRICS_DIR`` if set, else a fresh temporary
    one removed at exit. Snapshots of an earlier run are removed first: they are not
    this server's counts."""
    from sluicegate.observe.metrics_export import METRICS_DIR_ENV

    chosen = os.environ.get(METRICS_DIR_ENV)
    if chosen:
        directory = Path(chosen)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.json"):
            stale.unlink(missing_ok=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix="sluicegate-metrics-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        os.environ[METRICS_DIR_ENV] = str(directory)


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validate a config file and print it resolved, with secrets redacted."""
    settings = settings_for(config)
    typer.echo(yaml.safe_dump(settings.redacted(), sort_keys=False).rstrip())


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None) -> None:
    """Migrate the database schema to this release's revision."""
    from sluicegate.store.db import redact_url
    from sluicegate.store.migrate import head_revision, upgrade

    settings = settings_for(config, lenient=True)
    run_async(upgrade(settings.database_url))
    typer.echo(f"{redact_url(settings.database_url)} is at revision {head_revision()}", err=True)


@app.command("fake-upstream")
def fake_upstream(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8500,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="FAKE_UPSTREAM_API_KEY",
            help="Upstream key the fake requires (x-api-key / Bearer); none = accept any.",
        ),
    ] = None,
) -> None:
    """Run the scriptable fake LLM provider (Anthropic + OpenAI wire formats)."""
    from sluicegate.fake_upstream import run_fake_upstream

    ensure_port_free(host, port)
    run_fake_upstream(host, port, api_key)


def main() -> None:
    app()

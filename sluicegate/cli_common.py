"""Helpers shared by the CLI's command modules."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from sluicegate.settings import ConfigError, Settings, embedded_defaults, load_settings

T = TypeVar("T")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config file. Without it: embedded defaults "
        "(SQLite under ./data or $SLUICEGATE_DATA_DIR, demo model, claude-*).",
    ),
]

SinceOption = Annotated[
    str | None, typer.Option(metavar="DATE", help="From this ISO date/time (UTC).")
]
UntilOption = Annotated[
    str | None,
    typer.Option(metavar="DATE", help="Up to this ISO date/time (UTC); a date is included."),
]


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def settings_for(config: Path | None, *, lenient: bool = False) -> Settings:
    """The config file's settings, or the embedded defaults. ``lenient`` for commands that
    never call a provider: provider keys need not be set in their environment."""
    try:
        return load_settings(config, lenient=lenient) if config else embedded_defaults()
    except ConfigError as exc:
        where = f" in {config}" if config else ""
        fail(f"invalid configuration{where}:\n{exc}")


def run_async(work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(work)

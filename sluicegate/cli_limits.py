"""Shared by the CLI's governance commands (keys, partners, usage): opening the stores and
the ``--rpm/--tpm/--max-parallel/--budget/--budget-period`` options.

Numbers are parsed here rather than by click so that a bad value is one line on stderr
(``error: --rpm: ...``, exit 2). ``0`` removes a limit or budget (on ``update``: clears it).
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from sluicegate.cli_common import fail
from sluicegate.policy.key_admin import budget_period
from sluicegate.settings import Settings
from sluicegate.store.db import create_engine
from sluicegate.store.keys import KeyStore
from sluicegate.store.ledger import LedgerStore
from sluicegate.store.partners import PartnerStore
from sluicegate.store.startup import ensure_schema


@dataclass(frozen=True, slots=True)
class Stores:
    keys: KeyStore
    partners: PartnerStore
    ledger: LedgerStore


@asynccontextmanager
async def opened_stores(settings: Settings) -> AsyncIterator[Stores]:
    """The schema migrated (if allowed), then the stores on one engine, disposed after."""
    await ensure_schema(settings.database_url, auto_migrate=settings.migrate_on_start)
    engine = create_engine(settings.database_url)
    try:
        yield Stores(KeyStore(engine), PartnerStore(engine), LedgerStore(engine))
    finally:
        await engine.dispose()


_ZERO = "; 0 removes it"
RpmOption = Annotated[
    str | None, typer.Option("--rpm", metavar="N", help="Requests per minute" + _ZERO + ".")
]
TpmOption = Annotated[
    str | None, typer.Option("--tpm", metavar="N", help="Tokens per minute" + _ZERO + ".")
]
MaxParallelOption = Annotated[
    str | None,
    typer.Option("--max-parallel", metavar="N", help="Requests in flight at once" + _ZERO + "."),
]
BudgetOption = Annotated[
    str | None,
    typer.Option(
        "--budget", metavar="USD", help="Spend limit in USD per budget period" + _ZERO + "."
    ),
]
BudgetPeriodOption = Annotated[
    str | None,
    typer.Option(
        "--budget-period",
        metavar="PERIOD",
        help="daily, weekly, monthly or total (default monthly when --budget is set).",
    ),
]


def _count(option: str, text: str) -> int | None:
    try:
        value = int(text.strip())
    except ValueError:
        fail(f"{option}: {text[:40]!r} is not a whole number (0 removes the limit)")
    if value < 0:
        fail(f"{option}: must be 0 or more (0 removes the limit)")
    return value or None


def _usd(option: str, text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        fail(f"{option}: {text[:40]!r} is not an amount in USD (0 removes the budget)")
    if not math.isfinite(value) or value < 0:
        fail(f"{option}: must be a finite amount of 0 or more (0 removes the budget)")
    return value or None


def positive_float(option: str, text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        fail(f"{option}: {text[:40]!r} is not a number")
    if not math.isfinite(value) or value <= 0:
        fail(f"{option}: must be a number above 0")
    return value


def limit_changes(
    *,
    rpm: str | None,
    tpm: str | None,
    max_parallel: str | None,
    budget: str | None,
    period: str | None,
) -> dict[str, Any]:
    """The limit fields given on the command line, ``None`` for the ones set to 0.

    Removing the budget (``--budget 0``) removes its period too.
    """
    changes: dict[str, Any] = {}
    for field, option, text in (
        ("rpm", "--rpm", rpm),
        ("tpm", "--tpm", tpm),
        ("max_parallel", "--max-parallel", max_parallel),
    ):
        if text is not None:
            changes[field] = _count(option, text)
    if budget is not None:
        changes["budget_usd"] = _usd("--budget", budget)
    if period is not None:
        try:
            changes["budget_period"] = budget_period(period)
        except ValueError as exc:
            fail(f"--budget-period: {exc}")
    if "budget_usd" in changes and changes["budget_usd"] is None:
        if changes.get("budget_period") is not None:
            fail("--budget-period: --budget 0 removes the budget; give no period with it")
        changes["budget_period"] = None
    return changes


def limit_fields(
    *,
    rpm: str | None,
    tpm: str | None,
    max_parallel: str | None,
    budget: str | None,
    period: str | None,
) -> dict[str, Any]:
    """Like :func:`limit_changes`, for creation: a period needs a budget."""
    fields = limit_changes(
        rpm=rpm, tpm=tpm, max_parallel=max_parallel, budget=budget, period=period
    )
    if fields.get("budget_period") is not None and fields.get("budget_usd") is None:
        fail("--budget-period: set a budget with --budget USD as well")
    return {k: v for k, v in fields.items() if v is not None}


# Store field names -> this CLI's options, for messages from store validation.
_OPTIONS = {
    "budget_usd": "--budget",
    "budget_period": "--budget-period",
    "max_parallel": "--max-parallel",
    "rpm": "--rpm",
    "tpm": "--tpm",
    "weight": "--weight",
}
_STORE_NAME = re.compile(r"\b(" + "|".join(_OPTIONS) + r")\b")


def option_message(error: Exception) -> str:
    """A store's validation message in terms of the command's options."""
    return _STORE_NAME.sub(lambda m: _OPTIONS[m.group(1)], str(error))


def limits_text(rpm: int | None, tpm: int | None, max_parallel: int | None) -> str:
    parts = [
        f"{label} {value}"
        for label, value in (("rpm", rpm), ("tpm", tpm), ("parallel", max_parallel))
        if value is not None
    ]
    return ", ".join(parts) or "-"


def budget_text(budget_usd: float | None, period: str | None) -> str:
    return "-" if budget_usd is None else f"${budget_usd:g} {period or 'monthly'}"

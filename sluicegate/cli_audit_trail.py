"""Admin changes made with the CLI, written to the audit log (``sluicegate audit``) like the
admin API's: the same actions (``key.generate``, ``partner.update`` ...), targets and
``detail`` (field names in the admin API's terms, values of harmless fields only, see
:mod:`sluicegate.audit_detail`), with ``actor`` ``cli:<OS user>`` and no source address or
request id.

A command describes its change as a :class:`CliChange` and runs its database work through
:func:`audited`: a done change is recorded with status 200, one the store refuses (unknown
name, duplicate, revoked key, partner in use ...) with the status the admin API would
answer (400, 404, 409) and ``detail.error``. Refusals found before the database is touched
(a malformed option) are not recorded. The entry is written after the change, on its own
connection: if it cannot be written, the command says so on stderr and still succeeds,
since the change is made.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import typer

from sluicegate.audit_detail import describe
from sluicegate.cli_common import run_async
from sluicegate.crypto.keyring_source import MasterKeyMissing
from sluicegate.errors import InvalidRequest, NotFound
from sluicegate.settings import Settings
from sluicegate.store.audit import AuditStore
from sluicegate.store.credentials import CredentialNotFoundError, DuplicateCredentialError
from sluicegate.store.db import create_engine
from sluicegate.store.keys import DuplicateKeyError, KeyNotFoundError, is_key_id
from sluicegate.store.partners import (
    DuplicatePartnerError,
    PartnerInUseError,
    PartnerNotFoundError,
)
from sluicegate.store.signing_keys import SigningKeyNotFoundError

__all__ = ["CliChange", "api_fields", "audited", "cli_actor", "key_ref", "record_cli_change"]

T = TypeVar("T")

ACTOR_PREFIX: Final = "cli:"
# Store field names -> the admin API's request fields (as api/admin/base.py maps them).
_API_NAMES: Final = {
    "rpm": "rpm_limit",
    "tpm": "tpm_limit",
    "max_parallel": "max_parallel_requests",
    "budget_usd": "max_budget",
    "budget_period": "budget_duration",
    "partner_id": "partner",
}
_NOT_FOUND: Final = (
    KeyNotFoundError,
    PartnerNotFoundError,
    SigningKeyNotFoundError,
    CredentialNotFoundError,
)
_DUPLICATE: Final = (DuplicateKeyError, DuplicatePartnerError, DuplicateCredentialError)
# The admin API answers these with its Conflict (409, an invalid_request_error).
_CONFLICT: Final = (PartnerInUseError, MasterKeyMissing)


@dataclass(frozen=True, slots=True)
class CliChange:
    """A CLI change as the admin API's equivalent request.

    ``request``: the options given, under the admin API's field names (values of fields
    that may hold a secret are never recorded; pass None for them). ``ref``: what the
    command named, the target of a refused change. ``invalid_status``: the admin API's
    status for a ``ValueError`` from the store (400, or 409 where it means "revoked").
    """

    action: str
    target_type: str
    request: Mapping[str, Any] = field(default_factory=dict)
    ref: str | None = None
    invalid_status: int = 400


def cli_actor() -> str:
    """``cli:`` and the OS user running the command (``cli:cli`` when it is unknown)."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in the environment nor the password database
        user = ""
    return ACTOR_PREFIX + (user or "cli")


def api_fields(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Store field names -> the admin API's (``rpm`` -> ``rpm_limit`` ...)."""
    return {_API_NAMES.get(name, name): value for name, value in changes.items()}


def key_ref(ref: str) -> dict[str, str]:
    """A key named on the command line, as the admin API names it: ``key_id`` or
    ``key_alias``."""
    return {"key_id" if is_key_id(ref) else "key_alias": ref}


def _refusal(error: BaseException, invalid_status: int) -> tuple[int, str] | None:
    """(status, error type) of a refusal the store reported, as the admin API answers it;
    None for anything else (not recorded)."""
    if isinstance(error, _NOT_FOUND):
        return NotFound.status, NotFound.error_type
    if isinstance(error, _DUPLICATE):
        return InvalidRequest.status, InvalidRequest.error_type
    if isinstance(error, _CONFLICT):
        return 409, InvalidRequest.error_type
    if isinstance(error, ValueError):
        return invalid_status, InvalidRequest.error_type
    return None


def _reason(error: Exception) -> str:
    """One short line: the database driver's message when there is one (SQLAlchemy's own
    text adds the statement and its parameters)."""
    text = str(getattr(error, "orig", None) or error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200]}" if text else type(error).__name__


def record_cli_change(
    settings: Settings,
    change: CliChange,
    *,
    target_id: str | None,
    status: int = 200,
    action: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write one entry for ``change``; a failure is a warning on stderr, never an error.
    ``extra`` is added to ``detail`` (counts, the error type): harmless values only."""
    detail = {**describe(change.request, change.request), **(extra or {})}
    what = action or change.action

    async def write() -> None:
        engine = create_engine(settings.database_url)
        try:
            await AuditStore(engine).record(
                actor=cli_actor(),
                action=what,
                status=status,
                target_type=change.target_type,
                target_id=target_id,
                detail=detail,
            )
        finally:
            await engine.dispose()

    try:
        run_async(write())
    except Exception as exc:
        typer.echo(
            f"warning: could not write the audit log entry of {what} ({_reason(exc)})", err=True
        )


def audited(
    settings: Settings,
    change: CliChange,
    work: Coroutine[Any, Any, T],
    target: Callable[[T], str | None],
    action: Callable[[T], str] | None = None,
) -> T:
    """Run ``work`` (the command's database work) and record its outcome: ``target(result)``
    and (if given) ``action(result)`` for a done change; a refusal the store reported is
    recorded too, then raised for the command to report."""
    try:
        result = run_async(work)
    except Exception as exc:
        refusal = _refusal(exc, change.invalid_status)
        if refusal is not None:
            status, error_type = refusal
            record_cli_change(
                settings, change, target_id=change.ref, status=status, extra={"error": error_type}
            )
        raise
    record_cli_change(
        settings,
        change,
        target_id=target(result),
        action=action(result) if action is not None else None,
    )
    return result

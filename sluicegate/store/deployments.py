"""Model deployments defined in the database (``model_deployments``), beside the config
file's ``model_list``.

A row is one deployment of a model name: ``model_name``, a ``deployment_id`` unique across
the config file and the database (the name in logs, headers, limits and breakers), and
``params``, a ``model_list`` entry's other fields (provider, api_base, model, credential,
timeouts, limits, weight, ...). ``params`` are validated by the same rules as a config entry
(:class:`~sluicegate.settings.ModelEntry`) and stored as given, after normalisation. A row
never holds a provider key: it names a stored credential (``credential``) instead, so
``api_key`` is refused, and so is ``builtin:fake`` (a config-file demo device).

Every statement is built with SQLAlchemy Core and bound parameters. Change detection:
:meth:`DeploymentStore.fingerprint` is ``(count, max(updated_at))``. A write stamps its row
later than every stored row (not only later than this process's last write), so the maximum
moves forward on every create and update even when hosts' clocks disagree; deletes change
the count.
"""

from __future__ import annotations

import builtins
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Row, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sluicegate.settings import BUILTIN_FAKE, ModelEntry, format_validation_error
from sluicegate.store.db import SQLITE_BEGIN
from sluicegate.store.fields import Stamper
from sluicegate.store.tables import model_deployments

__all__ = [
    "DeploymentNotFoundError",
    "DeploymentRecord",
    "DeploymentStore",
    "DuplicateDeploymentError",
    "entry_of",
    "merge_params",
    "new_deployment_row_id",
]

ROW_ID_PATTERN: Final = re.compile(r"dep_[0-9a-f]{24}")
# Fields of a model_list entry that are not params: named on their own, or never stored.
_NOT_PARAMS: Final = frozenset({"model_name", "deployment_id", "api_key"})
PARAM_FIELDS: Final = tuple(name for name in ModelEntry.model_fields if name not in _NOT_PARAMS)
_WRITE: Final = {SQLITE_BEGIN: "IMMEDIATE"}


class DuplicateDeploymentError(Exception):
    """The deployment_id is already used (by the config file or another stored row)."""


class DeploymentNotFoundError(Exception):
    """No stored deployment has this id or deployment_id."""


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    id: str
    model_name: str
    deployment_id: str
    params: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    def entry(self) -> ModelEntry:
        """The row as a model_list entry (validated again: rules may have tightened since
        it was written; a ValueError then says why)."""
        return entry_of(self.model_name, self.deployment_id, self.params)


def new_deployment_row_id() -> str:
    return "dep_" + secrets.token_hex(12)


def entry_of(model_name: Any, deployment_id: Any, params: Mapping[str, Any]) -> ModelEntry:
    """A model_list entry from stored fields, by the config file's rules; ValueError naming
    the field otherwise. ``api_key`` and ``builtin:fake`` are refused (see the module doc)."""
    if not isinstance(params, Mapping):
        raise ValueError("params must be an object")
    if "api_key" in params:
        raise ValueError(
            "params.api_key: not stored in the database; store the key as a provider "
            "credential and name it in params.credential"
        )
    for name in ("model_name", "deployment_id"):
        if name in params:
            raise ValueError(f"params.{name}: give it beside params, not inside")
    if params.get("api_base") == BUILTIN_FAKE:
        raise ValueError(f"params.api_base: {BUILTIN_FAKE} is for the config file only")
    if isinstance(deployment_id, str) and ROW_ID_PATTERN.fullmatch(deployment_id):
        raise ValueError("deployment_id must not look like a row id (dep_ + 24 hex)")
    data = {**params, "model_name": model_name, "deployment_id": deployment_id}
    try:
        return ModelEntry.model_validate(data)
    except ValidationError as exc:
        lines = format_validation_error(exc).splitlines()
        raise ValueError("; ".join(_under_params(line) for line in lines)) from None


def _under_params(line: str) -> str:
    """A validation message in the caller's terms: every field but the two named beside
    ``params`` sits under ``params``."""
    if line.startswith(("model_name", "deployment_id", "(top level)")):
        return line.removeprefix("(top level): ")
    return "params." + line


def merge_params(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``current`` with ``changes`` applied; a ``None`` value removes that field."""
    merged = dict(current)
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def _stored_params(entry: ModelEntry) -> dict[str, Any]:
    """The params as stored: what was given, normalised (api_base without a trailing
    slash, header names lower-case), defaults left out so later defaults apply."""
    return entry.model_dump(mode="json", exclude_unset=True, exclude=set(_NOT_PARAMS))


def _record(row: Row[Any]) -> DeploymentRecord:
    return DeploymentRecord(
        id=row.id,
        model_name=row.model_name,
        deployment_id=row.deployment_id,
        params=dict(row.params or {}),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _lookup(ref: str) -> ColumnElement[bool]:
    # deployment_ids may not have a row id's shape (entry_of), so at most one row matches.
    if ROW_ID_PATTERN.fullmatch(ref):
        return model_deployments.c.id == ref
    return model_deployments.c.deployment_id == ref


def _free_id(model_name: str, taken: Collection[str]) -> str:
    """The default deployment_id: the model name, else ``model_name#N`` (N from 2)."""
    if model_name not in taken:
        return model_name
    number = 2
    while f"{model_name}#{number}" in taken:
        number += 1
    return f"{model_name}#{number}"


class DeploymentStore:
    """Stored deployments; see the module docstring."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**_WRITE)
        self._stamp = Stamper()

    async def create(
        self,
        model_name: str,
        params: Mapping[str, Any],
        deployment_id: str | None = None,
        *,
        reserved: Collection[str] = (),
    ) -> DeploymentRecord:
        """Store a deployment. ``reserved``: deployment ids used elsewhere (the config
        file's); a clash with them or a stored row raises :class:`DuplicateDeploymentError`.
        Without ``deployment_id`` the model name is used, or ``model_name#N`` when taken."""
        entry = entry_of(model_name, deployment_id, params)
        async with self._writer.begin() as conn:
            stored = set(await conn.scalars(select(model_deployments.c.deployment_id)))
            taken = stored | set(reserved)
            name = entry.deployment_id or _free_id(entry.model_name, taken)
            if name in taken:
                raise DuplicateDeploymentError(f"deployment_id {name!r} is already used")
            now = await self._next_stamp(conn)
            row_id = new_deployment_row_id()
            values = {
                "id": row_id,
                "model_name": entry.model_name,
                "deployment_id": name,
                "params": _stored_params(entry),
                "created_at": now,
                "updated_at": now,
            }
            try:
                await conn.execute(model_deployments.insert().values(values))
            except IntegrityError:  # another process took the id meanwhile
                raise DuplicateDeploymentError(f"deployment_id {name!r} is already used") from None
            return await self._get(conn, row_id)

    async def update(
        self,
        ref: str,
        *,
        model_name: str | None = None,
        params: Mapping[str, Any] | None = None,
        deployment_id: str | None = None,
        reserved: Collection[str] = (),
    ) -> DeploymentRecord:
        """Change a stored deployment. ``params`` are merged into the stored ones; a ``None``
        value removes that field (its default applies again). The result is validated as
        a whole."""
        async with self._writer.begin() as conn:
            current = await self._get(conn, ref, lock=True)
            merged = merge_params(current.params, params or {})
            new_id = deployment_id if deployment_id is not None else current.deployment_id
            entry = entry_of(model_name or current.model_name, new_id, merged)
            if new_id != current.deployment_id and new_id in reserved:
                raise DuplicateDeploymentError(f"deployment_id {new_id!r} is already used")
            values = {
                "model_name": entry.model_name,
                "deployment_id": new_id,
                "params": _stored_params(entry),
                "updated_at": await self._next_stamp(conn),
            }
            try:
                await conn.execute(
                    update(model_deployments)
                    .where(model_deployments.c.id == current.id)
                    .values(values)
                )
            except IntegrityError:
                raise DuplicateDeploymentError(
                    f"deployment_id {new_id!r} is already used"
                ) from None
            return await self._get(conn, current.id)

    async def _next_stamp(self, conn: AsyncConnection) -> datetime:
        """Now, or just after the latest stored stamp when that is later (clock skew)."""
        now = self._stamp()
        latest: datetime | None = await conn.scalar(
            select(func.max(model_deployments.c.updated_at))
        )
        if latest is not None and latest >= now:
            return latest + timedelta(microseconds=1)
        return now

    async def get(self, ref: str) -> DeploymentRecord:
        async with self._engine.connect() as conn:
            return await self._get(conn, ref)

    async def _get(
        self, conn: AsyncConnection, ref: str, *, lock: bool = False
    ) -> DeploymentRecord:
        if not isinstance(ref, str):
            raise DeploymentNotFoundError("no stored deployment with this id")
        query = select(model_deployments).where(_lookup(ref))
        if lock:  # PostgreSQL row lock; SQLite's BEGIN IMMEDIATE already serialises writers
            query = query.with_for_update()
        row = (await conn.execute(query)).first()
        if row is None:
            raise DeploymentNotFoundError(f"no stored deployment with id {ref[:200]!r}")
        return _record(row)

    async def list(self) -> builtins.list[DeploymentRecord]:
        """Every stored deployment, oldest first (the order they are routed in)."""
        query = select(model_deployments).order_by(
            model_deployments.c.created_at, model_deployments.c.id
        )
        async with self._engine.connect() as conn:
            return [_record(row) for row in await conn.execute(query)]

    async def delete(self, ref: str) -> DeploymentRecord:
        """Delete a stored deployment; returns what it was."""
        async with self._writer.begin() as conn:
            current = await self._get(conn, ref, lock=True)
            await conn.execute(
                delete(model_deployments).where(model_deployments.c.id == current.id)
            )
            return current

    async def fingerprint(self) -> tuple[int, datetime | None]:
        """``(deployments, max(updated_at))``: changes on create, update and delete."""
        query = select(func.count(), func.max(model_deployments.c.updated_at)).select_from(
            model_deployments
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).one()
        return int(row[0]), row[1]

"""``/model/*``: model deployments defined in the database, beside the config file's.

``/model/new`` stores a deployment (``model_name``, ``params`` with a ``model_list``
entry's fields, an optional ``deployment_id``); ``/model/list`` and ``/model/info`` show
config-file entries (``source: config``) and stored ones (``source: database``);
``/model/update`` and ``/model/delete`` change stored ones only (a config entry is a 409).
A provider key is never stored in ``params`` nor shown: a deployment names a stored
credential (``/credentials/new``), and answers show that name, whether a config entry has
an ``api_key``, and extra header names with their values hidden.

Every change rebuilds this instance's routes before the answer is sent; other instances
pick it up within ``server.key_sync_interval`` (:mod:`sluicegate.routing.sync`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from sluicegate.api.admin.base import AdminContext, Conflict, Route
from sluicegate.api.admin.schemas import Name, Strict
from sluicegate.errors import InvalidRequest, NotFound
from sluicegate.routing.sync import RouteSync
from sluicegate.settings import ModelEntry
from sluicegate.store.deployments import (
    PARAM_FIELDS,
    DeploymentNotFoundError,
    DeploymentRecord,
    DuplicateDeploymentError,
    entry_of,
    merge_params,
)

_NOT_FOUND = (400, 401, 403, 404)
_PARAMS_HELP = (
    "A model_list entry's fields: " + ", ".join(PARAM_FIELDS) + ". provider and api_base are "
    "required; credential names a stored provider credential (api_key is not accepted)."
)
DeploymentId = Annotated[str, StringConstraints(min_length=1, max_length=200)]
HIDDEN = "***"


class NewModel(Strict):
    model_name: Name = Field(description="The name clients ask for (a pattern may use *).")
    params: dict[str, Any] = Field(description=_PARAMS_HELP)
    deployment_id: DeploymentId | None = Field(
        None,
        description="Unique across the config file and the database; default: the "
        "model_name, or model_name#N when taken.",
    )


class UpdateModel(Strict):
    deployment_id: DeploymentId = Field(description="The stored deployment (or its id).")
    model_name: Name | None = Field(None, description="A new model name; omitted: unchanged.")
    params: dict[str, Any] | None = Field(
        None, description="Fields to change, merged into the stored ones; null removes one."
    )


class ModelRef(Strict):
    deployment_id: DeploymentId = Field(description="A deployment_id (or a stored row's id).")


class ModelView(BaseModel):
    id: str | None = Field(description="The stored row's id (dep_...); null for config entries.")
    model_name: str
    deployment_id: str
    source: Literal["config", "database"]
    params: dict[str, Any] = Field(
        description="The entry's fields; never a key (credential names the stored one)."
    )
    has_api_key: bool = Field(description="A config entry with its own api_key.")
    status: Literal["active", "inactive"]
    inactive_reason: str | None = Field(description="Why it serves nothing now.")
    created_at: datetime | None
    updated_at: datetime | None


class ModelList(BaseModel):
    data: list[ModelView]


class DeletedModel(BaseModel):
    deleted_deployment: str


def shown_params(entry: ModelEntry) -> dict[str, Any]:
    """An entry's fields as shown: no key, extra header values hidden (they may hold
    tokens of their own)."""
    params: dict[str, Any] = entry.model_dump(
        mode="json", exclude_unset=True, exclude={"model_name", "deployment_id", "api_key"}
    )
    if "extra_headers" in params:
        params["extra_headers"] = {name: HIDDEN for name in params["extra_headers"]}
    return params


class ModelRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        tags = ("models",)
        return [
            Route("POST", "/model/new", "Store a model deployment (serves at once).",
                  self.new, ModelView, body=NewModel, errors=(*_NOT_FOUND, 409), tags=tags),
            Route("GET", "/model/list", "Every deployment: config file and database.",
                  self.list, ModelList, tags=tags),
            Route("GET", "/model/info", "One deployment.",
                  self.info, ModelView, query=ModelRef, errors=_NOT_FOUND, tags=tags),
            Route("POST", "/model/update", "Change a stored deployment; null removes a field.",
                  self.update, ModelView, body=UpdateModel, errors=(*_NOT_FOUND, 409),
                  tags=tags),
            Route("POST", "/model/delete", "Delete a stored deployment.",
                  self.delete, DeletedModel, body=ModelRef, errors=(*_NOT_FOUND, 409),
                  tags=tags),
        ]  # fmt: skip

    @property
    def sync(self) -> RouteSync:
        sync = self.ctx.deployments
        if sync is None:  # pragma: no cover - the app always wires one
            raise Conflict("Stored deployments are not available on this gateway.")
        return sync

    # -- views -------------------------------------------------------------------------

    def _status(self, name: str) -> tuple[Literal["active", "inactive"], str | None]:
        reason = self.sync.skipped_reason(name)
        return ("inactive", reason) if reason is not None else ("active", None)

    def _config_views(self) -> list[ModelView]:
        views = []
        for entry, name in zip(self.sync.config_entries, self.sync.config_ids, strict=True):
            status, reason = self._status(name)
            views.append(
                ModelView(
                    id=None,
                    model_name=entry.model_name,
                    deployment_id=name,
                    source="config",
                    params=shown_params(entry),
                    has_api_key=entry.api_key is not None,
                    status=status,
                    inactive_reason=reason,
                    created_at=None,
                    updated_at=None,
                )
            )
        return views

    def _stored_view(self, record: DeploymentRecord) -> ModelView:
        try:
            params = shown_params(record.entry())
        except ValueError:  # no longer valid (it does not serve; _status says why)
            params = {k: v for k, v in record.params.items() if k != "extra_headers"}
        status, reason = self._status(record.deployment_id)
        return ModelView(
            id=record.id,
            model_name=record.model_name,
            deployment_id=record.deployment_id,
            source="database",
            params=params,
            has_api_key=False,
            status=status,
            inactive_reason=reason,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )

    # -- checks ------------------------------------------------------------------------

    def _config_entry(self, ref: str) -> bool:
        return ref in self.sync.config_ids

    async def _check(self, entry: ModelEntry) -> None:
        """What a model_list entry's validation cannot know: the host allow-list, and
        that the named credential exists (and can exist: a master key is configured)."""
        refusal = self.sync.security.refusal(entry.api_base)
        if refusal is not None:
            raise InvalidRequest(f"params.api_base: {refusal}")
        if entry.credential is None:
            return
        if not self.sync.keys.configured:
            raise InvalidRequest(
                "params.credential: stored credentials need a master key "
                "(secrets.master_key or secrets.master_key_file)"
            )
        if await self.sync.credentials.get(entry.credential) is None:
            raise InvalidRequest(
                f"params.credential: no credential named {entry.credential[:80]!r} "
                "(store it first: /credentials/new or sluicegate credentials set)"
            )

    # -- routes ------------------------------------------------------------------------

    async def new(self, body: NewModel) -> ModelView:
        sync = self.sync
        try:
            await self._check(entry_of(body.model_name, body.deployment_id, body.params))
            record = await sync.deployments.create(
                body.model_name, body.params, body.deployment_id, reserved=sync.config_ids
            )
        except DuplicateDeploymentError as exc:
            raise Conflict(f"deployment_id: {exc}") from None
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        await sync.reload()  # serves on this instance before the answer
        return self._stored_view(record)

    async def list(self, _: None) -> ModelList:
        stored = await self.sync.deployments.list()
        return ModelList(data=[*self._config_views(), *map(self._stored_view, stored)])

    async def info(self, query: ModelRef) -> ModelView:
        ref = query.deployment_id
        if self._config_entry(ref):
            return next(v for v in self._config_views() if v.deployment_id == ref)
        try:
            return self._stored_view(await self.sync.deployments.get(ref))
        except DeploymentNotFoundError:
            raise NotFound(f"no deployment with id {ref[:80]!r}") from None

    async def update(self, body: UpdateModel) -> ModelView:
        sync = self.sync
        ref = body.deployment_id
        self._refuse_config(ref, "changed")
        if body.model_name is None and not body.params:
            raise InvalidRequest("nothing to change: give model_name or params")
        try:
            current = await sync.deployments.get(ref)
            merged = merge_params(current.params, body.params or {})
            await self._check(
                entry_of(body.model_name or current.model_name, current.deployment_id, merged)
            )
            record = await sync.deployments.update(
                current.id, model_name=body.model_name, params=body.params
            )
        except DeploymentNotFoundError:
            raise NotFound(f"no stored deployment with id {ref[:80]!r}") from None
        except DuplicateDeploymentError as exc:
            raise Conflict(f"deployment_id: {exc}") from None
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        await sync.reload()
        return self._stored_view(record)

    async def delete(self, body: ModelRef) -> DeletedModel:
        ref = body.deployment_id
        self._refuse_config(ref, "deleted")
        try:
            record = await self.sync.deployments.delete(ref)
        except DeploymentNotFoundError:
            raise NotFound(f"no stored deployment with id {ref[:80]!r}") from None
        await self.sync.reload()
        return DeletedModel(deleted_deployment=record.deployment_id)

    def _refuse_config(self, ref: str, what: str) -> None:
        if self._config_entry(ref):
            raise Conflict(
                f"deployment {ref[:80]!r} is defined in the config file; it can only be "
                f"{what} there"
            )

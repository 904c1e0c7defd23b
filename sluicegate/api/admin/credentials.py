"""``/credentials/*``: provider API keys stored in the database, sealed under the master key.

``api_key`` goes in and never comes out: answers carry the credential's name, provider,
fingerprint (``sha256:`` + 16 hex digits of a labelled hash), the id of the master key that
wraps it, and dates. Storing one needs a master key (``secrets.master_key`` or
``secrets.master_key_file``); without one the answer is a 409 naming the setting. A change
is in force on this instance before the answer (its routes are rebuilt), on others within
``server.key_sync_interval``. The audit log records the credential's name, never the key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from sluicegate.api.admin.base import AdminContext, Conflict, Route
from sluicegate.api.admin.schemas import Name, Strict
from sluicegate.crypto.keyring_source import MasterKeyMissing
from sluicegate.errors import InvalidRequest, NotFound
from sluicegate.store.credentials import (
    MAX_SECRET,
    CredentialNotFoundError,
    CredentialRecord,
    CredentialStore,
    DuplicateCredentialError,
)

Provider = Literal["anthropic", "openai"]
ApiKey = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SECRET)]
_NOT_FOUND = (400, 401, 403, 404)
_NEEDS_KEY = (400, 401, 403, 409)


class NewCredential(Strict):
    credential_name: Name = Field(description="Unique name; model entries refer to it.")
    provider: Provider = Field(description="The provider the key belongs to.")
    api_key: ApiKey = Field(description="The provider API key. Never shown again.")


class UpdateCredential(Strict):
    credential_name: Name = Field(description="The credential to change.")
    api_key: ApiKey = Field(description="The new provider API key. Never shown again.")
    provider: Provider | None = Field(None, description="A new provider; omitted: unchanged.")


class CredentialRef(Strict):
    credential_name: Name = Field(description="The credential's name.")


class CredentialView(BaseModel):
    credential_name: str
    provider: str
    fingerprint: str = Field(
        description="sha256: + 16 hex digits of a labelled SHA-256 of the key: tells keys "
        "apart without revealing any of their characters."
    )
    master_key_id: str = Field(description="The master key that wraps this credential.")
    created_at: datetime
    updated_at: datetime


class CredentialList(BaseModel):
    credentials: list[CredentialView]


class DeletedCredential(BaseModel):
    deleted_credential: str


def credential_view(record: CredentialRecord) -> CredentialView:
    return CredentialView(
        credential_name=record.name,
        provider=record.provider,
        fingerprint=record.fingerprint,
        master_key_id=record.master_key_id,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


class CredentialRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        tags = ("credentials",)
        audit: dict[str, Any] = {"target_type": "credential", "target": _target}
        return [
            Route("POST", "/credentials/new", "Store a provider API key (sealed).",
                  self.new, CredentialView, body=NewCredential, errors=_NEEDS_KEY, tags=tags,
                  **audit),
            Route("GET", "/credentials/list", "All stored credentials (never a key).",
                  self.list, CredentialList, tags=tags),
            Route("GET", "/credentials/info", "One stored credential (never its key).",
                  self.info, CredentialView, query=CredentialRef, errors=_NOT_FOUND, tags=tags),
            Route("POST", "/credentials/update", "Replace a credential's key (and provider).",
                  self.update, CredentialView, body=UpdateCredential,
                  errors=(*_NOT_FOUND, 409), tags=tags, **audit),
            Route("POST", "/credentials/delete", "Delete a stored credential.",
                  self.delete, DeletedCredential, body=CredentialRef, errors=_NOT_FOUND,
                  tags=tags, **audit),
        ]  # fmt: skip

    async def _changed(self) -> None:
        """Rebuild this instance's routes now: a model naming the credential uses the new
        key (or stops) before the answer is sent."""
        if self.ctx.deployments is not None:
            await self.ctx.deployments.reload()

    @property
    def store(self) -> CredentialStore:
        store = self.ctx.credentials
        if store is None:  # pragma: no cover - the app always wires one
            raise Conflict("Stored credentials are not available on this gateway.")
        return store

    async def new(self, body: NewCredential) -> CredentialView:
        try:
            record = await self.store.put(body.credential_name, body.provider, body.api_key)
        except MasterKeyMissing as exc:
            raise Conflict(str(exc)) from None
        except DuplicateCredentialError as exc:
            raise InvalidRequest(f"credential_name: {exc}") from None
        except ValueError as exc:
            raise InvalidRequest(_api_message(exc)) from None
        await self._changed()
        return credential_view(record)

    async def list(self, _: None) -> CredentialList:
        return CredentialList(credentials=[credential_view(r) for r in await self.store.list()])

    async def info(self, query: CredentialRef) -> CredentialView:
        record = await self.store.get(query.credential_name)
        if record is None:
            raise _not_found(query.credential_name)
        return credential_view(record)

    async def update(self, body: UpdateCredential) -> CredentialView:
        try:
            record = await self.store.update(
                body.credential_name, body.api_key, provider=body.provider
            )
        except MasterKeyMissing as exc:
            raise Conflict(str(exc)) from None
        except CredentialNotFoundError:
            raise _not_found(body.credential_name) from None
        except ValueError as exc:
            raise InvalidRequest(_api_message(exc)) from None
        await self._changed()
        return credential_view(record)

    async def delete(self, body: CredentialRef) -> DeletedCredential:
        if not await self.store.delete(body.credential_name):
            raise _not_found(body.credential_name)
        await self._changed()
        return DeletedCredential(deleted_credential=body.credential_name)


def _target(argument: Any, _result: Any) -> str | None:
    """The audited target: the credential's name (never anything of its key)."""
    name = getattr(argument, "credential_name", None)
    return name if isinstance(name, str) else None


def _not_found(name: str) -> NotFound:
    return NotFound(f"no credential named {name[:80]!r}")


def _api_message(error: ValueError) -> str:
    """The store's message in the API's field names (it never quotes a secret)."""
    text = str(error)
    if text.startswith("the secret "):
        return "api_key: " + text[len("the secret ") :]
    return text.replace("credential name", "credential_name")

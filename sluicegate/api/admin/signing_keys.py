"""``/key/signing_key/*``: HMAC request-signing keys of gateway keys (docs/security-auth.md).

``new`` creates a signing key for a gateway key and answers its secret, once; the gateway
keeps it sealed under the master key (without one configured the answer is a 409 naming
the setting). ``list`` never shows a secret; ``revoke`` is final. Gateways with
``auth.hmac.enabled`` use a change within ``server.key_sync_interval`` (this one at once).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from sluicegate.api.admin.base import AdminContext, Conflict, Route
from sluicegate.api.admin.schemas import Ref, Strict
from sluicegate.crypto.keyring_source import MasterKeyMissing
from sluicegate.errors import InvalidRequest, NotFound
from sluicegate.policy.auth import SigningSource
from sluicegate.policy.hmac_auth import issue_signing_key
from sluicegate.store.keys import KeyNotFoundError, KeyRecord
from sluicegate.store.signing_keys import (
    SigningKeyNotFoundError,
    SigningKeyRecord,
)


class SigningKeyFor(Strict):
    key_alias: Ref | None = Field(None, description="The gateway key, by name.")
    key_id: Ref | None = Field(None, description="The gateway key, by id.")


class SigningKeyRef(Strict):
    signing_key_id: Ref = Field(description="The signing key (sgk_...).")


class SigningKeyView(BaseModel):
    signing_key_id: str
    key_id: str = Field(description="The gateway key it signs for.")
    master_key_id: str = Field(description="The master key that wraps its secret.")
    status: str = Field(description="active or revoked")
    created_at: datetime
    revoked_at: datetime | None


class NewSigningKey(SigningKeyView):
    secret: str = Field(description="The HMAC secret. Shown only in this answer.")


class SigningKeyList(BaseModel):
    signing_keys: list[SigningKeyView]


def signing_key_view(record: SigningKeyRecord) -> SigningKeyView:
    return SigningKeyView(
        signing_key_id=record.id,
        key_id=record.key_id,
        master_key_id=record.master_key_id,
        status="revoked" if record.revoked_at is not None else "active",
        created_at=record.created_at,
        revoked_at=record.revoked_at,
    )


def _signing_target(argument: object, result: object) -> str | None:
    return result.signing_key_id if isinstance(result, SigningKeyView) else None


class SigningKeyRoutes:
    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        tags, errors = ("signing keys",), (400, 401, 403, 404, 409)
        return [
            Route("POST", "/key/signing_key/new",
                  "Create an HMAC signing key for a gateway key; the secret is shown once.",
                  self.new, NewSigningKey, body=SigningKeyFor, errors=errors, tags=tags,
                  target_type="signing_key", target=_signing_target),
            Route("GET", "/key/signing_key/list", "Signing keys (of one gateway key, if named).",
                  self.list, SigningKeyList, query=SigningKeyFor, errors=errors[:-1], tags=tags),
            Route("POST", "/key/signing_key/revoke", "Revoke a signing key (final).",
                  self.revoke, SigningKeyView, body=SigningKeyRef, errors=errors[:-1],
                  tags=tags, target_type="signing_key", target=_signing_target),
        ]  # fmt: skip

    @property
    def source(self) -> SigningSource:
        signing = self.ctx.cache.signing
        if signing is None:
            raise Conflict("signing keys are not available on this gateway")
        return signing

    async def _key(self, body: SigningKeyFor, *, required: bool) -> KeyRecord | None:
        if body.key_alias is not None and body.key_id is not None:
            raise InvalidRequest("key_alias, key_id: name the key one way")
        ref = body.key_id if body.key_id is not None else body.key_alias
        if ref is None:
            if required:
                raise InvalidRequest("name the key: key_alias or key_id")
            return None
        try:
            return await self.ctx.keys.get(ref)
        except KeyNotFoundError:
            raise NotFound(f"no key named or with id {ref[:80]!r}") from None

    async def new(self, body: SigningKeyFor) -> NewSigningKey:
        key = await self._key(body, required=True)
        assert key is not None
        if key.revoked_at is not None:
            raise InvalidRequest(f"key {key.name!r} is revoked")
        source = self.source
        try:
            keyring = source.keyring.keyring()
        except MasterKeyMissing as exc:
            raise Conflict(str(exc)) from None
        try:
            record, secret = await issue_signing_key(source.store, keyring, key.id)
        except KeyNotFoundError:  # revoked meanwhile
            raise InvalidRequest(f"key {key.name!r} is revoked") from None
        await self.ctx.cache.reload()
        return NewSigningKey(secret=secret, **signing_key_view(record).model_dump())

    async def list(self, query: SigningKeyFor) -> SigningKeyList:
        key = await self._key(query, required=False)
        records = await self.source.store.list(key_id=key.id if key else None)
        return SigningKeyList(signing_keys=[signing_key_view(r) for r in records])

    async def revoke(self, body: SigningKeyRef) -> SigningKeyView:
        try:
            record = await self.source.store.revoke(body.signing_key_id)
        except SigningKeyNotFoundError:
            raise NotFound(f"no signing key with id {body.signing_key_id[:40]!r}") from None
        await self.ctx.cache.reload()
        return signing_key_view(record)

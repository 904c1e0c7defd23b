"""The stored model deployments (``sluicegate.store.deployments``) on SQLite and PostgreSQL:
validation by the config file's rules, unique names across config and database, merged
updates, change fingerprints."""

from __future__ import annotations

from typing import Any

import pytest

from sluicegate.store.deployments import (
    DeploymentNotFoundError,
    DeploymentStore,
    DuplicateDeploymentError,
)
from sluicegate.store.migrate import upgrade
from tests.integration.store_backends import Backend, backend_fixture  # noqa: F401


@pytest.fixture
async def store(backend: Backend) -> Any:
    await upgrade(backend.url, schema=backend.schema)
    engine = backend.engine()
    try:
        yield DeploymentStore(engine)
    finally:
        await engine.dispose()


PARAMS = {"provider": "openai", "api_base": "http://127.0.0.1:1/v1/", "credential": "c"}


async def test_store_create_update_delete_and_fingerprint(store: DeploymentStore) -> None:
    empty = await store.fingerprint()
    assert empty == (0, None)
    first = await store.create("m", PARAMS, reserved=["m"])
    assert first.deployment_id == "m#2"  # "m" is the config file's
    assert first.params == {**PARAMS, "api_base": "http://127.0.0.1:1/v1"}
    second = await store.create("m", {**PARAMS, "weight": 2.0})
    assert second.deployment_id == "m"  # free in the database, nothing reserved
    with pytest.raises(DuplicateDeploymentError):
        await store.create("other", PARAMS, "m#2")
    with pytest.raises(DuplicateDeploymentError):
        await store.create("other", PARAMS, "cfg", reserved=["cfg"])
    with pytest.raises(ValueError, match="row id"):
        await store.create("other", PARAMS, "dep_" + "0" * 24)
    with pytest.raises(ValueError, match=r"params\.api_key"):
        await store.create("other", {**PARAMS, "api_key": "sk"})
    with pytest.raises(ValueError, match=r"params\.timeouts\.connect"):
        await store.create("other", {**PARAMS, "timeouts": {"connect": -1}})
    after_create = await store.fingerprint()
    assert after_create[0] == 2

    changed = await store.update(first.id, params={"weight": 0.5, "credential": None})
    assert changed.params == {
        "provider": "openai",
        "api_base": "http://127.0.0.1:1/v1",
        "weight": 0.5,
    }
    assert changed.entry().credential is None and changed.entry().weight == 0.5
    moved = await store.fingerprint()
    assert moved[0] == 2 and moved[1] is not None and moved[1] > after_create[1]  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"params\.weight"):
        await store.update("m", params={"weight": -1})
    assert (await store.get("m")).params["weight"] == 2.0  # unchanged by the refusal

    assert [r.id for r in await store.list()] == [first.id, second.id]
    assert (await store.delete("m#2")).id == first.id
    with pytest.raises(DeploymentNotFoundError):
        await store.get(first.id)
    with pytest.raises(DeploymentNotFoundError):
        await store.delete("m#2")
    assert (await store.fingerprint())[0] == 1

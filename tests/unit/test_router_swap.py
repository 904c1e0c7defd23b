"""The router rebuilt in place (Router.replace): one swap, in-flight routes untouched,
credentials by name, stored deployments beside the config file's."""

from __future__ import annotations

from typing import Any

import pytest

from sluicegate.delivery.attempts import Deliverer
from sluicegate.routing.router import Router
from sluicegate.settings import ModelEntry, Secret, Timeouts, settings_from_mapping
from sluicegate.settings_delivery import RoutingSettings

MASTER = {"master_key": "a" * 64}


def entries(*items: dict[str, Any]) -> list[ModelEntry]:
    return settings_from_mapping({"model_list": list(items), "secrets": MASTER}).model_list


def entry(name: str, **extra: Any) -> dict[str, Any]:
    return {"model_name": name, "provider": "anthropic", "api_base": "https://config", **extra}


def stored(name: str, deployment_id: str, **extra: Any) -> ModelEntry:
    return ModelEntry.model_validate({**entry(name, deployment_id=deployment_id), **extra})


def test_replace_swaps_one_table_and_keeps_resolved_routes() -> None:
    config = entries(entry("claude-*", api_key="k-config"))
    router = Router(config, Timeouts())
    before_table = router.table
    old_routes = router.resolve("claude-x")
    assert [r.deployment.api_base for r in old_routes] == ["https://config"]
    assert "claude-x" in before_table.memo

    new = stored("claude-x", "db-x", api_base="https://db", credential="prod")
    table = router.replace(config, {"prod": Secret("k-db")}, [new])

    assert router.table is table and table is not before_table
    # The exact stored alias now wins over the pattern; the memo of the old table is gone.
    routes = router.resolve("claude-x")
    assert [(r.deployment.name, r.deployment.api_base) for r in routes] == [("db-x", "https://db")]
    assert routes[0].deployment.api_key == Secret("k-db")
    assert table.memo == {}
    # What a request resolved before the swap is what it keeps using.
    assert [r.deployment.api_base for r in old_routes] == ["https://config"]
    assert old_routes[0].deployment.api_key == Secret("k-config")
    assert router.deployment_names() == {"claude-*", "db-x"}
    assert router.listed_models()[0] == "claude-x"


def test_credentials_are_looked_up_by_name_and_missing_ones_leave_the_entry_out() -> None:
    config = entries(
        entry("by-name", credential="anthropic-prod"),
        entry("missing", credential="nowhere"),
    )
    router = Router(config, Timeouts())
    # Until the credentials are known, entries naming one serve nothing.
    assert router.resolve("by-name") == []
    assert set(router.table.skipped) == {"by-name", "missing"}

    table = router.replace(config, {"anthropic-prod": Secret("sk-ant-1")})
    assert router.resolve("by-name")[0].deployment.api_key == Secret("sk-ant-1")
    assert router.resolve("missing") == []
    assert table.skipped == {"missing": "credential 'nowhere' is missing or cannot be opened"}

    router.replace(config, {"anthropic-prod": Secret("sk-ant-2")})
    assert router.resolve("by-name")[0].deployment.api_key == Secret("sk-ant-2")


def test_stored_entries_keep_config_names_and_order() -> None:
    config = entries(entry("m", api_key="k"), entry("m", api_key="k", api_base="https://two"))
    router = Router(config, Timeouts())
    assert [r.deployment.name for r in router.resolve("m")] == ["m#1", "m#2"]

    clash = stored("other", "m#1", api_base="https://clash")
    extra = stored("m", "m-db", api_base="https://db")
    table = router.replace(config, {}, [clash, extra])
    # A stored deployment of the same alias joins it after the config's; config names are
    # unchanged, and a stored name the config file uses is left out.
    assert [r.deployment.name for r in router.resolve("m")] == ["m#1", "m#2", "m-db"]
    assert router.resolve("other") == []
    assert table.skipped == {"m#1": "the config file has a deployment of this name"}
    assert router.deployments_of("m")[-1].api_base == "https://db"


def test_context_windows_follow_the_table_and_the_deliverer_rereads_them() -> None:
    config = entries(entry("m", api_key="k"))
    router = Router(config, Timeouts())
    deliverer = Deliverer(RoutingSettings(), router, None)
    assert not router.has_context_windows()
    router.replace(config, {}, [stored("big", "big-db", api_key=None, context_window=1000)])
    assert router.has_context_windows()
    deliverer.routes_changed()
    routes = router.resolve("big")
    # With a window known, a request too large for it has no route left in the plan.
    assert deliverer.plan("big", routes, lambda: 5000) == []
    assert deliverer.plan("big", routes, lambda: 10) == routes


def test_builtin_fake_is_kept_across_replacements() -> None:
    config = entries(entry("demo", api_base="builtin:fake"))
    router = Router(config, Timeouts(), ("http://127.0.0.1:9", Secret("fake")))
    router.replace(config, {})
    deployment = router.resolve("demo")[0].deployment
    assert deployment.api_base == "http://127.0.0.1:9" and deployment.api_key == Secret("fake")


def test_config_entry_cannot_have_both_key_and_credential() -> None:
    from sluicegate.settings import ConfigError

    with pytest.raises(ConfigError, match="give api_key or credential, not both"):
        entries(entry("m", api_key="k", credential="c"))
    with pytest.raises(ConfigError, match=r"need secrets\.master_key"):
        settings_from_mapping({"model_list": [entry("m", credential="c")]})

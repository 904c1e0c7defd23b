"""Model deployments defined in the database (``/model/*``) beside the config file's, served
by real gateway processes against fake upstreams: made, used, changed and deleted through
the admin API, followed by a second gateway on the same database without a restart, named
credentials in config-file entries, capacity limits, and the upstream host allow-list.
(Request tricks against upstream URLs: test_upstream_host_tricks.py; the store itself:
test_store_deployments.py.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import anthropic
import openai
import pytest
import yaml

from sluicegate.crypto.envelope import generate_master_key
from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import (
    UPSTREAM_KEY,
    Gateway,
    free_port,
    model_entry,
    running_fake,
    sluicegate_cli,
    start_gateway,
)
from tests.integration.admin_http import admin
from tests.integration.test_anthropic_support import key_headers, message_body, raw_request

KEY_A = "sk-ant-db-credential-a-5d0c1e9b7f3a"
KEY_B = "sk-ant-db-credential-b-83b2f6a41c0e"
KEY_CFG = "sk-ant-config-credential-e7a9d2c4b1f6"
MASTER_KEY = generate_master_key()
T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout: float = 10.0) -> T:
    """``check()``'s first truthy result, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.1)


def ask(gateway: Gateway, model: str, *, stream: bool = False) -> str:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.keys["full"], max_retries=0)
    messages: Any = [{"role": "user", "content": "hi"}]
    if stream:
        with client.messages.stream(model=model, max_tokens=8, messages=messages) as events:
            return events.get_final_text()
    message = client.messages.create(model=model, max_tokens=8, messages=messages)
    return message.content[0].text  # type: ignore[union-attr]


def served(gateway: Gateway, model: str) -> bool:
    response = raw_request(
        gateway.url,
        "POST",
        "/v1/messages",
        json.dumps(message_body(model)).encode(),
        key_headers(gateway.keys["full"]),
    )
    return response.status == 200


def gateway_config() -> dict[str, Any]:
    return {
        "secrets": {"master_key": "os.environ/TEST_MASTER_KEY"},
        "security": {"allowed_upstream_hosts": ["127.0.0.1"]},
        "server": {"key_sync_interval": 0.5, "log_level": "info"},
        # A saturated deployment answers 429 at once (no fair-queue wait in these tests).
        "limits": {"queue": {"max_wait": 0}},
    }


@pytest.fixture(scope="module")
def fake_a() -> Iterator[FakeUpstream]:
    with running_fake(KEY_A) as fake:
        yield fake


@pytest.fixture(scope="module")
def fake_b() -> Iterator[FakeUpstream]:
    """Accepts any key: tests read which one arrived."""
    with running_fake(None) as fake:  # type: ignore[arg-type]
        yield fake


@pytest.fixture(scope="module")
def gw(
    fake_a: FakeUpstream, fake_b: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    models: list[dict[str, object]] = [
        model_entry("claude-sonnet-4-6", fake_a.url, api_key="os.environ/TEST_KEY_A"),
        {
            "model_name": "cfg-by-credential",
            "provider": "anthropic",
            "api_base": fake_b.url,
            "credential": "cfg-cred",
        },
    ]
    gateway = start_gateway(
        tmp_path_factory.mktemp("db-models"),
        fake_a,
        model_list=models,
        extra_config=gateway_config(),
        env={"TEST_MASTER_KEY": MASTER_KEY, "TEST_KEY_A": KEY_A, "CFG_SECRET": KEY_CFG},
    )
    gateway.create_key("full")
    yield gateway
    gateway.stop()


def put_credential(gateway: Gateway, name: str, key: str) -> None:
    status, body = admin(
        gateway,
        "POST",
        "/credentials/new",
        {"credential_name": name, "provider": "anthropic", "api_key": key},
    )
    assert status == 200, body


def test_model_made_changed_and_deleted_through_the_admin_api(
    gw: Gateway, fake_a: FakeUpstream, fake_b: FakeUpstream
) -> None:
    put_credential(gw, "cred-a", KEY_A)
    status, made = admin(
        gw,
        "POST",
        "/model/new",
        {
            "model_name": "db-model",
            "params": {
                "provider": "anthropic",
                "api_base": fake_a.url + "/",
                "model": "claude-opus-4-7",
                "credential": "cred-a",
                "limits": {"rpm": 1000},
            },
        },
    )
    assert status == 200, made
    assert made["id"].startswith("dep_") and made["deployment_id"] == "db-model"
    assert made["source"] == "database" and made["status"] == "active"
    assert made["params"]["api_base"] == fake_a.url  # normalised as a config entry is
    assert made["params"]["credential"] == "cred-a"

    # Serves at once (no sync wait): the fake sees the stored key and the upstream model.
    fake_a.reset()
    assert "You said: hi" in ask(gw, "db-model")
    call = fake_a.calls[-1]
    assert call.headers["x-api-key"] == KEY_A
    assert (
        call.json is not None
        and call.json["model"] == "claude-opus-4-7"
        and call.path == "/v1/messages"
    )
    assert "You said: hi" in ask(gw, "db-model", stream=True)
    assert fake_a.calls[-1].headers["x-api-key"] == KEY_A

    # Listed by /v1/models on both surfaces.
    anthropic_models = anthropic.Anthropic(base_url=gw.url, api_key=gw.keys["full"]).models
    assert "db-model" in [m.id for m in anthropic_models.list()]
    chat = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.keys["full"], max_retries=0)
    assert "db-model" in [m.id for m in chat.models.list()]

    # The list shows config and stored entries, never a key.
    status, listed = admin(gw, "GET", "/model/list")
    assert status == 200
    by_id = {m["deployment_id"]: m for m in listed["data"]}
    assert by_id["claude-sonnet-4-6"]["source"] == "config"
    assert by_id["claude-sonnet-4-6"]["has_api_key"] is True
    assert by_id["claude-sonnet-4-6"]["id"] is None
    assert by_id["db-model"]["source"] == "database"
    text = json.dumps(listed)
    assert KEY_A not in text and KEY_B not in text and UPSTREAM_KEY not in text
    status, info = admin(gw, "GET", "/model/info?deployment_id=db-model")
    assert status == 200 and info == by_id["db-model"]
    status, info = admin(gw, "GET", f"/model/info?deployment_id={made['id']}")
    assert status == 200 and info["deployment_id"] == "db-model"

    # Moved to another upstream and credential: in force before the answer.
    put_credential(gw, "cred-b", KEY_B)
    status, changed = admin(
        gw,
        "POST",
        "/model/update",
        {"deployment_id": "db-model", "params": {"api_base": fake_b.url, "credential": "cred-b"}},
    )
    assert status == 200, changed
    assert changed["params"]["limits"] == {"rpm": 1000}  # merged, not replaced
    fake_a.reset()
    fake_b.reset()
    assert "You said: hi" in ask(gw, "db-model")
    assert fake_a.calls == [] and fake_b.calls[-1].headers["x-api-key"] == KEY_B
    # null removes a field: the client's model name goes upstream again.
    status, changed = admin(
        gw, "POST", "/model/update", {"deployment_id": "db-model", "params": {"model": None}}
    )
    assert status == 200 and "model" not in changed["params"]
    ask(gw, "db-model")
    assert (fake_b.calls[-1].json or {})["model"] == "db-model"

    status, deleted = admin(gw, "POST", "/model/delete", {"deployment_id": "db-model"})
    assert status == 200 and deleted == {"deleted_deployment": "db-model"}
    calls = len(fake_b.calls)
    with pytest.raises(anthropic.NotFoundError):
        ask(gw, "db-model")
    assert len(fake_b.calls) == calls
    status, _ = admin(gw, "GET", "/model/info?deployment_id=db-model")
    assert status == 404


def test_config_entries_are_read_only_and_bad_requests_are_refused(
    gw: Gateway, fake_a: FakeUpstream
) -> None:
    for path, body in [
        ("/model/update", {"deployment_id": "claude-sonnet-4-6", "params": {"weight": 2}}),
        ("/model/delete", {"deployment_id": "claude-sonnet-4-6"}),
    ]:
        status, refused = admin(gw, "POST", path, body)
        assert status == 409, refused
        assert "config file" in refused["error"]["message"]
    status, refused = admin(gw, "POST", "/model/delete", {"deployment_id": "no-such"})
    assert status == 404 and refused["error"]["type"] == "not_found_error"

    base = {"provider": "anthropic", "api_base": fake_a.url}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"model_name": "m", "params": {**base, "api_key": "sk-x"}}, 400, "params.api_key"),
        ({"model_name": "m", "params": {**base, "credential": "nope"}}, 400, "no credential"),
        ({"model_name": "m", "params": {**base, "provider": "bedrock"}}, 400, "params.provider"),
        ({"model_name": "m", "params": {"provider": "anthropic"}}, 400, "params.api_base"),
        ({"model_name": "m", "params": {**base, "api_base": "builtin:fake"}}, 400, "config file"),
        ({"model_name": "m", "params": {**base, "bogus": 1}}, 400, "params.bogus"),
        ({"model_name": "bad name", "params": base}, 400, "model_name"),
        (
            {"model_name": "m", "params": base, "deployment_id": "claude-sonnet-4-6"},
            409,
            "already used",
        ),
    ]
    for body, status_wanted, fragment in cases:
        status, refused = admin(gw, "POST", "/model/new", body)
        assert status == status_wanted, (body, refused)
        assert fragment in refused["error"]["message"], (body, refused)
        assert "sk-x" not in json.dumps(refused)


def test_stored_deployment_capacity_is_enforced_and_follows_updates(
    gw: Gateway, fake_a: FakeUpstream
) -> None:
    put_credential(gw, "cred-limited", KEY_A)
    params = {
        "provider": "anthropic",
        "api_base": fake_a.url,
        "credential": "cred-limited",
        "limits": {"rpm": 1},
    }
    status, _ = admin(gw, "POST", "/model/new", {"model_name": "limited", "params": params})
    assert status == 200
    ask(gw, "limited")
    with pytest.raises(anthropic.RateLimitError) as refused:
        ask(gw, "limited")
    assert "model deployment 'limited' is at its capacity" in str(refused.value)
    status, _ = admin(
        gw,
        "POST",
        "/model/update",
        {"deployment_id": "limited", "params": {"limits": {"rpm": 1000}}},
    )
    assert status == 200
    assert "You said: hi" in ask(gw, "limited")
    admin(gw, "POST", "/model/delete", {"deployment_id": "limited"})


def test_config_entry_names_a_credential_stored_later(gw: Gateway, fake_b: FakeUpstream) -> None:
    status, info = admin(gw, "GET", "/model/info?deployment_id=cfg-by-credential")
    assert status == 200 and info["params"]["credential"] == "cfg-cred"
    if info["status"] == "inactive":  # the credential is stored by this test (below)
        assert "cfg-cred" in info["inactive_reason"]
        assert not served(gw, "cfg-by-credential")
    # Stored with the CLI (another process): the running gateway picks it up by itself.
    gw.cli(
        "credentials",
        "set",
        "cfg-cred",
        "--provider",
        "anthropic",
        "--from-env",
        "CFG_SECRET",
        "--config",
        str(gw.config),
    )
    fake_b.reset()
    eventually(lambda: served(gw, "cfg-by-credential"))
    assert fake_b.calls[-1].headers["x-api-key"] == KEY_CFG
    config_text = gw.config.read_text()
    assert KEY_CFG not in config_text and "cfg-cred" in config_text
    status, info = admin(gw, "GET", "/model/info?deployment_id=cfg-by-credential")
    assert info["status"] == "active" and info["inactive_reason"] is None


def test_second_gateway_on_the_same_database_follows_without_restart(
    gw: Gateway,
    fake_a: FakeUpstream,
    fake_b: FakeUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    config = yaml.safe_load(gw.config.read_text())
    second = start_gateway(
        tmp_path_factory.mktemp("db-models-second"),
        fake_a,
        model_list=config["model_list"],
        extra_config={**gateway_config(), "database_url": config["database_url"]},
        env=gw.env,
    )
    second.keys["full"] = gw.keys["full"]  # one database: the same keys
    try:
        put_credential(gw, "shared-a", KEY_A)
        status, made = admin(
            gw,
            "POST",
            "/model/new",
            {
                "model_name": "shared-model",
                "params": {
                    "provider": "anthropic",
                    "api_base": fake_a.url,
                    "credential": "shared-a",
                },
            },
        )
        assert status == 200, made
        fake_a.reset()
        eventually(lambda: served(second, "shared-model"))
        assert fake_a.calls[-1].headers["x-api-key"] == KEY_A

        # Changed on the first: the second follows (another upstream, another key).
        put_credential(gw, "shared-b", KEY_B)
        status, _ = admin(
            gw,
            "POST",
            "/model/update",
            {
                "deployment_id": "shared-model",
                "params": {"api_base": fake_b.url, "credential": "shared-b"},
            },
        )
        assert status == 200
        fake_b.reset()

        def moved() -> bool:
            return served(second, "shared-model") and bool(fake_b.calls)

        eventually(moved)
        assert fake_b.calls[-1].headers["x-api-key"] == KEY_B

        # A new secret under the same credential name reaches the second gateway too.
        status, _ = admin(
            gw,
            "POST",
            "/credentials/update",
            {"credential_name": "shared-b", "api_key": KEY_B + "-v2"},
        )
        assert status == 200

        def new_secret() -> bool:
            fake_b.reset()
            return served(second, "shared-model") and (
                fake_b.calls[-1].headers["x-api-key"] == KEY_B + "-v2"
            )

        eventually(new_secret)

        status, _ = admin(gw, "POST", "/model/delete", {"deployment_id": "shared-model"})
        assert status == 200
        eventually(lambda: not served(second, "shared-model"))
        status, listed = admin(second, "GET", "/model/list")
        assert "shared-model" not in {m["deployment_id"] for m in listed["data"]}
    finally:
        second.stop()


def test_allow_list_refuses_other_hosts(gw: Gateway, fake_a: FakeUpstream, tmp_path: Path) -> None:
    put_credential(gw, "cred-allow", KEY_A)
    elsewhere = f"http://localhost:{fake_a.port}"  # the same server, by a host not allowed
    params = {"provider": "anthropic", "api_base": elsewhere, "credential": "cred-allow"}
    status, refused = admin(gw, "POST", "/model/new", {"model_name": "far", "params": params})
    assert status == 400
    assert "'localhost' is not in security.allowed_upstream_hosts" in refused["error"]["message"]
    assert refused["error"]["message"].startswith("params.api_base")

    params["api_base"] = fake_a.url
    status, _ = admin(gw, "POST", "/model/new", {"model_name": "near", "params": params})
    assert status == 200
    status, refused = admin(
        gw,
        "POST",
        "/model/update",
        {"deployment_id": "near", "params": {"api_base": "http://10.0.0.1"}},
    )
    assert status == 400 and "'10.0.0.1' is not in" in refused["error"]["message"]
    status, info = admin(gw, "GET", "/model/info?deployment_id=near")
    assert info["params"]["api_base"] == fake_a.url  # unchanged
    admin(gw, "POST", "/model/delete", {"deployment_id": "near"})

    # A config file entry outside the list: the configuration is refused, naming the entry.
    bad = {
        "database_url": f"sqlite:///{tmp_path}/x.db",
        "security": {"allowed_upstream_hosts": ["api.anthropic.com"]},
        "model_list": [
            {
                "model_name": "fine",
                "provider": "anthropic",
                "api_base": "https://api.anthropic.com",
            },
            {"model_name": "exfil", "provider": "anthropic", "api_base": "https://evil.test"},
        ],
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    done = sluicegate_cli("check-config", "--config", str(path), check=False)
    assert done.returncode != 0
    assert "model_list[1].api_base (exfil)" in done.stderr + done.stdout
    assert "'evil.test' is not in security.allowed_upstream_hosts" in done.stderr + done.stdout
    served_port = free_port()
    started = sluicegate_cli(
        "serve", "--config", str(path), "--port", str(served_port), check=False
    )
    assert started.returncode != 0 and "model_list[1].api_base (exfil)" in (
        started.stderr + started.stdout
    )

"""``/credentials/*`` on a real gateway: provider keys go in and never come out (not in an
answer, an error, the OpenAPI document, the gateway's log or the database file); the admin
token guards every route; without a master key storing is refused with a clear error."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sluicegate.crypto.envelope import generate_master_key, master_key_id, parse_master_key
from sluicegate.fake_upstream import FakeUpstream
from sluicegate.store.credentials import secret_fingerprint
from tests.gateway_harness import ADMIN_TOKEN, Gateway, start_gateway
from tests.integration.test_admin_keys import call

SECRET = "sk-ant-api03-admin-canary-5e4d3c2b1a0f9e8d"
SECRET_V2 = "sk-proj-admin-canary-v2-7c6b5a4f3e2d1c0b"
MASTER_KEY = generate_master_key()
VIEW_FIELDS = {
    "credential_name", "provider", "fingerprint", "master_key_id", "created_at", "updated_at"
}  # fmt: skip


@pytest.fixture(scope="module")
def keyed(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with a master key (from the environment)."""
    gw = start_gateway(
        tmp_path_factory.mktemp("admin-credentials"),
        upstream,
        extra_config={
            "secrets": {"master_key": "os.environ/TEST_MASTER_KEY"},
            # The most talkative level: still nothing secret may reach the log.
            "server": {"key_sync_interval": 0.5, "max_body_size": "1MiB", "log_level": "debug"},
        },
        env={"TEST_MASTER_KEY": MASTER_KEY},
    )
    yield gw
    gw.stop()


def database_bytes(gateway: Gateway) -> bytes:
    folder = gateway.config.parent
    return b"".join(p.read_bytes() for p in folder.glob("sluicegate.db*"))


def assert_no_secret(*texts: Any) -> None:
    for text in texts:
        dumped = text if isinstance(text, str) else json.dumps(text)
        for secret in (SECRET, SECRET_V2, MASTER_KEY):
            assert secret not in dumped


def test_new_list_info_update_delete(keyed: Gateway) -> None:
    status, made, headers = call(
        keyed,
        "POST",
        "/credentials/new",
        {"credential_name": "anthropic-prod", "provider": "anthropic", "api_key": SECRET},
    )
    assert status == 200, made
    assert set(made) == VIEW_FIELDS
    assert made["credential_name"] == "anthropic-prod" and made["provider"] == "anthropic"
    assert made["fingerprint"] == secret_fingerprint(SECRET)
    assert made["master_key_id"] == master_key_id(parse_master_key(MASTER_KEY))
    assert made["created_at"] == made["updated_at"]
    assert headers["request-id"].startswith("req_")

    status, listed, _ = call(keyed, "GET", "/credentials/list")
    assert status == 200 and made in listed["credentials"]
    status, info, _ = call(keyed, "GET", "/credentials/info?credential_name=anthropic-prod")
    assert status == 200 and info == made

    status, updated, _ = call(
        keyed,
        "POST",
        "/credentials/update",
        {"credential_name": "anthropic-prod", "api_key": SECRET_V2, "provider": "openai"},
    )
    assert status == 200, updated
    assert updated["provider"] == "openai"
    assert updated["fingerprint"] == secret_fingerprint(SECRET_V2)
    assert updated["created_at"] == made["created_at"]
    assert updated["updated_at"] > made["updated_at"]
    status, kept, _ = call(
        keyed,
        "POST",
        "/credentials/update",
        {"credential_name": "anthropic-prod", "api_key": SECRET},
    )
    assert status == 200 and kept["provider"] == "openai"  # not given: unchanged

    status, deleted, _ = call(
        keyed, "POST", "/credentials/delete", {"credential_name": "anthropic-prod"}
    )
    assert status == 200 and deleted == {"deleted_credential": "anthropic-prod"}
    status, gone, _ = call(keyed, "GET", "/credentials/info?credential_name=anthropic-prod")
    assert status == 404
    assert gone == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "no credential named 'anthropic-prod'"},
    }
    for path, body in (
        ("/credentials/delete", {"credential_name": "anthropic-prod"}),
        ("/credentials/update", {"credential_name": "anthropic-prod", "api_key": SECRET}),
    ):
        status, error, _ = call(keyed, "POST", path, body)
        assert status == 404 and error["error"]["type"] == "not_found_error"
        assert_no_secret(error)
    assert_no_secret(made, listed, info, updated, kept, deleted)


def test_duplicate_is_refused(keyed: Gateway) -> None:
    body = {"credential_name": "dup", "provider": "openai", "api_key": SECRET}
    assert call(keyed, "POST", "/credentials/new", body)[0] == 200
    status, error, _ = call(keyed, "POST", "/credentials/new", {**body, "api_key": SECRET_V2})
    assert status == 400
    assert error["error"] == {
        "type": "invalid_request_error",
        "message": "credential_name: a credential named 'dup' already exists",
    }
    _, info, _ = call(keyed, "GET", "/credentials/info?credential_name=dup")
    assert info["fingerprint"] == secret_fingerprint(SECRET)  # not overwritten
    assert call(keyed, "POST", "/credentials/delete", {"credential_name": "dup"})[0] == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"credential_name": "x", "provider": "anthropic"}, "api_key: Field required"),
        ({"credential_name": "x", "provider": "azure", "api_key": SECRET}, "provider: Input"),
        ({"provider": "anthropic", "api_key": SECRET}, "credential_name: Field required"),
        ({"credential_name": "x", "provider": "anthropic", "api_key": SECRET + "\n"},
         "api_key: must not contain control characters"),
        ({"credential_name": "x", "provider": "anthropic", "api_key": " " + SECRET},
         "api_key: must not start or end with whitespace"),
        ({"credential_name": "x", "provider": "anthropic", "api_key": "k" * 4097},
         "api_key: String should have at most 4096 characters"),
        ({"credential_name": "x", "provider": "anthropic", "api_key": 12345},
         "api_key: Input should be a valid string"),
        ({"credential_name": "x", "provider": "anthropic", "api_key": SECRET, "extra": 1},
         "extra: Extra inputs are not permitted"),
        ({"credential_name": "bad\u0001name", "provider": "anthropic", "api_key": SECRET},
         "control characters"),
    ],
)  # fmt: skip
def test_bad_requests_never_echo_the_key(
    keyed: Gateway, body: dict[str, Any], message: str
) -> None:
    status, error, _ = call(keyed, "POST", "/credentials/new", body)
    assert status == 400, error
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]
    assert_no_secret(error)
    _, listed, _ = call(keyed, "GET", "/credentials/list")
    assert "x" not in [c["credential_name"] for c in listed["credentials"]]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/credentials/new",
         {"credential_name": "t", "provider": "anthropic", "api_key": SECRET}),
        ("GET", "/credentials/list", None),
        ("GET", "/credentials/info?credential_name=t", None),
        ("POST", "/credentials/update", {"credential_name": "t", "api_key": SECRET}),
        ("POST", "/credentials/delete", {"credential_name": "t"}),
    ],
)  # fmt: skip
@pytest.mark.parametrize("token", [None, "wrong-token", ADMIN_TOKEN + "x"])
def test_admin_token_required(
    keyed: Gateway, method: str, path: str, body: Any, token: str | None
) -> None:
    status, error, _ = call(keyed, method, path, body, token=token)
    assert status == 401
    assert error == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Invalid or missing admin token."},
    }
    assert call(keyed, "GET", "/credentials/info?credential_name=t")[0] == 404  # not created


def test_without_a_master_key_storing_is_refused(gateway: Gateway) -> None:
    """The session's gateway has no secrets section."""
    for path, body in (
        ("/credentials/new", {"credential_name": "k", "provider": "openai", "api_key": SECRET}),
        ("/credentials/update", {"credential_name": "k", "api_key": SECRET}),
    ):
        status, error, _ = call(gateway, "POST", path, body)
        assert status == 409
        assert error["type"] == "error"
        assert error["error"]["type"] == "invalid_request_error"
        message = error["error"]["message"]
        assert "no master key is configured" in message and "secrets.master_key" in message
        assert_no_secret(error)
    # Nothing secret is needed to list.
    status, listed, _ = call(gateway, "GET", "/credentials/list")
    assert status == 200 and listed == {"credentials": []}
    assert SECRET not in gateway.log_text()


def test_openapi_describes_the_routes(keyed: Gateway) -> None:
    status, document, _ = call(keyed, "GET", "/openapi.json", token=None)
    assert status == 200
    paths = document["paths"]
    for path in ("new", "list", "info", "update", "delete"):
        assert f"/admin/credentials/{path}" in paths
    assert "409" in paths["/admin/credentials/new"]["post"]["responses"]
    assert "404" in paths["/admin/credentials/info"]["get"]["responses"]
    # Served under /admin as well as at the root.
    status, listed, _ = call(keyed, "GET", "/admin/credentials/list")
    assert status == 200 and "credentials" in listed


def test_writes_are_audited_by_name_only(keyed: Gateway) -> None:
    body = {"credential_name": "audited", "provider": "anthropic", "api_key": SECRET}
    assert call(keyed, "POST", "/credentials/new", body)[0] == 200
    update = {"credential_name": "audited", "api_key": SECRET_V2}
    assert call(keyed, "POST", "/credentials/update", update)[0] == 200
    assert call(keyed, "POST", "/credentials/delete", {"credential_name": "audited"})[0] == 200
    status, audit, _ = call(keyed, "GET", "/audit/list?target_id=audited")
    assert status == 200
    entries = audit["entries"]
    assert [e["action"] for e in entries] == [
        "credentials.delete",
        "credentials.update",
        "credentials.new",
    ]
    assert {e["target_type"] for e in entries} == {"credential"}
    assert {e["status"] for e in entries} == {200}
    assert "api_key" in entries[-1]["detail"]["fields"]  # named, its value never recorded
    assert_no_secret(audit)


def test_no_secret_in_the_log_or_the_database_file(keyed: Gateway) -> None:
    """Last in this module: after every request above."""
    body = {"credential_name": "last", "provider": "anthropic", "api_key": SECRET}
    assert call(keyed, "POST", "/credentials/new", body)[0] == 200
    log = keyed.log_text()
    assert "Started server process" in log
    assert_no_secret(log)
    stored = database_bytes(keyed)
    for secret in (SECRET, SECRET_V2, MASTER_KEY):
        assert secret.encode() not in stored
    assert Path(keyed.config).read_text().count("TEST_MASTER_KEY") == 1

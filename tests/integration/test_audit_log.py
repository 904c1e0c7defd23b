"""The audit log on a real gateway process: every admin write is recorded with its actor,
source address, target, request id and outcome; failed logins are recorded (rate-limited);
reads are not; no secret ever reaches the table; ``/audit/list`` and ``sluicegate audit``
read it back with filters and paging."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import ADMIN_TOKEN, Gateway, start_gateway
from tests.integration.admin_http import send

OPS_TOKEN = "sg-audit-ops-token-91b3c7e2d4f6a8"
VIEW_TOKEN = "sg-audit-view-token-5e7a9c1b3d2f40"
WRONG_TOKENS = [f"sg-wrong-admin-token-{n:02d}-c0ffee" for n in range(8)]
METADATA_CANARY = "metadata-canary-7f3e1a9b"
IMPORTED_KEY = "imported-audit-" + "Qm4rT8vL2pX6nN9bC3kD7sW1"
FAILED_PER_MINUTE = 5


@pytest.fixture(scope="module")
def audited(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(
        tmp_path_factory.mktemp("audit"),
        upstream,
        extra_config={
            "admin": {
                "tokens": [
                    {"name": "ops", "token": "os.environ/AUDIT_OPS", "scope": "full"},
                    {"name": "viewer", "token": "os.environ/AUDIT_VIEW", "scope": "read"},
                ],
                "failed_auth_audit_per_minute": FAILED_PER_MINUTE,
            }
        },
        env={"AUDIT_OPS": OPS_TOKEN, "AUDIT_VIEW": VIEW_TOKEN},
    )
    yield gateway
    gateway.stop()


def database(gateway: Gateway) -> Path:
    return Path(gateway.config).parent / "sluicegate.db"


def raw_rows(gateway: Gateway) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database(gateway)) as conn:
        return conn.execute("SELECT * FROM audit_log ORDER BY id").fetchall()


def entries(gateway: Gateway, token: str = OPS_TOKEN, **filters: Any) -> list[dict[str, Any]]:
    status, answer, _ = send(
        gateway.url, "GET", "/admin/audit/list?" + urlencode(filters), token=token
    )
    assert status == 200, answer
    found: list[dict[str, Any]] = answer["entries"]
    return found


def write(gateway: Gateway, path: str, body: Any, token: str = OPS_TOKEN) -> tuple[int, Any, str]:
    status, answer, headers = send(gateway.url, "POST", path, body, token=token)
    return status, answer, headers["request-id"]


def test_admin_writes_are_recorded_without_secrets(audited: Gateway) -> None:
    secrets: list[str] = [ADMIN_TOKEN, OPS_TOKEN, VIEW_TOKEN, *WRONG_TOKENS, METADATA_CANARY]
    status, partner, rid = write(
        audited,
        "/admin/partner/new",
        {"name": "audit-partner", "rpm_limit": 7, "allowed_ips": ["10.0.0.0/8"]},
    )
    assert status == 200
    [entry] = entries(audited, action="partner.new")
    assert entry["actor"] == "ops" and entry["status"] == 200 and entry["request_id"] == rid
    assert (entry["target_type"], entry["target_id"]) == ("partner", partner["partner_id"])
    assert entry["source_ip"] == "127.0.0.1"
    assert entry["detail"] == {
        "fields": ["allowed_ips", "name", "rpm_limit"],
        "values": {"allowed_ips": ["10.0.0.0/8"], "name": "audit-partner", "rpm_limit": 7},
    }

    status, key, _ = write(
        audited,
        "/key/generate",  # a root path: the same route, audited the same way
        {"key_alias": "audit-key", "partner": "audit-partner", "max_budget": 5,
         "metadata": {"note": METADATA_CANARY}},
        token=ADMIN_TOKEN,
    )  # fmt: skip
    assert status == 200
    secrets.append(key["key"])
    key_id = key["key_id"]
    [entry] = entries(audited, action="key.generate", target_id=key_id)
    assert entry["actor"] == "admin"
    assert entry["detail"]["values"] == {
        "key_alias": "audit-key",
        "partner": "audit-partner",
        "max_budget": 5,
    }
    assert "metadata" in entry["detail"]["fields"]

    status, _, _ = write(audited, "/admin/key/update", {"key": key["key"], "rpm_limit": 3})
    assert status == 200
    status, renewed, _ = write(
        audited, "/admin/key/regenerate", {"key_id": key_id, "grace_period": 60}
    )
    assert status == 200
    secrets.append(renewed["key"])
    assert write(audited, "/admin/key/block", {"key_alias": "audit-key"})[0] == 200
    assert write(audited, "/admin/key/unblock", {"key_id": key_id})[0] == 200
    status, imported, _ = write(
        audited, "/admin/key/generate", {"key_alias": "audit-imported", "key": IMPORTED_KEY}
    )
    assert status == 200
    secrets.append(IMPORTED_KEY)
    status, deleted, _ = write(audited, "/admin/key/delete", {"keys": [IMPORTED_KEY]})
    assert status == 200 and deleted["deleted_keys"] == [imported["key_id"]]

    on_key = entries(audited, target_id=key_id)
    assert [e["action"] for e in on_key] == [
        "key.unblock",
        "key.block",
        "key.regenerate",
        "key.update",
        "key.generate",
    ]
    assert on_key[2]["detail"]["values"] == {"key_id": key_id, "grace_period": 60}
    assert on_key[3]["detail"] == {"fields": ["key", "rpm_limit"], "values": {"rpm_limit": 3}}
    [deletion] = entries(audited, action="key.delete")
    assert deletion["target_id"] == imported["key_id"]

    # Refusals are recorded with their status and error type.
    status, _, rid = write(audited, "/admin/key/update", {"key_alias": "nobody", "tpm_limit": 1})
    assert status == 404
    [missing] = entries(audited, target_id="nobody")
    assert (missing["status"], missing["request_id"]) == (404, rid)
    assert missing["detail"]["error"] == "not_found_error"
    assert write(audited, "/admin/partner/new", {"name": ""})[0] == 400
    [invalid] = entries(audited, action="partner.new", limit=1)
    assert invalid["status"] == 400 and invalid["detail"]["error"] == "invalid_request_error"
    assert write(audited, "/admin/partner/delete", {"partner": "x"}, token=VIEW_TOKEN)[0] == 403
    [refused] = entries(audited, actor="viewer")
    assert (refused["action"], refused["status"]) == ("partner.delete", 403)

    # Reads are not recorded.
    before = len(raw_rows(audited))
    for path in ("/admin/key/list", "/admin/partner/list", "/admin/audit/list"):
        assert send(audited.url, "GET", path, token=VIEW_TOKEN)[0] == 200
    assert len(raw_rows(audited)) == before

    # Failed logins: recorded up to the per-minute allowance, with no token in them.
    for wrong in WRONG_TOKENS:
        assert send(audited.url, "GET", "/admin/key/list", token=wrong)[0] == 401
    failed = entries(audited, action="auth.failed")
    assert len(failed) == FAILED_PER_MINUTE
    assert {(e["actor"], e["status"], e["target_id"]) for e in failed} == {
        ("unknown", 401, "/admin/key/list")
    }

    with sqlite3.connect(database(audited)) as conn:
        hashes = [row[0] for row in conn.execute("SELECT key_hash FROM gateway_keys")]
    dump = json.dumps(raw_rows(audited), default=str)
    leaked = [s for s in [*secrets, *hashes] if s in dump]
    assert not leaked, leaked


def test_audit_list_filters_and_pages(audited: Gateway) -> None:
    for n in range(5):
        assert write(audited, "/admin/partner/new", {"name": f"page-{n}"})[0] == 200
    prefixed = entries(audited, action="partner.*")
    assert {e["action"] for e in prefixed} >= {"partner.new"}
    assert all(e["action"].startswith("partner.") for e in prefixed)
    newest = entries(audited, action="partner.new")
    ids = [e["id"] for e in newest]
    assert ids == sorted(ids, reverse=True)
    status, first, _ = send(
        audited.url, "GET", "/admin/audit/list?action=partner.new&limit=2", token=VIEW_TOKEN
    )
    assert status == 200 and [e["id"] for e in first["entries"]] == ids[:2]
    query = urlencode({"action": "partner.new", "limit": 2, "cursor": first["next_cursor"]})
    _, second, _ = send(audited.url, "GET", f"/admin/audit/list?{query}", token=VIEW_TOKEN)
    assert [e["id"] for e in second["entries"]] == ids[2:4]
    everything = entries(audited, action="partner.new", limit=1000)
    assert len(everything) == len(ids)
    since = newest[-1]["created_at"]
    assert entries(audited, since=since, action="partner.new") == newest
    assert entries(audited, until=since, action="partner.new") == []
    assert entries(audited, since="2999-01-01") == []
    for bad in ({"since": "yesterday"}, {"since": "2026-02-02", "until": "2026-02-01"},
                {"limit": "1001"}, {"limit": "0"}, {"cursor": "x"}, {"nope": "1"}):  # fmt: skip
        status, answer, _ = send(
            audited.url, "GET", "/admin/audit/list?" + urlencode(bad), token=VIEW_TOKEN
        )
        assert status == 400 and answer["error"]["type"] == "invalid_request_error", bad


def test_cli_reads_the_audit_log(audited: Gateway) -> None:
    assert write(audited, "/admin/partner/new", {"name": "cli-visible"})[0] == 200
    done = audited.cli("audit", "--config", str(audited.config), "--json", "--action", "partner.*")
    rows = json.loads(done.stdout)
    assert rows[0]["target_id"] and rows[0]["actor"] == "ops"
    assert rows[0]["detail"]["values"] == {"name": "cli-visible"}
    table = audited.cli("audit", "--config", str(audited.config), "--actor", "ops", "--limit", "3")
    assert "partner.new" in table.stdout and "127.0.0.1" in table.stdout
    bad = audited.cli("audit", "--config", str(audited.config), "--since", "soon", check=False)
    assert bad.returncode == 2 and "soon" in bad.stderr

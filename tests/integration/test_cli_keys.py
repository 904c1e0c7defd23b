"""``sluicegate keys create|list|revoke`` run as real commands against their own database.

A key is printed once, alone on stdout, and never again: not by ``keys list`` (table or
JSON), not on stderr, not when a command fails.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import Gateway, sluicegate_cli

ENV = {"CLI_TEST_UPSTREAM_KEY": "sk-ant-cli-test-upstream", "COLUMNS": "200"}
EXPIRES_IN = 1


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("cli-keys")
    path = workdir / "sluicegate.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "database_url": f"sqlite:///{workdir}/x.db",
                "model_list": [
                    {
                        "model_name": "claude-*",
                        "provider": "anthropic",
                        "api_base": "http://127.0.0.1:9",
                        "api_key": "os.environ/CLI_TEST_UPSTREAM_KEY",
                    }
                ],
            }
        )
    )
    return path


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return sluicegate_cli(*args, "--config", str(config), env=ENV, check=False)


def run_many(config: Path, *commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands side by side (each is a process; SQLite serialises writers)."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda args: run(config, *args), commands))


def create(config: Path, name: str, *extra: str) -> str:
    done = run(config, "keys", "create", "--name", name, *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def listed(config: Path) -> tuple[list[dict[str, Any]], str]:
    done = run(config, "keys", "list", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stdout + done.stderr


@pytest.fixture(scope="module")
def expiring(config: Path) -> tuple[str, float]:
    """A key that expires about a second after creation (made early, checked late)."""
    name = "soon-expired"
    create(config, name, "--expires", f"{EXPIRES_IN}s")
    return name, time.monotonic()


def test_create_prints_only_the_key(config: Path, expiring: tuple[str, float]) -> None:
    done = run(config, "keys", "create", "--name", "first", "--models", "claude-sonnet-4-6")

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    key = lines[0]
    assert key == done.stdout.strip()
    assert key.startswith("sk-sg-")
    assert len(key) >= 40
    assert key.isascii() and " " not in key
    assert key not in done.stderr
    assert "first" in done.stderr  # the human-readable note goes to stderr
    assert create(config, "second") != key


def test_imported_strong_key_is_accepted(config: Path) -> None:
    value = secrets.token_urlsafe(32)
    done = run(config, "keys", "create", "--name", "imported", "--key", value)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == value
    rows, text = listed(config)
    assert "imported" in [r["name"] for r in rows]
    assert value not in text


def test_imported_key_works_at_a_running_gateway(gateway: Gateway, fake: FakeUpstream) -> None:
    value = secrets.token_urlsafe(32)
    name = f"imported-{uuid.uuid4().hex[:8]}"
    gateway.create_key(name, "--key", value)
    assert gateway.keys[name] == value

    body = json.dumps(
        {
            "model": "claude-sonnet-4-6",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "x"}],
        }
    ).encode()
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    status = _post_status(gateway, body, {**headers, "x-api-key": value})

    assert status == 200
    assert fake.call_count() == 1


def _post_status(gateway: Gateway, body: bytes, headers: dict[str, str]) -> int:
    import http.client

    port = int(gateway.url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/messages", body=body, headers=headers)
        return conn.getresponse().status
    finally:
        conn.close()


def test_weak_imported_keys_are_refused(config: Path) -> None:
    weak_values = ["sk-1234", "password-password-password", "a" * 30]
    names = [f"weak-{uuid.uuid4().hex[:6]}" for _ in weak_values]
    results = run_many(
        config,
        *(
            ("keys", "create", "--name", n, "--key", w)
            for n, w in zip(names, weak_values, strict=True)
        ),
    )

    for weak, done in zip(weak_values, results, strict=True):
        assert done.returncode != 0, weak
        assert done.stdout == ""
        assert "--key" in done.stderr
        message = done.stderr.lower()
        assert any(word in message for word in ("characters", "guessable", "predictable")), message
        assert weak not in done.stderr  # the refused value is not echoed back
    stored = [r["name"] for r in listed(config)[0]]
    assert not set(names) & set(stored)


def test_duplicate_name_is_refused(config: Path) -> None:
    create(config, "twin")
    done = run(config, "keys", "create", "--name", "twin")

    assert done.returncode != 0
    assert done.stdout == ""  # no key printed for a key that was not stored
    assert "twin" in done.stderr
    assert [r["name"] for r in listed(config)[0]].count("twin") == 1


def test_bad_expiry_is_refused(config: Path) -> None:
    values = ["2000-01-01", "0s", "tomorrow"]
    results = run_many(
        config,
        *(
            ("keys", "create", "--name", f"bad-exp-{i}", "--expires", v)
            for i, v in enumerate(values)
        ),
    )

    for value, done in zip(values, results, strict=True):
        assert done.returncode != 0, value
        assert done.stdout == ""
        assert "--expires" in done.stderr
    assert "past" in results[0].stderr


def test_revoke_by_name_and_by_id(config: Path) -> None:
    run_many(
        config,
        ("keys", "create", "--name", "revoke-by-name"),
        ("keys", "create", "--name", "revoke-by-id"),
    )
    rows, _ = listed(config)
    key_id = next(r["id"] for r in rows if r["name"] == "revoke-by-id")

    by_name, by_id = run_many(
        config, ("keys", "revoke", "revoke-by-name"), ("keys", "revoke", key_id)
    )

    assert by_name.returncode == 0, by_name.stderr
    assert by_id.returncode == 0, by_id.stderr
    status = {r["name"]: r["status"] for r in listed(config)[0]}
    assert status["revoke-by-name"] == "revoked"
    assert status["revoke-by-id"] == "revoked"


def test_revoke_unknown_key_fails(config: Path) -> None:
    done = run(config, "keys", "revoke", "no-such-key")

    assert done.returncode != 0
    assert "no-such-key" in done.stderr


def test_list_shows_status_and_never_a_key(config: Path, expiring: tuple[str, float]) -> None:
    active_key = create(config, "listed-active", "--models", "claude-sonnet-4-6,team-*")
    revoked_key = create(config, "listed-revoked")
    assert run(config, "keys", "revoke", "listed-revoked").returncode == 0
    expired_name, created = expiring
    remaining = created + EXPIRES_IN + 0.2 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)

    json_listing, table = run_many(config, ("keys", "list", "--json"), ("keys", "list"))
    assert json_listing.returncode == 0, json_listing.stderr
    rows, json_text = json.loads(json_listing.stdout), json_listing.stdout + json_listing.stderr

    assert table.returncode == 0, table.stderr
    by_name = {r["name"]: r for r in rows}
    assert by_name["listed-active"]["status"] == "active"
    assert by_name["listed-active"]["models"] == ["claude-sonnet-4-6", "team-*"]
    assert by_name["listed-revoked"]["status"] == "revoked"
    assert by_name[expired_name]["status"] == "expired"
    assert by_name[expired_name]["expires_at"] is not None
    for row in rows:
        assert set(row) >= {"id", "name", "status"}
    for key in (active_key, revoked_key):
        assert key not in json_text
        assert key not in table.stdout + table.stderr
        # A hint may show the last characters, never the secret part of the key.
        assert key[6:20] not in json_text
        assert key[6:20] not in table.stdout
    for name, status in (("listed-active", "active"), ("listed-revoked", "revoked")):
        line = next(line for line in table.stdout.splitlines() if name in line)
        assert status in line
    assert "expired" in table.stdout

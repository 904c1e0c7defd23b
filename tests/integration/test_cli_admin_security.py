"""The CLI's security flags as real commands on their own database: ``--allowed-ip`` on
``keys create|update`` and ``partners create|update``, and ``keys regenerate|block|unblock``
(their effect on a running gateway is in test_key_regenerate.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gateway_harness import sluicegate_cli

ENV = {"COLUMNS": "240"}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("cli-security")
    path = workdir / "sluicegate.yaml"
    path.write_text(yaml.safe_dump({"database_url": f"sqlite:///{workdir}/x.db"}))
    return path


def run(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sluicegate_cli(*args, "--config", str(config), env=ENV, check=check)


def key_row(config: Path, name: str) -> dict[str, Any]:
    rows = json.loads(run(config, "keys", "list", "--json").stdout)
    row: dict[str, Any] = next(r for r in rows if r["name"] == name)
    return row


def partner_row(config: Path, name: str) -> dict[str, Any]:
    rows = json.loads(run(config, "partners", "list", "--json").stdout)
    row: dict[str, Any] = next(r for r in rows if r["name"] == name)
    return row


def test_allowed_ip_on_keys(config: Path) -> None:
    run(config, "keys", "create", "--name", "fenced", "--allowed-ip", "10.0.0.0/8",
        "--allowed-ip", "2001:db8::1")  # fmt: skip
    assert key_row(config, "fenced")["allowed_ips"] == ["10.0.0.0/8", "2001:db8::1/128"]
    run(config, "keys", "update", "fenced", "--allowed-ip", "192.168.0.0/16")
    assert key_row(config, "fenced")["allowed_ips"] == ["192.168.0.0/16"]
    run(config, "keys", "update", "fenced", "--allowed-ip", "")
    assert key_row(config, "fenced")["allowed_ips"] == []
    bad = run(config, "keys", "update", "fenced", "--allowed-ip", "10.0.0.1/8", check=False)
    assert bad.returncode == 2 and "host bits" in bad.stderr and "Traceback" not in bad.stderr
    bad = run(config, "keys", "create", "--name", "x", "--allowed-ip", "nope", check=False)
    assert bad.returncode == 2 and "allowed_ips" in bad.stderr and not bad.stdout


def test_allowed_ip_on_partners(config: Path) -> None:
    run(config, "partners", "create", "walled", "--allowed-ip", "198.51.100.0/24")
    assert partner_row(config, "walled")["allowed_ips"] == ["198.51.100.0/24"]
    run(config, "partners", "update", "walled", "--allowed-ip", "203.0.113.0/24",
        "--allowed-ip", "198.51.100.0/24")  # fmt: skip
    assert partner_row(config, "walled")["allowed_ips"] == ["203.0.113.0/24", "198.51.100.0/24"]
    run(config, "partners", "update", "walled", "--allowed-ip", "")
    assert partner_row(config, "walled")["allowed_ips"] == []
    bad = run(config, "partners", "update", "walled", "--allowed-ip", "300.1.1.1", check=False)
    assert bad.returncode == 2 and "not a CIDR network" in bad.stderr


def test_block_unblock_regenerate(config: Path) -> None:
    old = run(config, "keys", "create", "--name", "cycle").stdout.strip()
    run(config, "keys", "block", "cycle")
    assert key_row(config, "cycle")["status"] == "blocked"
    assert "blocked" in run(config, "keys", "list").stdout
    run(config, "keys", "unblock", "cycle")
    row = key_row(config, "cycle")
    assert row["status"] == "active" and row["blocked"] is False
    done = run(config, "keys", "regenerate", "cycle", "--grace", "3600")
    new = done.stdout.strip()
    assert new.startswith("sk-sg-") and new != old
    row = key_row(config, "cycle")
    assert row["hint"].endswith(new[-4:])
    assert row["previous_key_expires_at"] is not None
    listing = run(config, "keys", "list", "--json").stdout + run(config, "keys", "list").stdout
    assert old not in listing and new not in listing
    for command in (("keys", "block", "ghost"), ("keys", "regenerate", "ghost")):
        missing = run(config, *command, check=False)
        assert missing.returncode == 2 and "no key named" in missing.stderr
    too_long = run(config, "keys", "regenerate", "cycle", "--grace", "604801", check=False)
    assert too_long.returncode == 2
    run(config, "keys", "revoke", "cycle")
    revoked = run(config, "keys", "block", "cycle", check=False)
    assert revoked.returncode == 2 and "revoked" in revoked.stderr

"""``sluicegate partners ...`` and the governance options of ``sluicegate keys ...``, run as
real commands against their own SQLite database.

Scripts rely on these forms: ``partners create`` prints the id alone on stdout; a bad value
is one ``error:`` line on stderr with exit 2 (never a traceback); deleting a partner that
still has keys is refused with exit 1.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gateway_harness import sluicegate_cli

ENV = {"CLI_TEST_UPSTREAM_KEY": "sk-ant-cli-test-upstream", "COLUMNS": "220"}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("cli-partners")
    path = workdir / "sluicegate.yaml"
    model = {
        "model_name": "claude-*",
        "provider": "anthropic",
        "api_base": "http://127.0.0.1:9",
        "api_key": "os.environ/CLI_TEST_UPSTREAM_KEY",
    }
    path.write_text(
        yaml.safe_dump({"database_url": f"sqlite:///{workdir}/x.db", "model_list": [model]})
    )
    return path


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return sluicegate_cli(*args, "--config", str(config), env=ENV, check=False)


def ok(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = run(config, *args)
    assert done.returncode == 0, done.stderr
    return done


def refused(config: Path, *args: str, code: int = 2) -> str:
    """The one-line error of a refused command (no traceback, nothing on stdout)."""
    done = run(config, *args)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def partners(config: Path) -> dict[str, dict[str, Any]]:
    rows = json.loads(ok(config, "partners", "list", "--json").stdout)
    return {r["name"]: r for r in rows}


def keys(config: Path) -> dict[str, dict[str, Any]]:
    rows = json.loads(ok(config, "keys", "list", "--json").stdout)
    return {r["name"]: r for r in rows}


def test_create_prints_the_id_and_list_shows_settings(config: Path) -> None:
    done = ok(
        config, "partners", "create", "acme", "--weight", "2.5", "--rpm", "100",
        "--tpm", "50000", "--max-parallel", "4", "--budget", "12.5", "--budget-period", "weekly",
    )  # fmt: skip
    partner_id = done.stdout.strip()
    assert re.fullmatch(r"ptn_[0-9a-f]{24}", partner_id)
    assert done.stdout == partner_id + "\n"
    assert "acme" in done.stderr

    row = partners(config)["acme"]
    assert row["id"] == partner_id
    assert (row["weight"], row["rpm"], row["tpm"], row["max_parallel"]) == (2.5, 100, 50000, 4)
    assert (row["budget_usd"], row["budget_period"]) == (12.5, "weekly")

    table = ok(config, "partners", "list").stdout
    line = next(line for line in table.splitlines() if "acme" in line)
    assert "rpm 100" in line and "$12.5 weekly" in line and "2.5" in line


def test_budget_without_period_is_monthly(config: Path) -> None:
    ok(config, "partners", "create", "monthly-co", "--budget", "3")
    row = partners(config)["monthly-co"]
    assert (row["budget_usd"], row["budget_period"], row["weight"]) == (3.0, "monthly", 1.0)
    assert row["rpm"] is None


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--rpm", "ten"), "--rpm"),
        (("--rpm", "-1"), "--rpm"),
        (("--tpm", "1.5"), "--tpm"),
        (("--max-parallel", "x"), "--max-parallel"),
        (("--budget", "lots"), "--budget"),
        (("--budget", "-2"), "--budget"),
        (("--budget", "nan"), "--budget"),
        (("--budget-period", "daily"), "--budget-period"),
        (("--budget", "5", "--budget-period", "yearly"), "--budget-period"),
        (("--weight", "0"), "--weight"),
        (("--weight", "heavy"), "--weight"),
    ],
)
def test_create_rejects_bad_values_in_one_line(
    config: Path, args: tuple[str, ...], fragment: str
) -> None:
    message = refused(config, "partners", "create", "bad-partner", *args)
    assert fragment in message
    assert "bad-partner" not in partners(config)


def test_duplicate_and_id_shaped_names_are_refused(config: Path) -> None:
    ok(config, "partners", "create", "twin-co")
    assert "twin-co" in refused(config, "partners", "create", "twin-co")
    assert "id" in refused(config, "partners", "create", "ptn_" + "0" * 24)


def test_update_changes_and_zero_clears(config: Path) -> None:
    ok(config, "partners", "create", "upd-co", "--rpm", "10", "--tpm", "99", "--budget", "5")
    ok(config, "partners", "update", "upd-co", "--rpm", "0", "--weight", "4", "--max-parallel", "2")
    row = partners(config)["upd-co"]
    assert (row["rpm"], row["tpm"], row["max_parallel"], row["weight"]) == (None, 99, 2, 4.0)
    assert (row["budget_usd"], row["budget_period"]) == (5.0, "monthly")

    ok(config, "partners", "update", row["id"], "--budget-period", "daily")  # by id
    assert partners(config)["upd-co"]["budget_period"] == "daily"
    ok(config, "partners", "update", "upd-co", "--budget", "0", "--rename", "upd-co-2")
    row = partners(config)["upd-co-2"]
    assert (row["budget_usd"], row["budget_period"]) == (None, None)

    assert "--budget-period" in refused(
        config, "partners", "update", "upd-co-2", "--budget-period", "weekly"
    )
    assert "nothing to change" in refused(config, "partners", "update", "upd-co-2")
    assert "no-such-co" in refused(config, "partners", "update", "no-such-co", "--rpm", "1")


def test_keys_with_partner_limits_and_budget(config: Path) -> None:
    ok(config, "partners", "create", "owner-co")
    key = ok(
        config, "keys", "create", "--name", "owned-key", "--partner", "owner-co",
        "--rpm", "30", "--tpm", "1000", "--max-parallel", "3", "--budget", "1.5",
        "--budget-period", "daily",
    ).stdout.strip()  # fmt: skip
    assert key.startswith("sk-sg-")

    row = keys(config)["owned-key"]
    assert row["partner"] == "owner-co" and row["partner_id"] == partners(config)["owner-co"]["id"]
    assert (row["rpm"], row["tpm"], row["max_parallel"]) == (30, 1000, 3)
    assert (row["budget_usd"], row["budget_period"]) == (1.5, "daily")

    listing = ok(config, "keys", "list")
    line = next(line for line in listing.stdout.splitlines() if "owned-key" in line)
    assert "owner-co" in line and "rpm 30" in line and "$1.5 daily" in line
    assert key not in listing.stdout + listing.stderr
    assert partners(config)["owner-co"]["keys"] == 1


def test_key_with_unknown_partner_is_refused(config: Path) -> None:
    message = refused(config, "keys", "create", "--name", "orphan", "--partner", "ghost-co")
    assert "ghost-co" in message
    assert "orphan" not in keys(config)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--rpm", "many"), "--rpm"),
        (("--budget-period", "monthly"), "--budget-period"),
        (("--budget", "1", "--budget-period", "hourly"), "--budget-period"),
    ],
)
def test_key_create_rejects_bad_limits(config: Path, args: tuple[str, ...], fragment: str) -> None:
    assert fragment in refused(config, "keys", "create", "--name", "bad-limits", *args)
    assert "bad-limits" not in keys(config)


def test_keys_update(config: Path) -> None:
    ok(config, "partners", "create", "first-co")
    ok(config, "partners", "create", "second-co")
    ok(config, "keys", "create", "--name", "mover", "--partner", "first-co", "--rpm", "5")

    ok(config, "keys", "update", "mover", "--partner", "second-co", "--rpm", "0", "--tpm", "77",
       "--budget", "2", "--models", "claude-sonnet-4-6,team-*", "--expires", "30d")  # fmt: skip
    row = keys(config)["mover"]
    assert row["partner"] == "second-co" and (row["rpm"], row["tpm"]) == (None, 77)
    assert (row["budget_usd"], row["budget_period"]) == (2.0, "monthly")
    assert row["models"] == ["claude-sonnet-4-6", "team-*"] and row["expires_at"] is not None

    ok(config, "keys", "update", row["id"], "--partner", "", "--models", "", "--expires", "never",
       "--budget", "0", "--rename", "moved")  # fmt: skip
    row = keys(config)["moved"]
    assert row["partner"] is None and row["partner_id"] is None and row["models"] == []
    assert row["expires_at"] is None and row["budget_usd"] is None and row["tpm"] == 77

    assert "ghost-co" in refused(config, "keys", "update", "moved", "--partner", "ghost-co")
    assert "no-such-key" in refused(config, "keys", "update", "no-such-key", "--rpm", "1")
    assert "--expires" in refused(config, "keys", "update", "moved", "--expires", "soon")
    assert "nothing to change" in refused(config, "keys", "update", "moved")


def test_delete_is_refused_while_keys_use_the_partner(config: Path) -> None:
    ok(config, "partners", "create", "busy-co")
    ok(config, "keys", "create", "--name", "busy-key", "--partner", "busy-co")

    message = refused(config, "partners", "delete", "busy-co", code=1)
    assert "busy-co" in message and "key" in message
    assert "busy-co" in partners(config)

    ok(config, "keys", "revoke", "busy-key")
    done = ok(config, "partners", "delete", "busy-co")
    assert "busy-co" in done.stderr
    assert "busy-co" not in partners(config)
    assert keys(config)["busy-key"]["status"] == "revoked"
    assert "busy-co" in refused(config, "partners", "delete", "busy-co")


def test_help_documents_zero_as_unset(config: Path) -> None:
    for command in (("partners", "update"), ("keys", "update"), ("partners", "create")):
        done = ok(config, *command, "--help")
        assert "0 removes" in done.stdout

"""Admin changes made with the CLI are in the audit log, as the admin API's are: real
commands against their own SQLite database, read back with ``sluicegate audit --json``.
Each entry has actor ``cli:<OS user>`` (the user comes from ``LOGNAME`` here, as
``getpass.getuser`` reads it), no source address or request id, the admin API's action,
target and ``detail`` for the same change; refusals the store reports are recorded with
the admin API's status; no key or secret a command printed or read reaches the table; and
a failure to write the entry is a warning, not a failed command."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluicegate.crypto.envelope import generate_master_key, master_key_id, parse_master_key
from tests.gateway_harness import SLUICEGATE

USER = "audit-op"
ACTOR = f"cli:{USER}"
MASTER_KEY = generate_master_key()
CREDENTIAL_SECRET = "sk-ant-api03-audit-trail-canary-5c1e9a7b3d"
CREDENTIAL_SECRET_2 = "sk-ant-api03-audit-trail-canary-2f8d6b4a0c"
ENV = {"COLUMNS": "240", "LOGNAME": USER, "SG_AUDIT_MASTER": MASTER_KEY}


class Cli:
    """The CLI on one database (``config``), remembering every secret it printed or read."""

    def __init__(self, workdir: Path, master_keys: list[str] | None = None) -> None:
        self.database = workdir / "audit.db"
        self.config = self.write_config(workdir / "sluicegate.yaml", master_keys)
        self.secrets: list[str] = [MASTER_KEY, CREDENTIAL_SECRET, CREDENTIAL_SECRET_2]

    def write_config(self, path: Path, master_keys: list[str] | None = None) -> Path:
        """A config on this database; master keys: the first is the primary."""
        keys = master_keys or ["os.environ/SG_AUDIT_MASTER"]
        secrets_section = {"master_key": keys[0], "previous_master_keys": keys[1:]}
        config = {"database_url": f"sqlite:///{self.database}", "secrets": secrets_section}
        path.write_text(yaml.safe_dump(config))
        return path

    def run(
        self,
        *args: str,
        code: int = 0,
        stdin: str = "",
        env: dict[str, str] | None = None,
        config: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*SLUICEGATE, *args, "--config", str(config or self.config)],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, **ENV, **(env or {})},
        )
        assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr and "warning" not in done.stderr, done.stderr
        return done

    def entries(self, *filters: str) -> list[dict[str, Any]]:
        """Audit entries, oldest first."""
        out = self.run("audit", "--json", "--limit", "1000", *filters).stdout
        found: list[dict[str, Any]] = json.loads(out)
        return found[::-1]

    def about(self, *targets: str) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e["target_id"] in targets]

    def key_id(self, name: str) -> str:
        rows = json.loads(self.run("keys", "list", "--json").stdout)
        found: str = next(r["id"] for r in rows if r["name"] == name)
        return found

    def raw_audit(self) -> str:
        with sqlite3.connect(self.database) as conn:
            return repr(conn.execute("SELECT * FROM audit_log").fetchall())

    def assert_no_secrets(self) -> None:
        raw, listed = self.raw_audit(), json.dumps(self.entries())
        for secret in self.secrets:
            assert secret not in raw and secret not in listed, secret[:6]


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli(tmp_path_factory.mktemp("cli-audit"))


def outline(entry: dict[str, Any]) -> tuple[Any, ...]:
    return entry["action"], entry["target_type"], entry["target_id"], entry["status"]


def assert_cli_entry(entry: dict[str, Any]) -> None:
    assert entry["actor"] == ACTOR
    assert entry["source_ip"] is None and entry["request_id"] is None


def test_key_and_partner_changes_are_recorded(cli: Cli) -> None:
    imported = secrets.token_urlsafe(32)
    cli.secrets.append(imported)
    pid = cli.run("partners", "create", "trail-team", "--rpm", "7",
                  "--allowed-ip", "10.0.0.0/8").stdout.strip()  # fmt: skip
    printed = cli.run(
        "keys", "create", "--name", "trail-key", "--partner", "trail-team", "--models",
        "m1,m2", "--budget", "5", "--expires", "30d", "--key", imported,
    ).stdout.strip()  # fmt: skip
    assert printed == imported
    kid = cli.key_id("trail-key")
    cli.run("keys", "update", kid, "--rename", "trail-key-2", "--tpm", "900")
    cli.secrets.append(cli.run("keys", "regenerate", "trail-key-2", "--grace", "60").stdout.strip())
    cli.run("keys", "block", "trail-key-2")
    cli.run("keys", "unblock", kid)
    cli.run("partners", "update", "trail-team", "--weight", "2", "--budget", "0")
    cli.run("keys", "revoke", "trail-key-2")
    cli.run("partners", "delete", "trail-team")

    found = cli.about(kid, pid)
    assert [outline(e) for e in found] == [
        ("partner.new", "partner", pid, 200),
        ("key.generate", "key", kid, 200),
        ("key.update", "key", kid, 200),
        ("key.regenerate", "key", kid, 200),
        ("key.block", "key", kid, 200),
        ("key.unblock", "key", kid, 200),
        ("partner.update", "partner", pid, 200),
        ("key.delete", "key", kid, 200),
        ("partner.delete", "partner", pid, 200),
    ]
    for entry in found:
        assert_cli_entry(entry)
        assert "error" not in entry["detail"]
    details = [e["detail"] for e in found]
    assert details[0] == {
        "fields": ["allowed_ips", "name", "rpm_limit"],
        "values": {"allowed_ips": ["10.0.0.0/8"], "name": "trail-team", "rpm_limit": 7},
    }
    # The imported key's field is named, its value never recorded.
    assert details[1] == {
        "fields": ["duration", "key", "key_alias", "max_budget", "models", "partner"],
        "values": {
            "duration": "30d",
            "key_alias": "trail-key",
            "max_budget": 5.0,
            "models": ["m1", "m2"],
            "partner": "trail-team",
        },
    }
    # Named by id and renamed: the admin API's key_id + key_alias.
    assert details[2]["values"] == {"key_id": kid, "key_alias": "trail-key-2", "tpm_limit": 900}
    assert details[3]["values"] == {"key_alias": "trail-key-2", "grace_period": 60}
    assert details[4]["values"] == {"key_alias": "trail-key-2"}
    assert details[5]["values"] == {"key_id": kid}
    assert details[6]["values"] == {
        "partner": "trail-team", "weight": 2.0, "max_budget": None, "budget_duration": None
    }  # fmt: skip
    assert details[7] == {"fields": ["key_aliases"], "values": {"key_aliases": ["trail-key-2"]}}
    assert details[8] == {"fields": ["partner"], "values": {"partner": "trail-team"}}
    # The CLI's filters see them.
    mine = cli.entries("--actor", ACTOR, "--target", kid, "--action", "key.*")
    assert [e["action"] for e in mine] == [e["action"] for e in found[1:] if e["target_id"] == kid]
    cli.assert_no_secrets()


def test_signing_keys_credentials_and_rotation_are_recorded(cli: Cli, tmp_path: Path) -> None:
    cli.secrets.append(cli.run("keys", "create", "--name", "trail-signer").stdout.strip())
    kid = cli.key_id("trail-signer")
    issued = json.loads(cli.run("keys", "signing-key", "create", "--key", "trail-signer").stdout)
    cli.secrets.append(issued["secret"])
    sgk = issued["signing_key_id"]
    cli.run("credentials", "set", "trail-cred", "--provider", "anthropic",
            stdin=CREDENTIAL_SECRET + "\n")  # fmt: skip
    cli.run("keys", "signing-key", "revoke", sgk)
    cli.run("credentials", "set", "trail-cred", "--provider", "anthropic", "--from-env",
            "TRAIL_SECRET", env={"TRAIL_SECRET": CREDENTIAL_SECRET_2})  # fmt: skip

    # A dry run changes nothing and is not recorded; a rotation is.
    second = generate_master_key()
    cli.secrets.append(second)
    rotated = cli.write_config(tmp_path / "rotated.yaml", [second, "os.environ/SG_AUDIT_MASTER"])
    cli.run("secrets", "rotate", "--dry-run", config=rotated)
    assert cli.entries("--action", "secrets.*") == []
    report = json.loads(cli.run("secrets", "rotate", "--json", config=rotated).stdout)
    assert report["rewrapped"] >= 2 and report["failed"] == 0
    # A master key that opens nothing: every value fails, exit 1, recorded as refused.
    third = generate_master_key()
    cli.secrets.append(third)
    wrong = cli.write_config(tmp_path / "wrong.yaml", [third])
    failed = json.loads(cli.run("secrets", "rotate", "--json", config=wrong, code=1).stdout)
    assert failed["failed"] == report["rewrapped"] + report["current"]
    cli.run("credentials", "delete", "trail-cred")

    second_id, third_id = (master_key_id(parse_master_key(k)) for k in (second, third))
    found = cli.about(sgk, "trail-cred", second_id, third_id)
    assert [outline(e) for e in found] == [
        ("key.signing_key.new", "signing_key", sgk, 200),
        ("credentials.new", "credential", "trail-cred", 200),
        ("key.signing_key.revoke", "signing_key", sgk, 200),
        ("credentials.update", "credential", "trail-cred", 200),
        ("secrets.rotate", "master_key", second_id, 200),
        ("secrets.rotate", "master_key", third_id, 409),
        ("credentials.delete", "credential", "trail-cred", 200),
    ]
    for entry in found:
        assert_cli_entry(entry)
    details = [e["detail"] for e in found]
    assert details[0] == {"fields": ["key_alias"], "values": {"key_alias": "trail-signer"}}
    assert kid not in json.dumps(details[0])  # the target is the signing key
    # The credential's key is a field name, never a value.
    for detail in details[1], details[3]:
        assert detail == {
            "fields": ["api_key", "credential_name", "provider"],
            "values": {"provider": "anthropic"},
        }
    assert details[2] == {"fields": ["signing_key_id"]}
    counts = {k: report[k] for k in ("rewrapped", "current", "failed")}
    assert details[4] == {"fields": [], "values": counts}
    assert details[5]["error"] == "invalid_request_error"
    assert details[5]["values"]["failed"] == failed["failed"]
    assert details[6] == {"fields": ["credential_name"]}
    cli.assert_no_secrets()


def test_refusals_the_store_reports_are_recorded(cli: Cli) -> None:
    cli.secrets.append(cli.run("keys", "create", "--name", "trail-dup").stdout.strip())
    kid = cli.key_id("trail-dup")
    cli.run("keys", "create", "--name", "trail-dup", code=2)
    cli.run("keys", "create", "--name", "trail-orphan", "--partner", "no-such-team", code=2)
    cli.run("keys", "revoke", "no-such-key", code=2)
    cli.run("keys", "revoke", "trail-dup")
    cli.run("keys", "block", "trail-dup", code=2)  # revoked: final
    cli.run("keys", "regenerate", kid, code=2)
    pid = cli.run("partners", "create", "trail-busy").stdout.strip()
    cli.secrets.append(
        cli.run("keys", "create", "--name", "trail-busy-key", "--partner", pid).stdout.strip()
    )
    cli.run("partners", "delete", "trail-busy", code=1)  # an active key belongs to it
    cli.run("partners", "create", "trail-busy", code=2)
    cli.run("credentials", "delete", "no-such-cred", code=2)
    cli.run("keys", "signing-key", "revoke", "sgk_" + "0" * 24, code=2)
    cli.run("keys", "signing-key", "create", "--key", "trail-dup", code=2)
    before = len(cli.entries())
    # Refused before the database is touched: not recorded (nothing reached the store).
    cli.run("keys", "update", "trail-dup", "--rpm", "many", code=2)
    cli.run("partners", "update", "trail-busy", code=2)
    assert len(cli.entries()) == before

    targets = ("trail-dup", "trail-orphan", "no-such-key", kid, "trail-busy", "no-such-cred",
               "sgk_" + "0" * 24)  # fmt: skip
    refused = [e for e in cli.about(*targets) if e["status"] != 200]
    assert [(*outline(e), e["detail"]["error"]) for e in refused] == [
        ("key.generate", "key", "trail-dup", 400, "invalid_request_error"),
        ("key.generate", "key", "trail-orphan", 404, "not_found_error"),
        ("key.delete", "key", "no-such-key", 404, "not_found_error"),
        ("key.block", "key", "trail-dup", 409, "invalid_request_error"),
        ("key.regenerate", "key", kid, 409, "invalid_request_error"),
        ("partner.delete", "partner", "trail-busy", 409, "invalid_request_error"),
        ("partner.new", "partner", "trail-busy", 400, "invalid_request_error"),
        ("credentials.delete", "credential", "no-such-cred", 404, "not_found_error"),
        ("key.signing_key.revoke", "signing_key", "sgk_" + "0" * 24, 404, "not_found_error"),
        ("key.signing_key.new", "signing_key", "trail-dup", 400, "invalid_request_error"),
    ]
    for entry in refused:
        assert_cli_entry(entry)
    assert refused[1]["detail"]["values"] == {
        "key_alias": "trail-orphan",
        "partner": "no-such-team",
    }
    assert refused[2]["detail"]["values"] == {"key_aliases": ["no-such-key"]}
    assert refused[4]["detail"]["values"] == {"key_id": kid, "grace_period": 0}
    cli.assert_no_secrets()


def test_an_audit_write_failure_is_a_warning(tmp_path: Path) -> None:
    cli = Cli(tmp_path)
    cli.run("db", "upgrade")
    with sqlite3.connect(cli.database) as conn:
        conn.execute(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit log refused by the test'); END"
        )
    done = subprocess.run(
        [*SLUICEGATE, "keys", "create", "--name", "unaudited", "--config", str(cli.config)],
        capture_output=True, text=True, timeout=60, check=False, env={**os.environ, **ENV},
    )  # fmt: skip
    # The key is made and printed; the missing entry is one warning line.
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("sk-sg-")
    warning = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert warning == [
        "warning: could not write the audit log entry of key.generate "
        "(IntegrityError: audit log refused by the test)"
    ]
    assert "Traceback" not in done.stderr and done.stdout.strip() not in done.stderr
    assert cli.key_id("unaudited").startswith("key_")
    with sqlite3.connect(cli.database) as conn:
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)

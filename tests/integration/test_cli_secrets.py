"""``sluicegate secrets ...`` and ``sluicegate credentials ...`` run as real commands against
their own SQLite database: master keys from the environment and from a key file, secrets
read from stdin or an environment variable (never the command line), listings that show a
fingerprint and never a secret, and the three-step rotation of the master key."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml

from sluicegate.crypto.envelope import master_key_id, parse_master_key
from sluicegate.crypto.keyring_source import KeyringSource
from sluicegate.secret import Secret
from sluicegate.settings_security import SecretsSettings
from sluicegate.store.credentials import CredentialStore, secret_fingerprint
from sluicegate.store.db import create_engine
from tests.gateway_harness import SLUICEGATE

ANTHROPIC_SECRET = "sk-ant-api03-cli-canary-0d9e8f7a6b5c4d3e"
OPENAI_SECRET = "sk-proj-cli-canary-1a2b3c4d5e6f7a8b9c"
BASE_ENV = {"COLUMNS": "220"}


def cli(
    *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SLUICEGATE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **BASE_ENV, **(env or {})},
    )


def ok(*args: str, env: dict[str, str] | None = None, stdin: str = "") -> str:
    done = cli(*args, env=env, stdin=stdin)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def refused(*args: str, env: dict[str, str] | None = None, stdin: str = "", code: int = 2) -> str:
    """The one-line error of a refused command (no traceback, nothing on stdout)."""
    done = cli(*args, env=env, stdin=stdin)
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def write_config(path: Path, database: Path, secrets: dict[str, Any] | None) -> Path:
    config: dict[str, Any] = {"database_url": f"sqlite:///{database}"}
    if secrets is not None:
        config["secrets"] = secrets
    path.write_text(yaml.safe_dump(config))
    return path


def generate_key() -> str:
    out = ok("secrets", "generate-key")
    lines = out.splitlines()
    assert len(lines) == 1
    return lines[0]


def stored_bytes(database: Path) -> bytes:
    """Everything SQLite wrote: the database file and its write-ahead log."""
    return b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))


def open_all(database: Path, *keys: str) -> dict[str, str]:
    """The credentials opened in this process, with only ``keys`` (no gateway involved)."""

    async def work() -> dict[str, str]:
        engine = create_engine(f"sqlite:///{database}")
        try:
            settings = SecretsSettings(
                master_key=Secret(keys[0]), previous_master_keys=[Secret(k) for k in keys[1:]]
            )
            store = CredentialStore(engine, KeyringSource(settings))
            return {k: v.reveal() for k, v in (await store.load_secrets()).items()}
        finally:
            await engine.dispose()

    return asyncio.run(work())


def test_generate_key_prints_a_fresh_key_only() -> None:
    first, second = generate_key(), generate_key()
    assert first != second
    assert len(parse_master_key(first)) == 32
    assert base64.b64decode(first, validate=True) == parse_master_key(first)


def test_without_a_master_key_commands_say_which_setting(tmp_path: Path) -> None:
    config = str(write_config(tmp_path / "c.yaml", tmp_path / "db.sqlite", None))
    for args in (
        ("credentials", "set", "x", "--provider", "anthropic"),
        ("secrets", "rotate"),
        ("secrets", "status"),
    ):
        line = refused(*args, "--config", config, stdin=ANTHROPIC_SECRET)
        assert "secrets.master_key" in line and "generate-key" in line
    # Listing and deleting never touch a secret: no key needed.
    assert json.loads(ok("credentials", "list", "--json", "--config", config)) == []
    # A master key naming an unset variable is named, not parsed as an empty key.
    unset = write_config(
        tmp_path / "u.yaml", tmp_path / "db.sqlite", {"master_key": "os.environ/SG_UNSET_KEY"}
    )
    line = refused("secrets", "status", "--config", str(unset))
    assert "secrets.master_key" in line and "SG_UNSET_KEY" in line


def test_credentials_set_list_delete(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite"
    key = generate_key()
    env = {"SG_MASTER_KEY": key}
    config = str(
        write_config(tmp_path / "c.yaml", database, {"master_key": "os.environ/SG_MASTER_KEY"})
    )

    # From stdin (a trailing line break is not part of the key) ...
    done = cli(
        "credentials", "set", "anthropic-prod", "--provider", "anthropic", "--config", config,
        env=env, stdin=ANTHROPIC_SECRET + "\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert secret_fingerprint(ANTHROPIC_SECRET) in done.stderr
    assert ANTHROPIC_SECRET not in done.stderr
    # ... or from an environment variable.
    done = cli(
        "credentials", "set", "openai-main", "--provider", "openai", "--from-env",
        "MY_OPENAI_KEY", "--config", config, env={**env, "MY_OPENAI_KEY": OPENAI_SECRET},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "stored credential 'openai-main'" in done.stderr
    assert OPENAI_SECRET not in done.stdout + done.stderr

    # Refused: a missing variable, a secret with a line break inside, a bad provider.
    line = refused(
        "credentials", "set", "x", "--provider", "openai", "--from-env", "SG_NOT_SET",
        "--config", config, env=env,
    )  # fmt: skip
    assert "SG_NOT_SET is not set" in line
    line = refused(
        "credentials", "set", "x", "--provider", "openai", "--config", config,
        env=env, stdin="sk-first-line\nsecond-line-canary\n",
    )  # fmt: skip
    assert "control characters" in line and "canary" not in line
    assert "anthropic, openai" in refused(
        "credentials", "set", "x", "--provider", "azure", "--config", config, env=env
    )

    listing = ok("credentials", "list", "--config", config, env=env)
    assert "anthropic-prod" in listing and "openai-main" in listing
    assert secret_fingerprint(ANTHROPIC_SECRET) in listing
    assert master_key_id(parse_master_key(key)) in listing
    rows = json.loads(ok("credentials", "list", "--json", "--config", config, env=env))
    assert [(r["name"], r["provider"], r["fingerprint"]) for r in rows] == [
        ("anthropic-prod", "anthropic", secret_fingerprint(ANTHROPIC_SECRET)),
        ("openai-main", "openai", secret_fingerprint(OPENAI_SECRET)),
    ]
    assert set(rows[0]) == {
        "name", "provider", "fingerprint", "master_key_id", "created_at", "updated_at"
    }  # fmt: skip
    for secret in (ANTHROPIC_SECRET, OPENAI_SECRET):
        assert secret not in listing and secret not in json.dumps(rows)
        assert secret.encode() not in stored_bytes(database)

    # Setting an existing name replaces its secret (same created_at).
    done = cli(
        "credentials", "set", "openai-main", "--provider", "openai", "--config", config,
        env=env, stdin=OPENAI_SECRET + "-v2",
    )  # fmt: skip
    assert "replaced credential 'openai-main'" in done.stderr
    again = json.loads(ok("credentials", "list", "--json", "--config", config, env=env))
    assert again[1]["fingerprint"] == secret_fingerprint(OPENAI_SECRET + "-v2")
    assert again[1]["created_at"] == rows[1]["created_at"]
    assert open_all(database, key) == {
        "anthropic-prod": ANTHROPIC_SECRET,
        "openai-main": OPENAI_SECRET + "-v2",
    }

    done = cli("credentials", "delete", "openai-main", "--config", config, env=env)
    assert done.returncode == 0 and "deleted credential 'openai-main'" in done.stderr
    assert "no credential named 'openai-main'" in refused(
        "credentials", "delete", "openai-main", "--config", config, env=env
    )
    names = [r["name"] for r in json.loads(ok("credentials", "list", "--json", "-c", config))]
    assert names == ["anthropic-prod"]


def status(config: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(ok("secrets", "status", "--json", "--config", config))
    return rows


def test_online_rotation_with_a_key_file(tmp_path: Path) -> None:
    """The documented procedure: new key first in the file, rotate, remove the old key."""
    database, key_file = tmp_path / "db.sqlite", tmp_path / "master.keys"
    old, new = generate_key(), generate_key()
    old_id, new_id = (master_key_id(parse_master_key(k)) for k in (old, new))
    config = str(write_config(tmp_path / "c.yaml", database, {"master_key_file": str(key_file)}))
    key_file.write_text(f"# sluicegate master keys\n{old}\n")
    ok("credentials", "set", "anthropic-prod", "--provider", "anthropic", "-c", config,
       stdin=ANTHROPIC_SECRET)  # fmt: skip
    ok("credentials", "set", "openai-main", "--provider", "openai", "-c", config,
       stdin=OPENAI_SECRET)  # fmt: skip
    assert status(config) == [
        {"master_key_id": old_id, "role": "primary", "provider_credentials": 2, "signing_keys": 0}
    ]

    # Step 1: the new key on the first line, the old one below it.
    key_file.write_text(f"{new}\n{old}  # previous\n")
    assert status(config) == [
        {"master_key_id": new_id, "role": "primary", "provider_credentials": 0, "signing_keys": 0},
        {"master_key_id": old_id, "role": "previous", "provider_credentials": 2, "signing_keys": 0},
    ]
    done = cli("secrets", "status", "-c", config)
    assert "2 value(s) are not under the primary key" in done.stderr

    # Step 2: rotate (a dry run first changes nothing).
    dry = json.loads(ok("secrets", "rotate", "--dry-run", "--json", "-c", config))
    assert (dry["dry_run"], dry["rewrapped"], dry["current"], dry["failed"]) == (True, 2, 0, 0)
    assert status(config)[1]["provider_credentials"] == 2
    done = cli("secrets", "rotate", "-c", config)
    assert done.returncode == 0, done.stderr
    assert "provider_credentials" in done.stdout and "signing_keys" in done.stdout
    assert f"re-wrapped 2 value(s) under master key {new_id}" in done.stderr
    again = json.loads(ok("secrets", "rotate", "--json", "-c", config))
    assert (again["rewrapped"], again["current"], again["failed"]) == (0, 2, 0)

    # Step 3: the old key removed. Everything opens under the new key alone.
    key_file.write_text(f"{new}\n")
    assert status(config) == [
        {"master_key_id": new_id, "role": "primary", "provider_credentials": 2, "signing_keys": 0}
    ]
    assert open_all(database, new) == {
        "anthropic-prod": ANTHROPIC_SECRET,
        "openai-main": OPENAI_SECRET,
    }
    assert open_all(database, old) == {}
    rows = json.loads(ok("credentials", "list", "--json", "-c", config))
    assert {r["master_key_id"] for r in rows} == {new_id}
    for secret in (ANTHROPIC_SECRET, OPENAI_SECRET, old, new):
        assert secret.encode() not in stored_bytes(database)


def test_rotate_lists_what_it_cannot_open_and_exits_1(tmp_path: Path) -> None:
    database = tmp_path / "db.sqlite"
    lost, new = generate_key(), generate_key()
    lost_config = str(write_config(tmp_path / "lost.yaml", database, {"master_key": lost}))
    new_config = str(write_config(tmp_path / "new.yaml", database, {"master_key": new}))
    ok("credentials", "set", "orphan", "--provider", "openai", "-c", lost_config,
       stdin=OPENAI_SECRET)  # fmt: skip
    ok("credentials", "set", "fine", "--provider", "anthropic", "-c", new_config,
       stdin=ANTHROPIC_SECRET)  # fmt: skip

    done = cli("secrets", "rotate", "-c", new_config)
    assert done.returncode == 1
    lost_id = master_key_id(parse_master_key(lost))
    assert f"cannot open provider_credentials 'orphan': sealed under master key {lost_id}" in (
        done.stderr
    )
    assert "1 already current, 1 failed" in done.stderr
    report = json.loads(cli("secrets", "rotate", "--json", "-c", new_config).stdout)
    assert report["failures"] == [
        {
            "table": "provider_credentials",
            "name": "orphan",
            "reason": report["failures"][0]["reason"],
        }
    ]
    # status shows the key id that is no longer configured.
    rows = status(new_config)
    assert rows[1] == {
        "master_key_id": lost_id, "role": "not configured",
        "provider_credentials": 1, "signing_keys": 0,
    }  # fmt: skip
    for text in (done.stdout, done.stderr, json.dumps(report)):
        assert OPENAI_SECRET not in text and lost not in text

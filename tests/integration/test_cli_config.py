"""``sluicegate check-config``: the resolved config with secrets redacted; errors that name
the offending path (and the missing variable), with a non-zero exit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.gateway_harness import sluicegate_cli

UPSTREAM_CANARY = "sk-ant-canary-7d1e0c5b9a3f4e2d"
ADMIN_CANARY = "admin-canary-52f0e1c94b7a"
PEPPER_CANARY = "inline-pepper-canary-e8a4c2"
DB_PASSWORD_CANARY = "DbPassCanary4321"


def model_entry(**overrides: Any) -> dict[str, Any]:
    return {
        "model_name": "claude-*",
        "provider": "anthropic",
        "api_base": "http://127.0.0.1:9",
        "api_key": "os.environ/CANARY_UPSTREAM_KEY",
        **overrides,
    }


def write_config(tmp_path: Path, data: dict[str, Any] | str) -> Path:
    path = tmp_path / "sluicegate.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def check(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {"CANARY_UPSTREAM_KEY": UPSTREAM_CANARY, **(env or {})}
    return sluicegate_cli("check-config", "--config", str(path), env=env, check=False)


def test_check_config_redacts_secrets(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "database_url": f"sqlite:///{tmp_path}/x.db",
            "admin_token": "os.environ/CANARY_ADMIN_TOKEN",
            "key_hash_secret": PEPPER_CANARY,
            "server": {"max_body_size": "1MiB"},
            "model_list": [model_entry(), model_entry(model_name="team-alias", model="claude-x")],
        },
    )
    done = check(path, {"CANARY_ADMIN_TOKEN": ADMIN_CANARY})

    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    for canary in (UPSTREAM_CANARY, ADMIN_CANARY, PEPPER_CANARY):
        assert canary not in output
    printed = yaml.safe_load(done.stdout)
    assert printed["server"]["max_body_size"] == 1024 * 1024
    assert [m["model_name"] for m in printed["model_list"]] == ["claude-*", "team-alias"]
    # Where a secret comes from is shown, so operators can check their wiring.
    assert "CANARY_UPSTREAM_KEY" in str(printed["model_list"][0]["api_key"])
    assert "CANARY_ADMIN_TOKEN" in str(printed["admin_token"])


def test_check_config_hides_the_database_password(tmp_path: Path) -> None:
    url = f"postgresql://sluice:{DB_PASSWORD_CANARY}@127.0.0.1:1/sluicegate"
    path = write_config(tmp_path, {"database_url": url, "model_list": [model_entry()]})
    done = check(path)

    assert done.returncode == 0, done.stderr
    assert "127.0.0.1:1/sluicegate" in done.stdout
    assert DB_PASSWORD_CANARY not in done.stdout + done.stderr


def test_unknown_key_is_an_error_naming_its_path(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "database_url": f"sqlite:///{tmp_path}/x.db",
            "server": {"max_body_sizee": 1},
            "model_list": [model_entry()],
        },
    )
    done = check(path)

    assert done.returncode != 0
    assert done.stdout == ""
    assert "server.max_body_sizee" in done.stderr
    assert "unknown" in done.stderr.lower()


def test_unknown_key_in_a_model_entry(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"model_list": [model_entry(), model_entry(api_bsae="x")]})
    done = check(path)

    assert done.returncode != 0
    assert "model_list[1].api_bsae" in done.stderr


def test_missing_env_var_names_path_and_variable(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "database_url": f"sqlite:///{tmp_path}/x.db",
            "model_list": [model_entry(api_key="os.environ/NOPE_NOT_SET")],
        },
    )
    done = check(path, {"NOPE_NOT_SET": ""})  # set but empty counts as missing too

    assert done.returncode != 0
    assert done.stdout == ""
    assert "model_list[0].api_key" in done.stderr
    assert "NOPE_NOT_SET" in done.stderr


def test_invalid_yaml_is_an_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, "model_list: [\n  - {model_name: a\n")
    done = check(path)

    assert done.returncode != 0
    assert str(path) in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    path = write_config(tmp_path, {"server": {"max_body_sizee": 1}})
    done = sluicegate_cli("serve", "--config", str(path), "--port", "0", check=False)

    assert done.returncode != 0
    assert "server.max_body_sizee" in done.stderr

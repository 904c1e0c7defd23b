"""Run the real gateway (``sluicegate serve`` in a subprocess) against a fake upstream.

Nothing is mocked inside the gateway: it reads a real YAML config, migrates a real SQLite
file, gets its keys from the real CLI and talks HTTP on loopback to the fake provider.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sluicegate.fake_upstream import FakeUpstream

UPSTREAM_KEY = "sk-ant-upstream-test-9c1f0b7e4d2a"
ADMIN_TOKEN = "sg-admin-test-token-5b8e2f41c7d9a3e6"
SLUICEGATE = [sys.executable, "-m", "sluicegate"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def sluicegate_cli(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SLUICEGATE, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
        env={**os.environ, **(env or {})},
    )


@contextlib.contextmanager
def running_fake(api_key: str = UPSTREAM_KEY) -> Iterator[FakeUpstream]:
    """A fake upstream of its own (beside the session's), for a second deployment."""
    fake = FakeUpstream(api_key=api_key)
    fake.start_in_thread()
    try:
        yield fake
    finally:
        fake.stop_thread()


def model_entry(name: str, api_base: str, **extra: object) -> dict[str, object]:
    """A ``model_list`` entry: Anthropic, the test upstream key, unless ``extra`` says else."""
    return {
        "model_name": name,
        "provider": "anthropic",
        "api_base": api_base,
        "api_key": "os.environ/TEST_UPSTREAM_KEY",
        **extra,
    }


def default_model_list(upstream_url: str) -> list[dict[str, object]]:
    def entry(name: str, **extra: object) -> dict[str, object]:
        return {**model_entry(name, upstream_url), **extra}  # extra may move api_base

    return [
        entry("claude-sonnet-4-6"),
        entry("team-alias", model="claude-opus-4-7"),  # alias rewritten to an upstream id
        entry("slow-model", timeouts={"first_byte": 1.0, "idle": 1.0}),
        entry("short-total", timeouts={"total": 1.5}),
        entry("claude-*"),
        # OpenAI(-compatible) upstreams: api_base carries the version path, as for OpenAI.
        entry("gpt-4o-mini", provider="openai", api_base=upstream_url + "/v1"),
        entry(
            "quirky-local",
            provider="openai",
            model="llama-3.1-8b",
            api_base=upstream_url + "/v1",
            stream_options=False,
            max_tokens_field="max_completion_tokens",
            extra_headers={"X-Team": "gateway-tests"},
        ),
        entry(
            "azure-style", provider="openai", api_base=upstream_url + "/v1", auth_style="api-key"
        ),
        {
            "model_name": "prefixed",
            "provider": "anthropic",
            "api_base": upstream_url + "/some/prefix",
            "api_key": "os.environ/TEST_UPSTREAM_KEY",
        },
        {
            "model_name": "unreachable",
            "provider": "anthropic",
            "api_base": f"http://127.0.0.1:{free_port()}",
            "api_key": "os.environ/TEST_UPSTREAM_KEY",
            "timeouts": {"connect": 1.0},
        },
    ]


@dataclass
class Gateway:
    url: str
    config: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]
    keys: dict[str, str] = field(default_factory=dict)

    def create_key(self, name: str, *extra: str) -> str:
        done = sluicegate_cli(
            "keys", "create", "--config", str(self.config), "--name", name, *extra, env=self.env
        )
        key = done.stdout.strip()
        self.keys[name] = key
        return key

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sluicegate_cli(*args, env=self.env, check=check)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gateway exited early:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health/readiness", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gateway not ready in time:\n{log_path.read_text()}")


RELAY_ONLY_ROUTING: dict[str, object] = {
    "retries": {"max_attempts": 1},
    "breaker": {"enabled": False},
}


def start_gateway(
    workdir: Path,
    upstream: FakeUpstream,
    *,
    extra_config: dict[str, object] | None = None,
    model_list: list[dict[str, object]] | None = None,
    env: dict[str, str] | None = None,
) -> Gateway:
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "database_url": f"sqlite:///{workdir}/sluicegate.db",
        "admin_token": "os.environ/TEST_ADMIN_TOKEN",
        "server": {"key_sync_interval": 0.5, "max_body_size": "1MiB", "log_level": "info"},
        "model_list": model_list or default_model_list(upstream.url),
        # Most suites check what is relayed for one scripted upstream answer: one attempt
        # and no breakers, so a scripted failure reaches the client as it is and failures
        # of one test never open a breaker for the next. The delivery suites
        # (test_delivery_*.py) run the defaults: retries, fallbacks and breakers on.
        "routing": RELAY_ONLY_ROUTING,
        **(extra_config or {}),
    }
    config_path = workdir / "sluicegate.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TEST_ADMIN_TOKEN": ADMIN_TOKEN, **(env or {})}
    port = free_port()
    log_path = workdir / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*SLUICEGATE, "serve", "--config", str(config_path), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, log_path)
    except Exception:
        process.kill()
        raise
    return Gateway(url, config_path, process, log_path, env)

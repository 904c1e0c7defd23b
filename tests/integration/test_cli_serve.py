"""``sluicegate serve`` on a busy port: a loud, quick failure naming the port, never a
silent start on another port or a process that hangs."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.gateway_harness import SLUICEGATE


@pytest.fixture
def busy_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port with a listening socket on it (host from the test's parameter)."""
    host: str = request.param
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((host, 0))
        listener.listen()
        yield listener.getsockname()[1]


def write_config(tmp_path: Path, server: dict[str, object]) -> Path:
    path = tmp_path / "sluicegate.yaml"
    config = {
        "database_url": f"sqlite:///{tmp_path}/x.db",
        "server": server,
        "model_list": [
            {"model_name": "claude-*", "provider": "anthropic", "api_base": "http://127.0.0.1:9"}
        ],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def serve(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [*SLUICEGATE, "serve", *args], capture_output=True, text=True, timeout=20, check=False
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize("busy_port", ["127.0.0.1"], indirect=True)
def test_serve_on_a_busy_port_given_by_flag(tmp_path: Path, busy_port: int) -> None:
    config = write_config(tmp_path, {})
    done, elapsed = serve("--config", str(config), "--port", str(busy_port))

    assert done.returncode != 0
    assert elapsed < 10
    assert str(busy_port) in done.stderr
    assert "in use" in done.stderr.lower()
    assert "listening on" not in done.stderr.lower()


@pytest.mark.parametrize("busy_port", ["0.0.0.0"], indirect=True)
def test_serve_on_a_busy_port_from_config(tmp_path: Path, busy_port: int) -> None:
    # Another process holds the port on all interfaces; the gateway wants 127.0.0.1.
    config = write_config(tmp_path, {"port": busy_port, "host": "127.0.0.1"})
    done, elapsed = serve("--config", str(config))

    assert done.returncode != 0
    assert elapsed < 10
    assert str(busy_port) in done.stderr

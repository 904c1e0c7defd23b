"""Processes the benchmark starts (pinned, logged, stopped as a group) and HTTP helpers."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from common import LOGS


class StartError(RuntimeError):
    """A target did not come up; carries the reason (and its log tail)."""


# --------------------------------------------------------------------------- processes


class Processes:
    """Every child is started in its own session and stopped by its own process group id."""

    def __init__(self) -> None:
        self.live: list[tuple[str, subprocess.Popen[Any]]] = []

    @staticmethod
    def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
        return (["taskset", "-c", str(cpu)] if cpu is not None else []) + list(argv)

    def spawn(self, name: str, argv: Sequence[str], cpu: int | None,
              env: dict[str, str] | None = None) -> subprocess.Popen[Any]:
        with open(LOGS / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(self.pinned(argv, cpu), stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, env=env)
        self.live.append((name, proc))
        return proc

    def run(self, name: str, argv: Sequence[str], cpu: int | None, timeout: float,
            env: dict[str, str] | None = None) -> tuple[int, str, str]:
        proc = subprocess.Popen(self.pinned(argv, cpu), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                start_new_session=True, env=env)
        self.live.append((name, proc))
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(proc)
            out, err = proc.communicate()
            raise RuntimeError(f"{name} did not finish within {timeout:.0f}s") from None
        finally:
            self.live = [(n, p) for n, p in self.live if p is not proc]
        return proc.returncode, out, err

    @staticmethod
    def stop(proc: subprocess.Popen[Any], grace: float = 5.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # Leftovers in the group (should be none): make sure they go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop_named(self, proc: subprocess.Popen[Any]) -> None:
        self.stop(proc)
        self.live = [(n, p) for n, p in self.live if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(self.live):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in reversed(self.live):
            self.stop(proc, grace=5.0)
        self.live.clear()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(name: str, lines: int = 15) -> str:
    path = LOGS / f"{name}.log"
    if not path.exists():
        return ""
    text = path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join("    | " + line for line in text)


# --------------------------------------------------------------------------- HTTP helpers


def http_call(url: str, method: str = "GET", body: bytes | None = None,
              headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                      timeout=timeout)
    try:
        conn.request(method, parts.path or "/", body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_ready(url: str, proc: subprocess.Popen[Any] | None, name: str,
               timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StartError(f"{name} exited with code {proc.returncode} before it was ready\n"
                             + log_tail(name))
        try:
            status, _ = http_call(url, timeout=1.0)
        except OSError as exc:
            last = str(exc)
        else:
            if status == 200:
                return
            last = f"HTTP {status}"
        time.sleep(0.05)
    raise StartError(f"{name} not ready at {url} after {timeout:.0f}s ({last})\n" + log_tail(name))

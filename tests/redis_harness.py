"""Real Redis and PostgreSQL for multi-process gateway tests.

- ``RedisServer``: a private ``redis-server`` on a free port that a test may kill and restart.
- ``claim_redis_db``: a free logical database of the shared Redis on 127.0.0.1:6379, flushed
  before and after (the gateway's key prefix is fixed, so tests isolate by database number).
- ``postgres_database``: a fresh PostgreSQL database, migrated with ``sluicegate db upgrade``
  (PostgreSQL is never auto-migrated), dropped afterwards.

Each skips when its service is absent, unless CI=true, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import redis
import yaml
from sqlalchemy import text

from sluicegate.store.db import create_engine
from tests.gateway_harness import free_port, sluicegate_cli

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
PG_BASE_URL = "postgresql://postgres@127.0.0.1:5432/"
_CLAIM_KEY = "sluicegate-test:claimed"  # outside the gateway's "sg:v1:" prefix


def unavailable(message: str) -> NoReturn:
    """Skip, or fail under CI=true: a service the suite needs must be there in CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _redis_client(port: int, db: int = 0) -> redis.Redis:
    return redis.Redis(
        host=REDIS_HOST, port=port, db=db, socket_connect_timeout=2, socket_timeout=2
    )


class RedisServer:
    """``redis-server`` without persistence on a free port; ``kill`` and ``start`` at will."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        self.binary = str(binary)
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{REDIS_HOST}:{self.port}/0"

    def client(self) -> redis.Redis:
        return _redis_client(self.port)

    def start(self) -> None:
        assert self.process is None, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", REDIS_HOST,
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--dir", str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_text()}")
            with contextlib.suppress(redis.RedisError, OSError):
                if self.client().ping():
                    return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer in time: {self.log_text()}")

    def kill(self) -> None:
        """SIGKILL: an outage, not a shutdown."""
        process, self.process = self.process, None
        if process is not None:
            process.kill()
            process.wait(timeout=10)

    def log_text(self) -> str:
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@contextlib.contextmanager
def claim_redis_db() -> Iterator[str]:
    """A logical database of the shared Redis nobody uses (empty), flushed before and after;
    yields its URL for the gateway's ``redis_url``."""
    probe = _redis_client(REDIS_PORT)
    try:
        databases = int(probe.config_get("databases").get("databases") or 16)
    except (redis.RedisError, OSError) as exc:
        unavailable(f"Redis at {REDIS_HOST}:{REDIS_PORT} unavailable ({type(exc).__name__})")
    finally:
        probe.close()
    for db in range(databases - 1, 0, -1):  # db 0 is the default others use
        client = _redis_client(REDIS_PORT, db)
        try:
            if client.dbsize() == 0 and client.set(_CLAIM_KEY, "1", nx=True):
                break
        finally:
            client.close()
    else:
        raise RuntimeError("no empty Redis logical database to claim")
    client = _redis_client(REDIS_PORT, db)
    try:
        client.flushdb()
        client.set(_CLAIM_KEY, "1")  # keeps concurrent runs off this database
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        client.flushdb()
        client.close()


def migrate(workdir: Path, database_url: str) -> None:
    """``sluicegate db upgrade`` against ``database_url`` (once, before any gateway)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "migrate.yaml"
    config.write_text(yaml.safe_dump({"database_url": database_url}))
    sluicegate_cli("db", "upgrade", "--config", str(config))


@contextlib.asynccontextmanager
async def postgres_database(workdir: Path) -> AsyncIterator[str]:
    """A fresh, migrated PostgreSQL database; yields its URL, drops it afterwards."""
    admin = create_engine(PG_ADMIN_URL)
    name = f"sg_t_{secrets.token_hex(6)}"
    try:
        try:
            async with admin.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            unavailable(f"PostgreSQL at 127.0.0.1:5432 unavailable ({type(exc).__name__})")
        url = PG_BASE_URL + name
        try:
            migrate(workdir, url)
            yield url
        finally:
            async with admin.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()

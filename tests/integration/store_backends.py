"""The store tests' backends: SQLite (a tmp file) and PostgreSQL (a fresh schema per test).

Import the fixture into a test module (``from tests.integration.store_backends import
backend_fixture  # noqa: F401``) and every test taking ``backend`` runs on both.
PostgreSQL tests skip when the server is unreachable, unless CI=true, where they fail."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateSchema, DropSchema

from sluicegate.store.db import create_engine, redact_url

__all__ = ["PG_URL", "Backend", "backend_fixture", "require_postgres"]

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"

_pg_error: list[str] = []  # memo: [] unknown, [""] reachable, [reason] unreachable


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    schema: str | None = None

    def engine(self) -> AsyncEngine:
        return create_engine(self.url, schema=self.schema)


async def require_postgres() -> None:
    if not _pg_error:
        probe = create_engine(PG_URL)
        try:
            async with asyncio.timeout(5), probe.connect() as conn:
                await conn.execute(text("SELECT 1"))
            _pg_error.append("")
        except (OSError, SQLAlchemyError, TimeoutError) as exc:
            _pg_error.append(f"{type(exc).__name__}: {exc}")
        finally:
            await probe.dispose()
    if _pg_error[0]:
        message = f"PostgreSQL at {redact_url(PG_URL)} unavailable ({_pg_error[0]})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(
    name="backend",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
async def backend_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path}/data/store.db")
        return
    await require_postgres()
    schema = f"sg_test_{secrets.token_hex(6)}"
    admin = create_engine(PG_URL)
    try:
        async with admin.begin() as conn:
            await conn.execute(CreateSchema(schema))
        yield Backend("postgres", PG_URL, schema)
    finally:
        async with admin.begin() as conn:
            await conn.execute(DropSchema(schema, cascade=True, if_exists=True))
        await admin.dispose()

"""Unit tests for sluicegate.store.db (URLs, engines) and the UTC timestamp type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from sluicegate.store.db import async_url, create_engine, redact_url
from sluicegate.store.tables import UTCDateTime


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///./data/x.db", "sqlite+aiosqlite:///./data/x.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("sqlite+aiosqlite:///./data/x.db", "sqlite+aiosqlite:///./data/x.db"),
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("PostgreSQL://h/db", "postgresql+asyncpg://h/db"),
    ],
)
def test_async_url_maps_to_async_drivers(given: str, expected: str) -> None:
    assert async_url(given) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "mysql://root:hunter2@db/app",
        "postgresql+psycopg2://root:hunter2@db/app",
        "sqlite+pysqlite:///x.db",
        "not a url",
        "",
    ],
)
def test_async_url_rejects_other_urls_without_leaking_password(bad: str) -> None:
    with pytest.raises(ValueError, match="unsupported database URL") as info:
        async_url(bad)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://alice:s3cret@db:5432/app", "postgresql://alice:***@db:5432/app"),
        ("postgresql+asyncpg://alice:s3cret@db/app", "postgresql+asyncpg://alice:***@db/app"),
        ("postgresql://alice@db/app", "postgresql://alice@db/app"),
        ("postgresql://db/app?sslmode=require", "postgresql://db/app?sslmode=require"),
        ("postgresql://a:p@ss/w?rd@db/app", "postgresql://a:***@db/app"),
        ("mysql://root:pw@h/x", "mysql://root:***@h/x"),
        ("sqlite:///./data/x.db", "sqlite:///./data/x.db"),
        ("garbage", "garbage"),
    ],
)
def test_redact_url(given: str, expected: str) -> None:
    assert redact_url(given) == expected


def test_create_engine_makes_sqlite_parent_directory(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "store.db"
    engine = create_engine(f"sqlite:///{target}")
    assert target.parent.is_dir()
    assert engine.dialect.name == "sqlite"
    assert engine.dialect.driver == "aiosqlite"


def test_create_engine_postgres_uses_asyncpg_with_schema() -> None:
    engine = create_engine("postgresql://u:pw@127.0.0.1/db", schema="sg_x")
    assert engine.dialect.driver == "asyncpg"
    assert "pw" not in repr(engine)


def test_create_engine_rejects_schema_on_sqlite_and_bad_schema(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        create_engine(f"sqlite:///{tmp_path}/x.db", schema="s")
    with pytest.raises(ValueError, match="invalid schema"):
        create_engine("postgresql://h/db", schema='x"; drop')


def test_create_engine_error_redacts_password() -> None:
    with pytest.raises(ValueError) as info:
        create_engine("oracle://scott:tiger@h/db")
    assert "tiger" not in str(info.value)


def test_utc_datetime_binds_utc_and_reads_aware() -> None:
    column_type = UTCDateTime()
    paris = timezone(timedelta(hours=2))
    local = datetime(2030, 1, 1, 14, 0, tzinfo=paris)
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        bound = column_type.process_bind_param(local, dialect)
        assert bound == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
        assert bound is not None and bound.tzinfo is UTC
        naive = column_type.process_result_value(datetime(2030, 1, 1, 12, 0), dialect)
        assert naive == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
        assert column_type.process_result_value(local, dialect) == local
        assert column_type.process_bind_param(None, dialect) is None
    with pytest.raises(ValueError, match="naive"):
        column_type.process_bind_param(datetime(2030, 1, 1), sqlite.dialect())

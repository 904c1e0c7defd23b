"""``sluicegate usage``: ledger rows written straight into a real SQLite database, then
summed by the real CLI. Costs are binary fractions, so the sums must be exact."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from sluicegate.store.db import create_engine
from sluicegate.store.ledger import LedgerRow, LedgerStore
from tests.gateway_harness import sluicegate_cli

ENV = {"CLI_TEST_UPSTREAM_KEY": "sk-ant-cli-test-upstream", "COLUMNS": "220"}
METRICS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
)


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return sluicegate_cli(*args, "--config", str(config), env=ENV, check=False)


def report(config: Path, *args: str) -> dict[str, Any]:
    done = run(config, "usage", "--json", *args)
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = json.loads(done.stdout)
    return parsed


def row(
    day: int, key: str, partner: str | None, model: str, cost: float, *, status: int = 200,
    tokens: tuple[int, int, int, int] = (100, 20, 0, 0), hour: int = 12,
) -> LedgerRow:  # fmt: skip
    return LedgerRow(
        created_at=datetime(2026, 3, day, hour, tzinfo=UTC),
        request_id=f"req-{key}-{day}-{hour}-{model}-{cost}",
        endpoint="messages",
        stream=False,
        status=status,
        latency_ms=12.0,
        key_id=f"id-{key}",
        key_name=key,
        partner_id=f"pid-{partner}" if partner else None,
        partner_name=partner,
        model=model,
        error_type="api_error" if status >= 400 else None,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cache_read_tokens=tokens[2],
        cache_write_tokens=tokens[3],
        cost_usd=cost,
    )


ROWS = [
    row(1, "alpha", "acme", "claude-sonnet-4-6", 0.25, tokens=(100, 20, 5, 1)),
    row(1, "alpha", "acme", "claude-sonnet-4-6", 0.5, hour=23),
    row(1, "beta", "acme", "claude-haiku-4-5", 0.125, status=529),
    row(2, "gamma", "globex", "claude-sonnet-4-6", 1.0, tokens=(1000, 200, 0, 300)),
    row(2, "solo", None, "gpt-4o-mini", 0.0625),
    row(3, "alpha", "acme", "claude-haiku-4-5", 2.0, hour=0),
]


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("cli-usage")
    path = workdir / "sluicegate.yaml"
    url = f"sqlite:///{workdir}/x.db"
    model = {
        "model_name": "claude-*",
        "provider": "anthropic",
        "api_base": "http://127.0.0.1:9",
        "api_key": "os.environ/CLI_TEST_UPSTREAM_KEY",
    }
    path.write_text(yaml.safe_dump({"database_url": url, "model_list": [model]}))
    done = run(path, "db", "upgrade")
    assert done.returncode == 0, done.stderr

    async def insert() -> None:
        engine = create_engine(url)
        try:
            await LedgerStore(engine).insert_many(ROWS)
        finally:
            await engine.dispose()

    asyncio.run(insert())
    # Partner and key filters take names or ids of the gateway's own partners and keys.
    done = run(path, "partners", "create", "filter-co")
    assert done.returncode == 0, done.stderr
    return path


def expected(rows: list[LedgerRow]) -> dict[str, Any]:
    return {
        "requests": len(rows),
        "errors": sum(1 for r in rows if r.status >= 400),
        "input_tokens": sum(r.input_tokens for r in rows),
        "output_tokens": sum(r.output_tokens for r in rows),
        "cache_read_tokens": sum(r.cache_read_tokens for r in rows),
        "cache_write_tokens": sum(r.cache_write_tokens for r in rows),
        "cost_usd": sum(r.cost_usd for r in rows),
    }


def test_default_grouping_and_totals(config: Path) -> None:
    result = report(config)
    assert result["totals"] == expected(ROWS)
    assert result["totals"]["cost_usd"] == 3.9375
    rows = result["rows"]
    assert all(set(r) == {"partner", "key", "model", "day", *METRICS} for r in rows)
    alpha_day1 = next(r for r in rows if r["key"] == "alpha" and r["day"] == "2026-03-01")
    assert alpha_day1 == {
        "partner": "acme", "key": "alpha", "model": "claude-sonnet-4-6", "day": "2026-03-01",
        **expected(ROWS[:2]),
    }  # fmt: skip
    solo = next(r for r in rows if r["key"] == "solo")
    assert solo["partner"] is None and solo["cost_usd"] == 0.0625
    for metric in METRICS:
        assert sum(r[metric] for r in rows) == result["totals"][metric]


def test_group_by_partner(config: Path) -> None:
    result = report(config, "--by", "partner")
    by_partner = {r["partner"]: r for r in result["rows"]}
    assert set(by_partner) == {"acme", "globex", None}
    assert by_partner["acme"] == {
        "partner": "acme",
        **expected([ROWS[0], ROWS[1], ROWS[2], ROWS[5]]),
    }
    assert by_partner["globex"]["cost_usd"] == 1.0
    assert result["totals"] == expected(ROWS)


def test_group_by_model_and_day_with_range(config: Path) -> None:
    # A bare --until date includes that day; --since is inclusive.
    result = report(config, "--by", "model,day", "--since", "2026-03-01", "--until", "2026-03-02")
    assert result["totals"] == expected(ROWS[:5])
    assert {(r["model"], r["day"]) for r in result["rows"]} == {
        ("claude-sonnet-4-6", "2026-03-01"),
        ("claude-haiku-4-5", "2026-03-01"),
        ("claude-sonnet-4-6", "2026-03-02"),
        ("gpt-4o-mini", "2026-03-02"),
    }
    # Date-times narrow it down (UTC unless an offset is given; 21:00-03:00 is 00:00Z).
    result = report(
        config, "--by", "key", "--since", "2026-03-01T13:00", "--until", "2026-03-03T00:00:00Z"
    )
    assert result["totals"] == expected([ROWS[1], ROWS[3], ROWS[4]])
    result = report(config, "--by", "day", "--since", "2026-03-02T21:00:00-03:00")
    assert result["totals"] == expected([ROWS[5]])


def test_empty_range(config: Path) -> None:
    result = report(config, "--since", "2027-01-01")
    assert result["rows"] == []
    assert result["totals"] == {m: 0 for m in METRICS}


def test_filters_resolve_gateway_names(config: Path) -> None:
    # A partner of this gateway without usage: no rows. Unknown names: refused.
    result = report(config, "--partner", "filter-co")
    assert result == {"rows": [], "totals": {m: 0 for m in METRICS}}
    for option in ("--partner", "--key"):
        done = run(config, "usage", option, "ghost")
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.strip() == f"error: {option}: no {option[2:]} named or with id 'ghost'"


def test_table_has_a_totals_row(config: Path) -> None:
    done = run(config, "usage", "--by", "partner")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if "requests" in line)
    assert "partner" in header and "cost (USD)" in header
    total = next(line for line in lines if "total" in line)
    assert "3.937500" in total and " 6 " in total
    acme = next(line for line in lines if "acme" in line)
    assert "2.875000" in acme


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--by", "partner,week"), "--by"),
        (("--since", "last tuesday"), "--since"),
        (("--until", "2026-02-30"), "--until"),
        (("--since", "2026-03-05", "--until", "2026-03-01"), "--until"),
    ],
)
def test_bad_options_are_one_line(config: Path, args: tuple[str, ...], fragment: str) -> None:
    done = run(config, "usage", *args)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]

"""Shared fixtures: one fake upstream and one real gateway process per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import UPSTREAM_KEY, Gateway, start_gateway


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(api_key=UPSTREAM_KEY)
    fake.start_in_thread()
    yield fake
    fake.stop_thread()


@pytest.fixture(scope="session")
def gateway(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The gateway with keys: ``full`` (all models), ``limited`` (claude-sonnet-4-6 only),
    ``expired`` (already expired) and ``revoked``."""
    gw = start_gateway(tmp_path_factory.mktemp("gateway"), upstream)
    gw.create_key("full")
    gw.create_key("limited", "--models", "claude-sonnet-4-6,team-*")
    yield gw
    gw.stop()


@pytest.fixture
def fake(upstream: FakeUpstream) -> FakeUpstream:
    """The fake upstream with an empty script and call log for this test."""
    upstream.reset()
    return upstream


@pytest.fixture
def tmp_workdir(tmp_path: Path) -> Path:
    return tmp_path

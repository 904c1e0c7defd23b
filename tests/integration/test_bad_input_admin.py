"""Bad input to the admin API (issue 7 §6): wrong types and out-of-range values in every
body field, NUL and control characters, dates past the year 9999, bad query strings.

Every case is a 4xx in Anthropic's error shape, never a 500, and a refused write leaves the
key table loadable: a budget of 1e308 USD once stored made every later key reload fail
(nano-USD overflowed), and durations past the year 9999 were 500s.
Unreadable JSON bodies on the admin routes are covered in test_bad_input_suite.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import Gateway
from tests.integration.test_anthropic_support import raw_request
from tests.integration.test_bad_input_support import (
    admin_headers,
    assert_ready,
    assert_refusal,
    message_request,
    no_gateway_errors,
    post,
)


@pytest.fixture(autouse=True)
def _clean(gateway: Gateway) -> Iterator[None]:
    with no_gateway_errors(gateway):
        yield
    assert_ready(gateway)


@pytest.fixture(scope="module")
def targets(gateway: Gateway) -> dict[str, str]:
    """A key and a partner of this module's own, for the update and delete routes."""
    suffix = uuid.uuid4().hex[:8]
    names = {"key": f"bad-input-key-{suffix}", "partner": f"bad-input-partner-{suffix}"}
    assert post(gateway, "/partner/new", {"name": names["partner"]}).status == 200
    assert post(gateway, "/key/generate", {"key_alias": names["key"]}).status == 200
    return names


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


COUNTS: list[Any] = ["5", -1, 0, 2**31, 2**63, 1.5, True, [5]]
BUDGETS: list[Any] = [-1, "10", True, 2e9, 1e308]
DURATIONS: list[Any] = [5, "forever", "0d", "-1d", "99999999d", "999999999999w", "2000-01-01"]
DURATIONS += ["9999-12-31T23:59:59-14:00", "10000-01-01"]
NAMES: list[Any] = [5, None, "", "   ", "x" * 201, "nul\x00", "esc\x1b[2J", "tab\there", ["a"]]

KEY_FIELDS: dict[str, list[Any]] = {
    "models": ["claude-*", [5], [""], ["ok\x00"], ["\x1b[31m"], ["x" * 257], {"a": 1}],
    "rpm_limit": COUNTS,
    "tpm_limit": COUNTS[:4],
    "max_parallel_requests": COUNTS[:4],
    "max_budget": BUDGETS,
    "budget_duration": [5, "fortnight", "99999999999999mo", ""],
    "duration": DURATIONS,
    "metadata": [[1], "x", 5, {"k": "nul\x00"}, {"nul\x00": 1}],
    "partner": [5, ["p"], ""],
    "team_id": [5],
    "unknown_field": [1],
}
GENERATE_CASES = [("key_alias", v) for v in NAMES] + [
    ("key", v) for v in ["short", "é" * 40, "\x00" * 40, "has space" * 5, 5]
]
GENERATE_CASES += [(f, v) for f, values in KEY_FIELDS.items() for v in values]
PARTNER_FIELDS: dict[str, list[Any]] = {
    "weight": [0, -1, 1e-320, 1e308, "2", True, None],
    "rpm_limit": COUNTS,
    "max_budget": BUDGETS,
    "budget_duration": [5, "fortnight"],
    "metadata": [[1], {"nul\x00": 1}],
    "unknown_field": [1],
}
NEW_PARTNER_CASES = [("name", v) for v in NAMES]
NEW_PARTNER_CASES += [(f, v) for f, values in PARTNER_FIELDS.items() for v in values]


def mentions(error: dict[str, Any], field: str) -> bool:
    """Does the refusal name the field (the store says "key name" for ``key_alias``)?"""
    message: str = error["message"]
    return field in message or "NUL" in message or (field == "key_alias" and "name" in message)


def case_id(case: tuple[str, Any]) -> str:
    return f"{case[0]}={json.dumps(case[1])[:30]}"


@pytest.mark.parametrize("case", GENERATE_CASES, ids=case_id)
def test_key_generate_refuses(gateway: Gateway, case: tuple[str, Any]) -> None:
    field, value = case
    body = {"key_alias": unique("bad-gen"), field: value}
    if field == "budget_duration":
        body["max_budget"] = 10
    error = assert_refusal(post(gateway, "/key/generate", body), 400, "anthropic")
    assert mentions(error, field), error


@pytest.mark.parametrize("case", [c for c in GENERATE_CASES if c[0] != "key"], ids=case_id)
def test_key_update_refuses(
    gateway: Gateway, targets: dict[str, str], case: tuple[str, Any]
) -> None:
    field, value = case
    if field == "key_alias":  # on an update it names the key; rename through key_id
        field = "rename"
    body = {"key_alias": targets["key"], field: value}
    if field == "rename":
        body = {"key_id": targets["key"], "key_alias": value}
    assert_refusal(post(gateway, "/key/update", body), 400, "anthropic")


@pytest.mark.parametrize("case", NEW_PARTNER_CASES, ids=case_id)
def test_partner_new_refuses(gateway: Gateway, case: tuple[str, Any]) -> None:
    field, value = case
    body = {"name": unique("bad-partner"), field: value}
    if field == "weight" and value is None:
        body["weight"] = None  # explicit null: not a number
    error = assert_refusal(post(gateway, "/partner/new", body), 400, "anthropic")
    assert mentions(error, field), error


@pytest.mark.parametrize(
    "case",
    [(f, v) for f, values in PARTNER_FIELDS.items() if f != "weight" for v in values]
    + [("weight", v) for v in [0, -1, 1e308, "2"]]
    + [("name", v) for v in ["", "x" * 201, "nul\x00", "esc\x1b[2J", 5, None]],
    ids=case_id,
)
def test_partner_update_refuses(
    gateway: Gateway, targets: dict[str, str], case: tuple[str, Any]
) -> None:
    field, value = case
    body = {"partner": targets["partner"], field: value}
    if field == "budget_duration":
        body["max_budget"] = 10
    assert_refusal(post(gateway, "/partner/update", body), 400, "anthropic")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/key/update", {}, 400),
        ("/key/update", {"key_alias": "no-such-key-anywhere", "rpm_limit": 5}, 404),
        ("/key/update", {"key_id": 5, "rpm_limit": 5}, 400),
        ("/key/delete", {}, 400),
        ("/key/delete", {"key_aliases": "x"}, 400),
        ("/key/delete", {"key_ids": [5]}, 400),
        ("/key/delete", {"keys": [None]}, 400),
        ("/key/delete", {"key_aliases": ["no-such-key-anywhere"]}, 404),
        ("/partner/update", {"partner": "no-such-partner-anywhere", "weight": 2}, 404),
        ("/partner/delete", {}, 400),
        ("/partner/delete", {"partner": ["x"]}, 400),
        ("/partner/delete", {"partner": "no-such-partner-anywhere"}, 404),
        ("/key/generate", {"key_alias": "x", "partner": "no-such-partner-anywhere"}, 404),
    ],
)
def test_other_admin_refusals(gateway: Gateway, path: str, body: Any, status: int) -> None:
    assert_refusal(post(gateway, path, body), status, "anthropic")


def test_nothing_to_change_is_400(gateway: Gateway, targets: dict[str, str]) -> None:
    assert_refusal(post(gateway, "/key/update", {"key_alias": targets["key"]}), 400, "anthropic")
    body = {"partner": targets["partner"]}
    assert_refusal(post(gateway, "/partner/update", body), 400, "anthropic")


BAD_QUERIES: list[tuple[str, int]] = [
    ("/key/info", 400),
    ("/key/info?key_alias=a&key_alias=b", 400),
    ("/key/info?key_alias=" + quote("nul\x00"), 400),
    ("/key/info?key=" + "k" * 600, 400),
    ("/key/info?surprise=1", 400),
    ("/key/info?key_alias=no-such-key-anywhere", 404),
    ("/key/list?partner=" + quote("\x00"), 400),
    ("/partner/info", 400),
    ("/partner/info?partner=" + quote("ü" * 201), 400),
    ("/usage/report?group_by=colour", 400),
    ("/usage/report?since=yesterday", 400),
    ("/usage/report?since=99999", 400),
    ("/usage/report?until=9999-12-31", 400),
    ("/usage/report?since=9999-12-31T23:59:59-14:00", 400),
    ("/usage/report?since=0001-01-01T00:00:00%2B14:00", 400),
    ("/usage/report?since=2026-02-01&until=2026-01-01", 400),
    ("/usage/report?since=%ff%fe", 400),
]


@pytest.mark.parametrize(("target", "status"), BAD_QUERIES)
def test_bad_queries(gateway: Gateway, target: str, status: int) -> None:
    response = raw_request(gateway.url, "GET", target, None, admin_headers())
    assert_refusal(response, status, "anthropic")


def test_refused_writes_leave_keys_loadable(gateway: Gateway, fake: FakeUpstream) -> None:
    """After every refusal above, a key created now still loads and works at once."""
    for body in ({"key_alias": unique("huge"), "max_budget": 1e308},):
        assert_refusal(post(gateway, "/key/generate", body), 400, "anthropic")
    created = post(gateway, "/key/generate", {"key_alias": unique("after"), "max_budget": 1e9})
    assert created.status == 200, created.body
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    headers["x-api-key"] = created.json()["key"]
    answer = raw_request(gateway.url, "POST", "/v1/messages", message_request(), headers)
    assert answer.status == 200, answer.body[:300]
    assert fake.call_count() == 1

"""The admin API on a real gateway process: partners, keys with limits and budgets,
current-period spend, usage reports and the OpenAPI document.

Ledger rows are written straight into the gateway's SQLite database (the sums must come out
exact: costs are binary fractions); everything else goes over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import pytest

from sluicegate.store.db import create_engine
from sluicegate.store.ledger import LedgerRow, LedgerStore
from tests.gateway_harness import ADMIN_TOKEN, Gateway

# The document lists every route under /admin (other route files add theirs beside these).
ROUTES = {
    ("POST", "/admin/key/generate"),
    ("GET", "/admin/key/info"),
    ("GET", "/admin/key/list"),
    ("POST", "/admin/key/update"),
    ("POST", "/admin/key/delete"),
    ("POST", "/admin/key/regenerate"),
    ("POST", "/admin/key/block"),
    ("POST", "/admin/key/unblock"),
    ("POST", "/admin/partner/new"),
    ("GET", "/admin/partner/info"),
    ("GET", "/admin/partner/list"),
    ("POST", "/admin/partner/update"),
    ("POST", "/admin/partner/delete"),
    ("GET", "/admin/usage/report"),
    ("GET", "/admin/audit/list"),
    ("GET", "/admin/openapi.json"),
}
METRICS = (
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cost_usd",
)
Answer = tuple[int, dict[str, Any]]


def call(
    gateway: Gateway,
    method: str,
    path: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Answer:
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(gateway.url + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    default = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    for name, value in (default if headers is None else headers).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def ok(gateway: Gateway, method: str, path: str, body: Any = None) -> dict[str, Any]:
    status, answer = call(gateway, method, path, body)
    assert status == 200, answer
    return answer


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ask(gateway: Gateway, key: str, model: str = "claude-sonnet-4-6") -> str:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)
    message = client.messages.create(
        model=model, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    return message.content[0].text  # type: ignore[union-attr]


def insert_ledger(gateway: Gateway, rows: list[LedgerRow]) -> None:
    async def insert() -> None:
        engine = create_engine(f"sqlite:///{gateway.config.parent / 'sluicegate.db'}")
        try:
            await LedgerStore(engine).insert_many(rows)
        finally:
            await engine.dispose()

    asyncio.run(insert())


def ledger_row(
    when: datetime, cost: float, *, key: dict[str, Any] | None = None,
    partner: dict[str, Any] | None = None, model: str = "claude-sonnet-4-6",
    status: int = 200, tokens: tuple[int, int, int, int] = (10, 5, 0, 0),
) -> LedgerRow:  # fmt: skip
    return LedgerRow(
        created_at=when,
        request_id=unique("req"),
        endpoint="messages",
        stream=False,
        status=status,
        latency_ms=3.0,
        key_id=key["key_id"] if key else None,
        key_name=key["key_alias"] if key else None,
        partner_id=partner["partner_id"] if partner else None,
        partner_name=partner["name"] if partner else None,
        model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cache_read_tokens=tokens[2],
        cache_write_tokens=tokens[3],
        cost_usd=cost,
    )


# --- OpenAPI ---------------------------------------------------------------------------


def test_openapi_document_lists_every_route(gateway: Gateway) -> None:
    status, doc = call(gateway, "GET", "/admin/openapi.json", headers={})  # no token needed
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert listed >= ROUTES
    assert all(path.startswith("/admin/") for _, path in listed)
    assert call(gateway, "GET", "/openapi.json", headers={}) == (status, doc)  # root path too
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an admin token",
    }
    schemas = doc["components"]["schemas"]

    def resolve(ref: dict[str, Any]) -> dict[str, Any]:
        name = ref["$ref"].removeprefix("#/components/schemas/")
        schema: dict[str, Any] = schemas[name]
        return schema

    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["operationId"]
            ok_schema = op["responses"]["200"]["content"]["application/json"]["schema"]
            resolve(ok_schema)
            if path == "/admin/openapi.json":
                assert op["security"] == []
                continue
            assert {"bearer": []} in op["security"]
            assert {"400", "401", "403"} <= set(op["responses"])
            if method == "post":
                body = resolve(op["requestBody"]["content"]["application/json"]["schema"])
                assert body["additionalProperties"] is False
    generate = doc["paths"]["/admin/key/generate"]["post"]
    body = resolve(generate["requestBody"]["content"]["application/json"]["schema"])
    assert body["required"] == ["key_alias"]
    fields = {"rpm_limit", "tpm_limit", "max_parallel_requests", "max_budget", "budget_duration",
              "partner", "team_id", "models", "duration", "key", "metadata",
              "allowed_ips"}  # fmt: skip
    assert fields <= set(body["properties"])
    params = {p["name"]: p for p in doc["paths"]["/admin/usage/report"]["get"]["parameters"]}
    assert set(params) == {"group_by", "since", "until", "partner", "key"}
    assert all(p["in"] == "query" and not p["required"] for p in params.values())
    info = {p["name"] for p in doc["paths"]["/admin/key/info"]["get"]["parameters"]}
    assert info == {"key_alias", "key_id", "key"}
    assert "404" in doc["paths"]["/admin/partner/info"]["get"]["responses"]
    assert "409" in doc["paths"]["/admin/partner/delete"]["post"]["responses"]
    regenerate = doc["paths"]["/admin/key/regenerate"]["post"]
    body = resolve(regenerate["requestBody"]["content"]["application/json"]["schema"])
    assert body["properties"]["grace_period"]["maximum"] == 7 * 86400
    audit = {p["name"] for p in doc["paths"]["/admin/audit/list"]["get"]["parameters"]}
    assert audit == {"actor", "action", "target_id", "since", "until", "limit", "cursor"}
    error = resolve(generate["responses"]["400"]["content"]["application/json"]["schema"])
    assert set(error["properties"]) == {"type", "error"}


# --- auth --------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), sorted(ROUTES - {("GET", "/admin/openapi.json")}))
def test_every_admin_route_needs_the_token(gateway: Gateway, method: str, path: str) -> None:
    body: dict[str, Any] | None = {} if method == "POST" else None
    for where in (path, path.removeprefix("/admin")):  # under /admin and at the root
        for headers in ({}, {"authorization": "Bearer nope"}, {"x-api-key": ADMIN_TOKEN + "x"}):
            status, answer = call(gateway, method, where, body, headers=headers)
            assert status == 401, (headers, answer)
            assert answer["error"]["type"] == "authentication_error"


def test_x_api_key_works_too(gateway: Gateway) -> None:
    status, answer = call(gateway, "GET", "/partner/list", headers={"x-api-key": ADMIN_TOKEN})
    assert status == 200 and isinstance(answer["partners"], list)


# --- partners ----------------------------------------------------------------------------


def test_partner_lifecycle(gateway: Gateway) -> None:
    name = unique("acme")
    made = ok(gateway, "POST", "/partner/new", {
        "name": name, "weight": 2, "rpm_limit": 100, "tpm_limit": 5000,
        "max_parallel_requests": 3, "max_budget": 10, "metadata": {"tier": "gold"},
    })  # fmt: skip
    assert re.fullmatch(r"ptn_[0-9a-f]{24}", made["partner_id"])
    assert (made["name"], made["weight"], made["rpm_limit"], made["tpm_limit"]) == (
        name, 2.0, 100, 5000,
    )  # fmt: skip
    assert (made["max_budget"], made["budget_duration"]) == (10.0, "monthly")
    assert made["metadata"] == {"tier": "gold"}

    listed = ok(gateway, "GET", "/partner/list")["partners"]
    assert [p for p in listed if p["partner_id"] == made["partner_id"]] == [made]

    updated = ok(gateway, "POST", "/partner/update", {
        "partner": name, "rpm_limit": None, "max_budget": 4, "budget_duration": "7d", "weight": 0.5,
    })  # fmt: skip
    assert (updated["rpm_limit"], updated["tpm_limit"], updated["weight"]) == (None, 5000, 0.5)
    assert (updated["max_budget"], updated["budget_duration"]) == (4.0, "weekly")
    cleared = ok(
        gateway, "POST", "/partner/update", {"partner": made["partner_id"], "max_budget": None}
    )
    assert (cleared["max_budget"], cleared["budget_duration"]) == (None, None)

    key = ok(gateway, "POST", "/key/generate", {"key_alias": unique("pk"), "partner": name})
    status, answer = call(gateway, "POST", "/partner/delete", {"partner": name})
    assert status == 409 and answer["error"]["type"] == "invalid_request_error"
    assert name in answer["error"]["message"] and "key" in answer["error"]["message"]

    info = ok(gateway, "GET", f"/partner/info?partner={name}")
    assert [k["key_id"] for k in info["keys"]] == [key["key_id"]]
    assert info["keys"][0]["partner"] == name

    ok(gateway, "POST", "/key/delete", {"key_ids": [key["key_id"]]})
    assert ok(gateway, "POST", "/partner/delete", {"partner": name}) == {
        "deleted_partner": made["partner_id"]
    }
    status, answer = call(gateway, "GET", f"/partner/info?partner={name}")
    assert status == 404 and answer["error"]["type"] == "not_found_error"
    assert name in answer["error"]["message"]


def test_partner_spend_is_the_current_period(gateway: Gateway) -> None:
    partner = ok(gateway, "POST", "/partner/new", {
        "name": unique("spender"), "max_budget": 50, "budget_duration": "daily",
    })  # fmt: skip
    now = datetime.now(UTC)
    insert_ledger(gateway, [
        ledger_row(now - timedelta(seconds=5), 0.25, partner=partner),
        ledger_row(now - timedelta(seconds=4), 1.5, partner=partner),
        ledger_row(now - timedelta(days=2), 8.0, partner=partner),  # an earlier period
    ])  # fmt: skip
    info = ok(gateway, "GET", f"/partner/info?partner={partner['partner_id']}")
    assert info["spend"] == 1.75
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    assert datetime.fromisoformat(info["spend_since"]) == midnight
    assert datetime.fromisoformat(info["budget_reset_at"]) == midnight + timedelta(days=1)


# --- keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "stored"),
    [("1d", "daily"), ("7d", "weekly"), ("1w", "weekly"), ("30d", "monthly"),
     ("1mo", "monthly"), ("total", "total"), ("Weekly", "weekly")],
)  # fmt: skip
def test_budget_duration_aliases(gateway: Gateway, given: str, stored: str) -> None:
    made = ok(gateway, "POST", "/key/generate", {
        "key_alias": unique("dur"), "max_budget": 1.25, "budget_duration": given,
    })  # fmt: skip
    assert (made["max_budget"], made["budget_duration"]) == (1.25, stored)


def test_generate_with_partner_and_limits(gateway: Gateway) -> None:
    partner = ok(gateway, "POST", "/partner/new", {"name": unique("team")})
    alias = unique("limited")
    made = ok(gateway, "POST", "/key/generate", {
        "key_alias": alias, "team_id": partner["name"], "models": ["claude-*"], "duration": "2d",
        "rpm_limit": 60, "tpm_limit": 10000, "max_parallel_requests": 2, "max_budget": 3.5,
        "budget_duration": "monthly", "metadata": {"owner": "ops"},
    })  # fmt: skip
    assert made["key"].startswith("sk-sg-")
    assert made["partner_id"] == partner["partner_id"] and made["partner"] == partner["name"]
    assert (made["rpm_limit"], made["tpm_limit"], made["max_parallel_requests"]) == (60, 10000, 2)
    assert (made["max_budget"], made["budget_duration"]) == (3.5, "monthly")
    assert made["metadata"] == {"owner": "ops"} and made["status"] == "active"
    assert made["expires"] is not None
    assert "You said: hi" in ask(gateway, made["key"])

    listed = ok(gateway, "GET", f"/key/list?partner={partner['partner_id']}")["keys"]
    assert [k["key_alias"] for k in listed] == [alias]
    assert {k for k in made if k != "key"} == set(listed[0])


def test_key_info_by_alias_id_and_value_with_spend(gateway: Gateway) -> None:
    made = ok(gateway, "POST", "/key/generate", {
        "key_alias": unique("info"), "max_budget": 9, "budget_duration": "total",
    })  # fmt: skip
    now = datetime.now(UTC)
    insert_ledger(gateway, [
        ledger_row(now - timedelta(days=400), 0.5, key=made),
        ledger_row(now - timedelta(seconds=3), 0.125, key=made, status=500),
    ])  # fmt: skip
    answers = [
        ok(gateway, "GET", f"/key/info?key_alias={made['key_alias']}"),
        ok(gateway, "GET", f"/key/info?key_id={made['key_id']}"),
        ok(gateway, "GET", "/key/info?" + urllib.parse.urlencode({"key": made["key"]})),
    ]
    for info in answers:
        assert info == answers[0]
        assert info["key_id"] == made["key_id"]
        assert info["spend"] == 0.625  # "total": lifetime spend
        assert info["spend_since"] is None and info["budget_reset_at"] is None
        assert "key" not in info

    # Without a budget: this month's spend.
    plain = ok(gateway, "POST", "/key/generate", {"key_alias": unique("plain")})
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    insert_ledger(gateway, [
        ledger_row(month_start - timedelta(seconds=1), 4.0, key=plain),
        ledger_row(now - timedelta(seconds=1), 0.75, key=plain),
    ])  # fmt: skip
    info = ok(gateway, "GET", f"/key/info?key_id={plain['key_id']}")
    assert info["spend"] == 0.75
    assert datetime.fromisoformat(info["spend_since"]) == month_start
    assert info["max_budget"] is None and info["budget_reset_at"] is None


def test_update_applies_at_once(gateway: Gateway, fake: Any) -> None:
    first = ok(gateway, "POST", "/partner/new", {"name": unique("from")})
    second = ok(gateway, "POST", "/partner/new", {"name": unique("to")})
    made = ok(gateway, "POST", "/key/generate", {
        "key_alias": unique("upd"), "partner": first["name"], "rpm_limit": 5, "max_budget": 2,
    })  # fmt: skip
    assert "You said: hi" in ask(gateway, made["key"])

    new_alias = unique("renamed")
    updated = ok(gateway, "POST", "/key/update", {
        "key_id": made["key_id"], "key_alias": new_alias, "partner": second["partner_id"],
        "rpm_limit": None, "tpm_limit": 700, "max_budget": None, "models": ["gpt-4o-mini"],
        "metadata": {"v": 2},
    })  # fmt: skip
    assert updated["key_alias"] == new_alias and updated["partner"] == second["name"]
    assert (updated["rpm_limit"], updated["tpm_limit"]) == (None, 700)
    assert (updated["max_budget"], updated["budget_duration"]) == (None, None)
    assert updated["models"] == ["gpt-4o-mini"] and updated["metadata"] == {"v": 2}
    # Effective on this instance before the answer: no key-sync wait.
    calls = fake.call_count()
    with pytest.raises(anthropic.PermissionDeniedError):
        ask(gateway, made["key"])
    assert fake.call_count() == calls

    by_value = ok(gateway, "POST", "/key/update", {"key": made["key"], "models": None})
    assert by_value["models"] == [] and by_value["key_alias"] == new_alias
    by_alias = ok(gateway, "POST", "/key/update", {"key_alias": new_alias, "team_id": None})
    assert by_alias["partner_id"] is None and by_alias["partner"] is None
    assert "You said: hi" in ask(gateway, made["key"])


def test_rate_limit_set_by_update_applies_at_once(gateway: Gateway) -> None:
    made = ok(gateway, "POST", "/key/generate", {"key_alias": unique("rl")})
    ok(gateway, "POST", "/key/update", {"key_id": made["key_id"], "rpm_limit": 1})
    assert "You said: hi" in ask(gateway, made["key"])
    with pytest.raises(anthropic.RateLimitError):
        ask(gateway, made["key"])


def test_unknown_targets_are_404(gateway: Gateway) -> None:
    ghost_key = "key_" + "0" * 24
    cases = [
        ("GET", "/key/info?key_alias=no-such-key", None, "no-such-key"),
        ("GET", f"/key/info?key_id={ghost_key}", None, ghost_key),
        ("GET", "/key/info?key=sk-sg-not-a-real-key-at-all", None, "not known"),
        ("GET", "/key/list?partner=no-such-partner", None, "no-such-partner"),
        ("POST", "/key/update", {"key_alias": "no-such-key", "rpm_limit": 1}, "no-such-key"),
        ("POST", "/key/generate", {"key_alias": unique("x"), "partner": "no-such-partner"},
         "no-such-partner"),
        ("POST", "/key/update", {"key_alias": "full", "team_id": "no-such-partner"},
         "no-such-partner"),
        ("GET", "/partner/info?partner=no-such-partner", None, "no-such-partner"),
        ("POST", "/partner/update", {"partner": "no-such-partner", "weight": 2}, "no-such-partner"),
        ("POST", "/partner/delete", {"partner": "no-such-partner"}, "no-such-partner"),
        ("GET", "/usage/report?partner=no-such-partner", None, "no-such-partner"),
        ("GET", "/usage/report?key=no-such-key", None, "no-such-key"),
    ]  # fmt: skip
    for method, path, body, fragment in cases:
        status, answer = call(gateway, method, path, body)
        assert status == 404, (path, body, answer)
        assert answer["error"]["type"] == "not_found_error"
        assert fragment in answer["error"]["message"]


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/key/generate", {"key_alias": 5}, "key_alias"),
        ("/key/generate", {"key_alias": "  "}, "key_alias"),
        ("/key/generate", {"key_alias": "x", "bogus": 1}, "bogus"),
        ("/key/generate", {"key_alias": "x", "rpm_limit": 0}, "rpm_limit"),
        ("/key/generate", {"key_alias": "x", "rpm_limit": 1.5}, "rpm_limit"),
        ("/key/generate", {"key_alias": "x", "rpm_limit": True}, "rpm_limit"),
        ("/key/generate", {"key_alias": "x", "tpm_limit": "100"}, "tpm_limit"),
        ("/key/generate", {"key_alias": "x", "max_parallel_requests": -1}, "max_parallel_requests"),
        ("/key/generate", {"key_alias": "x", "max_budget": -1}, "max_budget"),
        ("/key/generate", {"key_alias": "x", "max_budget": "5"}, "max_budget"),
        ("/key/generate", {"key_alias": "x", "budget_duration": "yearly", "max_budget": 1},
         "budget_duration"),
        ("/key/generate", {"key_alias": "x", "budget_duration": "daily"}, "max_budget"),
        ("/key/generate", {"key_alias": "x", "metadata": [1]}, "metadata"),
        ("/key/generate", {"key_alias": "x", "models": [""]}, "models"),
        ("/key/generate", {"key_alias": "x", "partner": "a", "team_id": "b"}, "team_id"),
        ("/key/generate", {"key_alias": "x", "duration": 30}, "duration"),
        ("/key/generate", {"key_alias": "key_" + "a" * 24}, "key"),
        ("/key/update", {"rpm_limit": 3}, "key_alias"),
        ("/key/update", {"key_alias": "full"}, "nothing to change"),
        ("/key/update", {"key_alias": "full", "duration": "yesterday"}, "duration"),
        ("/key/update", {"key_alias": "full", "budget_duration": "weekly"}, "max_budget"),
        ("/key/delete", {"key_aliases": "full"}, "key_aliases"),
        ("/key/delete", {}, "key_aliases"),
        ("/partner/new", {}, "name"),
        ("/partner/new", {"name": "p", "weight": 0}, "weight"),
        ("/partner/new", {"name": "p", "weight": "heavy"}, "weight"),
        ("/partner/new", {"name": "p", "key_alias": "x"}, "key_alias"),
        ("/partner/new", {"name": "ptn_" + "0" * 24}, "name"),
        ("/partner/update", {"weight": 2}, "partner"),
        ("/partner/update", {"partner": "p", "name": None}, "name"),
        ("/partner/delete", {"partner": 7}, "partner"),
    ],
)  # fmt: skip
def test_bad_bodies_are_400_naming_the_field(
    gateway: Gateway, path: str, body: dict[str, Any], fragment: str
) -> None:
    if body.get("partner") == "p" and call(gateway, "GET", "/partner/info?partner=p")[0] == 404:
        ok(gateway, "POST", "/partner/new", {"name": "p"})
    status, answer = call(gateway, "POST", path, body)
    assert status == 400, answer
    assert answer["type"] == "error"
    assert answer["error"]["type"] == "invalid_request_error"
    assert fragment in answer["error"]["message"]
    assert "Traceback" not in answer["error"]["message"]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/usage/report?group_by=partner,week", "group_by"),
        ("/usage/report?since=tuesday", "since"),
        ("/usage/report?until=2026-02-30", "until"),
        ("/usage/report?since=2026-03-05&until=2026-03-01", "until"),
        ("/usage/report?bogus=1", "bogus"),
        ("/usage/report?since=2026-01-01&since=2026-02-01", "since"),
        ("/key/info", "key_alias"),
        ("/key/list?partner=a&x=1", "x"),
    ],
)
def test_bad_queries_are_400(gateway: Gateway, path: str, fragment: str) -> None:
    status, answer = call(gateway, "GET", path)
    assert status == 400, answer
    assert answer["error"]["type"] == "invalid_request_error"
    assert fragment in answer["error"]["message"]


def test_malformed_and_oversized_bodies(gateway: Gateway) -> None:
    for raw in (b"{not json", b"[1, 2]", b'"text"', b"NaN"):
        status, answer = call(gateway, "POST", "/partner/new", raw=raw)
        assert status == 400 and answer["error"]["type"] == "invalid_request_error", raw
    big = json.dumps({"name": "big", "metadata": {"x": "a" * 70_000}}).encode()
    status, answer = call(gateway, "POST", "/partner/new", raw=big)
    assert status == 413 and answer["error"]["type"] == "request_too_large"


def test_views_never_show_a_key_or_its_hash(gateway: Gateway) -> None:
    partner = ok(gateway, "POST", "/partner/new", {"name": unique("secretive")})
    made = ok(gateway, "POST", "/key/generate", {
        "key_alias": unique("hidden"), "partner": partner["name"],
    })  # fmt: skip
    key = made["key"]
    texts = [
        json.dumps(ok(gateway, "GET", "/key/list")),
        json.dumps(ok(gateway, "GET", f"/key/info?key_id={made['key_id']}")),
        json.dumps(ok(gateway, "GET", f"/partner/info?partner={partner['name']}")),
        json.dumps(ok(gateway, "POST", "/key/update", {"key_id": made["key_id"], "tpm_limit": 9})),
    ]
    for text in texts:
        assert key not in text and key[6:20] not in text
        assert not re.search(r"[0-9a-f]{64}", text)
        assert "key_hash" not in text


# --- usage -------------------------------------------------------------------------------


def test_usage_report_sums_exactly(gateway: Gateway) -> None:
    acme = ok(gateway, "POST", "/partner/new", {"name": unique("u-acme")})
    globex = ok(gateway, "POST", "/partner/new", {"name": unique("u-globex")})
    k1 = ok(
        gateway, "POST", "/key/generate", {"key_alias": unique("u-k1"), "partner": acme["name"]}
    )
    k2 = ok(
        gateway, "POST", "/key/generate", {"key_alias": unique("u-k2"), "partner": acme["name"]}
    )
    k3 = ok(
        gateway, "POST", "/key/generate", {"key_alias": unique("u-k3"), "partner": globex["name"]}
    )
    day = datetime(2021, 6, 1, 10, tzinfo=UTC)
    rows = [
        ledger_row(day, 0.25, key=k1, partner=acme, tokens=(100, 10, 7, 3)),
        ledger_row(day + timedelta(hours=1), 0.5, key=k1, partner=acme, model="claude-haiku-4-5"),
        ledger_row(day + timedelta(days=1), 0.125, key=k2, partner=acme, status=529),
        ledger_row(day + timedelta(days=1), 2.0, key=k3, partner=globex, tokens=(1000, 99, 0, 50)),
        ledger_row(day + timedelta(days=5), 1.0, key=k3, partner=globex),  # outside the range
    ]  # fmt: skip
    insert_ledger(gateway, rows)

    def expect(selected: list[LedgerRow]) -> dict[str, Any]:
        return {
            "requests": len(selected),
            "errors": sum(r.status >= 400 for r in selected),
            "input_tokens": sum(r.input_tokens for r in selected),
            "output_tokens": sum(r.output_tokens for r in selected),
            "cache_read_tokens": sum(r.cache_read_tokens for r in selected),
            "cache_write_tokens": sum(r.cache_write_tokens for r in selected),
            "cost_usd": sum(r.cost_usd for r in selected),
        }

    window = "since=2021-06-01&until=2021-06-02"  # a bare until date includes the day
    report = ok(gateway, "GET", f"/usage/report?group_by=partner&{window}")
    ours = {
        r["partner"]: r for r in report["rows"] if r["partner"] in (acme["name"], globex["name"])
    }
    assert ours[acme["name"]] == {"partner": acme["name"], **expect(rows[:3])}
    assert ours[globex["name"]] == {"partner": globex["name"], **expect(rows[3:4])}

    report = ok(gateway, "GET", f"/usage/report?partner={acme['name']}&{window}")
    assert report["totals"] == expect(rows[:3])
    assert {(r["key"], r["model"], r["day"]) for r in report["rows"]} == {
        (k1["key_alias"], "claude-sonnet-4-6", "2021-06-01"),
        (k1["key_alias"], "claude-haiku-4-5", "2021-06-01"),
        (k2["key_alias"], "claude-sonnet-4-6", "2021-06-02"),
    }
    for metric in METRICS:
        assert sum(r[metric] for r in report["rows"]) == report["totals"][metric]

    report = ok(gateway, "GET", f"/usage/report?group_by=day&key={k3['key_id']}")
    assert [(r["day"], r["cost_usd"]) for r in report["rows"]] == [
        ("2021-06-02", 2.0), ("2021-06-06", 1.0),
    ]  # fmt: skip
    assert report["totals"] == expect(rows[3:])

    # Blank parameters count as absent (default grouping); date-times narrow the range.
    report = ok(
        gateway,
        "GET",
        f"/usage/report?group_by=&partner=&key={k2['key_alias']}"
        "&since=2021-06-02T00:00:00Z&until=2021-06-02T12:00:00Z",
    )
    assert [(r["partner"], r["key"]) for r in report["rows"]] == [(acme["name"], k2["key_alias"])]
    assert report["totals"] == expect(rows[2:3])

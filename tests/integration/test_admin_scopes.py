"""Scoped admin tokens and the hardening of the admin surface, on a real gateway process.

- ``admin.tokens``: a ``read`` token may call GET routes only (403 on every write, before
  the body is looked at); a ``full`` token and ``admin_token`` may call everything; any
  scope may scrape ``/metrics`` with ``metrics.auth: admin_token``.
- Wrong, missing and read-scope tokens get the same answer whatever the route or body.
- ``Host`` and ``X-Forwarded-*`` never change what a token may do.
- CORS is off: no ``access-control-*`` header on any route, preflight or not.
- SQL injection strings in names and filters are stored and matched verbatim; the tables
  stay intact.
- Configurations that cannot work are refused (names, tokens, ports).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anthropic
import pytest

from sluicegate.fake_upstream import FakeUpstream
from sluicegate.settings import ConfigError, settings_from_mapping
from tests.gateway_harness import ADMIN_TOKEN, Gateway, start_gateway
from tests.integration.admin_http import send

READ_TOKEN = "sg-read-scope-test-7d1c2b9e04f3a6"
OPS_TOKEN = "sg-full-scope-test-3a9f6e1d2c8b57"
ADMIN_CONFIG: dict[str, Any] = {
    "tokens": [
        {"name": "viewer", "token": "os.environ/TEST_READ_TOKEN", "scope": "read"},
        {"name": "ops", "token": "os.environ/TEST_OPS_TOKEN", "scope": "full"},
    ]
}
TOKEN_ENV = {"TEST_READ_TOKEN": READ_TOKEN, "TEST_OPS_TOKEN": OPS_TOKEN}
BAD_TOKEN = {
    "type": "error",
    "error": {"type": "authentication_error", "message": "Invalid or missing admin token."},
}
READ_ONLY = {
    "type": "error",
    "error": {
        "type": "permission_error",
        "message": "This admin token has the read scope: it may only call GET routes.",
    },
}
WRITES = [
    ("/admin/key/generate", {"key_alias": "scoped-write"}),
    ("/admin/key/generate", {"not": "valid"}),
    ("/key/update", {"key_alias": "nobody", "rpm_limit": 1}),
    ("/admin/key/delete", {"key_aliases": ["nobody"]}),
    ("/admin/key/regenerate", {"key_alias": "nobody"}),
    ("/admin/key/block", {"key_alias": "nobody"}),
    ("/admin/key/unblock", {"key_alias": "nobody"}),
    ("/admin/partner/new", {"name": "scoped-partner"}),
    ("/partner/delete", {"partner": "nobody"}),
]
READS = ["/admin/key/list", "/key/list", "/admin/partner/list", "/admin/usage/report",
         "/admin/audit/list"]  # fmt: skip


@pytest.fixture(scope="module")
def scoped(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(
        tmp_path_factory.mktemp("scopes"),
        upstream,
        extra_config={"admin": ADMIN_CONFIG, "metrics": {"auth": "admin_token"}},
        env=TOKEN_ENV,
    )
    yield gateway
    gateway.stop()


@pytest.mark.parametrize("path", READS)
@pytest.mark.parametrize("token", [READ_TOKEN, OPS_TOKEN, ADMIN_TOKEN])
def test_every_scope_may_read(scoped: Gateway, token: str, path: str) -> None:
    status, body, _ = send(scoped.url, "GET", path, token=token)
    assert status == 200, body


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_read_scope_gets_one_answer_on_every_write(scoped: Gateway, path: str, body: Any) -> None:
    status, answer, headers = send(scoped.url, "POST", path, body, token=READ_TOKEN)
    assert (status, answer) == (403, READ_ONLY)
    assert headers["x-should-retry"] == "false" and headers["request-id"].startswith("req_")
    # Nothing was done: the read token's write attempt changed no key or partner.
    _, keys, _ = send(scoped.url, "GET", "/admin/key/list", token=OPS_TOKEN)
    assert "scoped-write" not in {k["key_alias"] for k in keys["keys"]}


def test_full_scopes_may_write(scoped: Gateway) -> None:
    for n, token in enumerate([OPS_TOKEN, ADMIN_TOKEN]):
        alias = f"written-by-{n}"
        status, made, _ = send(
            scoped.url, "POST", "/admin/key/generate", {"key_alias": alias}, token=token
        )
        assert status == 200 and made["key_alias"] == alias
        status, blocked, _ = send(
            scoped.url, "POST", "/key/block", {"key_alias": alias}, token=token
        )
        assert status == 200 and blocked["status"] == "blocked"


SPOOFS = [
    {"host": "localhost"},
    {"host": "127.0.0.1"},
    {"x-forwarded-for": "127.0.0.1"},
    {"x-forwarded-host": "localhost", "x-forwarded-proto": "https"},
    {"x-real-ip": "127.0.0.1", "forwarded": "for=127.0.0.1;host=localhost"},
    {"x-forwarded-user": "admin", "x-admin": "true"},
]


@pytest.mark.parametrize("spoof", SPOOFS)
def test_host_and_forwarded_headers_never_authorise(scoped: Gateway, spoof: dict[str, str]) -> None:
    for credentials in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": READ_TOKEN[:-1]}):
        for method, path in (("GET", "/admin/key/list"), ("POST", "/admin/partner/new")):
            body = {"name": "spoofed"} if method == "POST" else None
            status, answer, _ = send(scoped.url, method, path, body, {**spoof, **credentials})
            assert (status, answer) == (401, BAD_TOKEN), (spoof, credentials, path)
    status, answer, _ = send(
        scoped.url, "POST", "/admin/partner/new", {"name": "spoofed"}, spoof, token=READ_TOKEN
    )
    assert (status, answer) == (403, READ_ONLY)


@pytest.mark.parametrize("path", ["/admin/key/list", "/admin/key/generate", "/key/block"])
def test_wrong_and_missing_tokens_get_one_answer(scoped: Gateway, path: str) -> None:
    method = "GET" if path.endswith("list") else "POST"
    body = None if method == "GET" else {"key_alias": "x"}
    answers = set()
    for headers in (
        {},
        {"authorization": "Bearer " + OPS_TOKEN + "x"},
        {"authorization": "Basic " + OPS_TOKEN},
        {"x-api-key": READ_TOKEN.upper()},
        {"authorization": "Bearer"},
    ):
        status, answer, response_headers = send(scoped.url, method, path, body, headers)
        assert response_headers["x-should-retry"] == "false"
        answers.add((status, str(answer)))
    assert answers == {(401, str(BAD_TOKEN))}


def test_any_scope_may_scrape_metrics(scoped: Gateway) -> None:
    for token in (READ_TOKEN, OPS_TOKEN, ADMIN_TOKEN):
        status, body, _ = send(scoped.url, "GET", "/metrics", token=token)
        assert status == 200 and "sluicegate_" in body
    status, body, _ = send(scoped.url, "GET", "/metrics", token="nope")
    assert (status, body) == (401, BAD_TOKEN)


CORS_PATHS = ["/v1/messages", "/v1/chat/completions", "/admin/key/list", "/key/generate",
              "/admin/openapi.json", "/health/readiness", "/metrics", "/no/such/route"]  # fmt: skip
ORIGIN = {"origin": "https://evil.example"}


def no_cors(headers: dict[str, str]) -> bool:
    return not any(name.startswith("access-control-") for name in headers)


@pytest.mark.parametrize("path", CORS_PATHS)
def test_cors_preflight_is_not_answered(scoped: Gateway, path: str) -> None:
    preflight = {
        **ORIGIN,
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-api-key",
    }
    status, body, headers = send(scoped.url, "OPTIONS", path, headers=preflight)
    assert status in (404, 405) and "error" in body  # in the surface's error shape
    assert no_cors(headers), headers


def test_cross_origin_requests_get_no_cors_headers(scoped: Gateway, fake: FakeUpstream) -> None:
    status, _, headers = send(scoped.url, "GET", "/admin/key/list", None, ORIGIN, token=OPS_TOKEN)
    assert status == 200 and no_cors(headers)
    _, made, _ = send(
        scoped.url, "POST", "/admin/key/generate", {"key_alias": "cors-key"}, token=OPS_TOKEN
    )
    client = anthropic.Anthropic(
        base_url=scoped.url, api_key=made["key"], max_retries=0, default_headers=ORIGIN
    )
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.status_code == 200 and no_cors({k.lower(): v for k, v in raw.headers.items()})
    status, _, headers = send(scoped.url, "GET", "/admin/key/list", None, ORIGIN, token="bad")
    assert status == 401 and no_cors(headers)


INJECTIONS = [
    "'; DROP TABLE gateway_keys; --",
    'x" OR "1"="1',
    "y' OR '1'='1' --",
    "Robert'); DELETE FROM partners; --",
    "%_% LIKE '%'",
    "z' UNION SELECT key_hash, key_hash FROM gateway_keys --",
    "\\'; SELECT pg_sleep(5); --",
]


def test_sql_injection_strings_are_plain_data(scoped: Gateway) -> None:
    made_keys = []
    for n, text in enumerate(INJECTIONS):
        status, partner, _ = send(
            scoped.url, "POST", "/admin/partner/new", {"name": text}, token=OPS_TOKEN
        )
        assert status == 200 and partner["name"] == text
        alias = f"{text} #{n}"
        status, key, _ = send(
            scoped.url,
            "POST",
            "/admin/key/generate",
            {"key_alias": alias, "partner": text, "metadata": {"note": text}},
            token=OPS_TOKEN,
        )
        assert status == 200 and key["key_alias"] == alias and key["partner"] == text
        made_keys.append(key)
        for path, params in (
            ("/admin/partner/info", {"partner": text}),
            ("/admin/key/info", {"key_alias": alias}),
            ("/admin/key/list", {"partner": text}),
            ("/admin/usage/report", {"partner": text}),
            ("/admin/audit/list", {"actor": text}),
            ("/admin/audit/list", {"action": text}),
            ("/admin/audit/list", {"action": text + "*"}),
            ("/admin/audit/list", {"target_id": text}),
        ):
            status, answer, _ = send(
                scoped.url, "GET", f"{path}?{urlencode(params)}", token=OPS_TOKEN
            )
            assert status == 200, (path, params, answer)
            if path == "/admin/key/list":
                assert [k["key_alias"] for k in answer["keys"]] == [alias]
            if path == "/admin/audit/list" and params.get("actor"):
                assert answer["entries"] == []
        # Looked up by the injected name, exactly that row is found (no widening match).
        _, info, _ = send(
            scoped.url, "GET", "/admin/key/info?" + urlencode({"key_alias": alias}), token=OPS_TOKEN
        )
        assert info["key_id"] == key["key_id"] and info["metadata"] == {"note": text}
    database = Path(scoped.config).parent / "sluicegate.db"
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"gateway_keys", "partners", "audit_log", "usage_ledger"} <= tables
        for n, text in enumerate(INJECTIONS):
            assert conn.execute("SELECT name FROM partners WHERE name = ?", (text,)).fetchall() == [
                (text,)
            ]
            rows = conn.execute(
                "SELECT id FROM gateway_keys WHERE name = ?", (f"{text} #{n}",)
            ).fetchall()
            assert rows == [(made_keys[n]["key_id"],)]
        assert conn.execute("SELECT count(*) FROM gateway_keys").fetchone()[0] >= len(INJECTIONS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"admin": {"tokens": [{"name": "a", "token": "t1", "scope": "read"},
                               {"name": "a", "token": "t2", "scope": "full"}]}},
         r"admin\.tokens\[1\]\.name: 'a' is taken"),
        ({"admin_token": "t0", "admin": {"tokens": [{"name": "admin", "token": "t1",
                                                     "scope": "read"}]}},
         "the name of admin_token"),
        ({"admin": {"tokens": [{"name": "a", "token": "same", "scope": "read"},
                               {"name": "b", "token": "same", "scope": "full"}]}},
         "must be distinct"),
        ({"admin_token": "same", "admin": {"tokens": [{"name": "a", "token": "same",
                                                       "scope": "read"}]}},
         "must be distinct"),
        ({"admin": {"tokens": [{"name": "a", "token": "t", "scope": "write"}]}}, "scope"),
        ({"admin": {"tokens": [{"name": "has space", "token": "t", "scope": "read"}]}}, "name"),
        ({"server": {"port": 9000}, "admin": {"port": 9000}}, "admin.port: must differ from "
                                                               "server.port"),
        ({"metrics": {"port": 9100}, "admin": {"port": 9100}}, "must differ from metrics.port"),
        ({"admin": {"root_paths": "maybe"}}, "root_paths"),
    ],
)  # fmt: skip
def test_admin_settings_that_cannot_work_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_mapping(data)


def test_metrics_auth_accepts_scoped_tokens_alone() -> None:
    loaded = settings_from_mapping(
        {
            "metrics": {"auth": "admin_token"},
            "admin": {"tokens": [{"name": "prom", "token": "prom-canary-4c1e", "scope": "read"}]},
        }
    )
    assert loaded.admin.tokens[0].name == "prom"
    assert "prom-canary-4c1e" not in str(loaded.redacted())

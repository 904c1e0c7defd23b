"""Bad request bodies against both surfaces and the admin API (issue 7 §6).

Malformed, deeply nested and non-UTF-8 JSON, bodies that are JSON but not objects, every
top-level field with the wrong type, out-of-range ``max_tokens``, path tricks in model names.
Every case gets a clear 4xx in the route's error shape (Anthropic's on the Anthropic routes
and the admin API, OpenAI's on the OpenAI routes), never a 500 or a traceback; nothing the
gateway refuses reaches the upstream; the gateway logs no error and stays ready.
Header- and connection-level cases are in test_bad_input_http.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import Gateway
from tests.integration.test_bad_input_support import (
    ADMIN_BODY_ROUTES,
    ANTHROPIC_ROUTES,
    OPENAI_ROUTES,
    assert_ready,
    assert_refusal,
    no_gateway_errors,
    post,
    surface_of,
)

DATA_ROUTES = (*ANTHROPIC_ROUTES, *OPENAI_ROUTES)
MAX_DEPTH = 128  # sluicegate.api.json_body.MAX_JSON_DEPTH, as documented
TOKENS_CEILING = 2**31 - 1


@pytest.fixture(autouse=True)
def _clean(gateway: Gateway) -> Iterator[None]:
    with no_gateway_errors(gateway):
        yield
    assert_ready(gateway)


def nested(depth: int, kind: str) -> bytes:
    """A JSON value ``depth`` levels deep."""
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def request_body(path: str, model: str = "claude-sonnet-4-6", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if path != "/v1/messages/count_tokens":
        body["max_tokens"] = 16
    body.update(fields)
    return body


def with_field(path: str, raw_field: bytes) -> bytes:
    """A valid request with one more field, given as raw JSON text (``"name": value``)."""
    return json.dumps(request_body(path)).encode()[:-1] + b", " + raw_field + b"}"


# -- JSON that cannot be read --------------------------------------------------------------

UNREADABLE: dict[str, tuple[bytes, str]] = {
    "truncated": (b'{"model": "claude-sonnet-4-6", "max_tokens": ', "not valid JSON"),
    "trailing garbage": (b'{"model": "x"} trailing', "not valid JSON"),
    "single quotes": (b"{'model': 'x'}", "not valid JSON"),
    "NaN literal": (b'{"model": "x", "temperature": NaN}', "not valid JSON"),
    "number out of range": (b'{"model": "x", "max_tokens": 1e309}', "not valid JSON"),
    "invalid UTF-8": (b'{"model": "claude-sonnet-4-6", "x": "\xff\xfe"}', "UTF-8"),
    "UTF-8 surrogate": (b'{"model": "\xed\xa0\x80"}', "UTF-8"),
    "Latin-1 text": (b'{"model": "caf\xe9"}', "UTF-8"),
    "UTF-16": ('{"model": "x"}'.encode("utf-16"), "not valid JSON"),
    "arrays 10,000 deep": (nested(10_000, "array"), f"deeper than {MAX_DEPTH}"),
    "objects 10,000 deep": (nested(10_000, "object"), f"deeper than {MAX_DEPTH}"),
    "arrays 1,025 deep": (nested(1_025, "array"), f"deeper than {MAX_DEPTH}"),
    "array": (b"[1, 2]", "must be a JSON object"),
    "string": (b'"hello"', "must be a JSON object"),
    "number": (b"42", "must be a JSON object"),
    "null": (b"null", "must be a JSON object"),
    "true": (b"true", "must be a JSON object"),
}


@pytest.mark.parametrize("path", [*DATA_ROUTES, *ADMIN_BODY_ROUTES])
@pytest.mark.parametrize("case", list(UNREADABLE))
def test_unreadable_bodies_are_400(
    gateway: Gateway, fake: FakeUpstream, path: str, case: str
) -> None:
    body, fragment = UNREADABLE[case]
    error = assert_refusal(post(gateway, path, body), 400, surface_of(path))
    assert fragment in error["message"], error
    assert fake.call_count() == 0


@pytest.mark.parametrize("path", DATA_ROUTES)
def test_empty_body_is_400(gateway: Gateway, fake: FakeUpstream, path: str) -> None:
    error = assert_refusal(post(gateway, path, b""), 400, surface_of(path))
    assert "empty" in error["message"]
    assert fake.call_count() == 0


# Past the limit is refused where the gateway walks the body: the admin API, and requests it
# translates (an OpenAI client's request to the Anthropic model here). A pass-through body
# is forwarded as it came, unwalked (see the test after the next).
@pytest.mark.parametrize("path", ["/v1/chat/completions", *ADMIN_BODY_ROUTES])
@pytest.mark.parametrize("kind", ["array", "object"])
def test_nesting_past_the_limit_inside_a_request_is_400(
    gateway: Gateway, fake: FakeUpstream, path: str, kind: str
) -> None:
    # The body object is level 1: a field holding MAX_DEPTH levels is one too many.
    body = with_field(path, b'"metadata": {"deep": ' + nested(MAX_DEPTH - 1, kind) + b"}")
    error = assert_refusal(post(gateway, path, body), 400, surface_of(path))
    assert f"deeper than {MAX_DEPTH}" in error["message"]
    assert fake.call_count() == 0


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "team-alias"])
def test_nesting_at_the_limit_is_forwarded(
    gateway: Gateway, fake: FakeUpstream, model: str
) -> None:
    """The deepest accepted body still goes upstream, also when the gateway re-serialises
    it (team-alias rewrites ``model``; orjson serialises only 254 levels)."""
    raw = json.dumps(request_body("/v1/messages", model)).encode()[:-1]
    raw += b', "metadata": {"deep": ' + nested(MAX_DEPTH - 2, "array") + b"}}"
    response = post(gateway, "/v1/messages", raw)

    assert response.status == 200, response.body[:300]
    assert fake.call_count() == 1
    sent = fake.calls[0].json
    assert sent["metadata"]["deep"] == json.loads(nested(MAX_DEPTH - 2, "array"))


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_deep_nesting_passed_through_unchanged_is_forwarded_as_it_came(
    gateway: Gateway, fake: FakeUpstream, path: str
) -> None:
    """Within orjson's own parse limit, a body the gateway neither translates nor
    re-encodes reaches the upstream byte for byte (the upstream judges it)."""
    raw = with_field(path, b'"metadata": {"deep": ' + nested(300, "array") + b"}")
    response = post(gateway, path, raw)
    assert response.status == 200, response.body[:300]
    assert fake.call_count() == 1
    assert fake.calls[0].body == raw


def test_deep_json_inside_tool_call_arguments_is_400(gateway: Gateway, fake: FakeUpstream) -> None:
    """An OpenAI client's tool call arguments are JSON in a string; translating them for an
    Anthropic upstream parses them, past the body's own depth check."""
    arguments = (b'{"a":' * 300 + b"1" + b"}" * 300).decode()
    body = request_body(
        "/v1/chat/completions",
        messages=[
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": arguments},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ],
    )
    error = assert_refusal(post(gateway, "/v1/chat/completions", body), 400, "openai")
    assert "too deeply" in error["message"]
    assert fake.call_count() == 0


# -- max_tokens ------------------------------------------------------------------------------

BAD_LIMITS: dict[str, bytes] = {
    "-1": b"-1",
    "0": b"0",
    "2**31": str(2**31).encode(),
    "2**63": str(2**63).encode(),
    "2**64": str(2**64).encode(),
    "1e309": b"1e309",
    "1.5": b"1.5",
    "1e3": b"1e3",
    '"10"': b'"10"',
    "true": b"true",
    "list": b"[10]",
    "object": b'{"n": 10}',
}


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/v1/messages", "max_tokens"),
        ("/v1/chat/completions", "max_tokens"),
        ("/v1/chat/completions", "max_completion_tokens"),
    ],
)
@pytest.mark.parametrize("value", list(BAD_LIMITS))
def test_bad_token_limits_are_400(
    gateway: Gateway, fake: FakeUpstream, path: str, field: str, value: str
) -> None:
    body = json.dumps({k: v for k, v in request_body(path).items() if k != "max_tokens"})
    raw = body.encode()[:-1] + b', "' + field.encode() + b'": ' + BAD_LIMITS[value] + b"}"
    error = assert_refusal(post(gateway, path, raw), 400, surface_of(path))
    if value != "1e309":  # not even JSON
        assert error["message"].startswith(field), error
        if path in OPENAI_ROUTES:
            assert error["param"] == field, error
    assert fake.call_count() == 0


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_largest_token_limit_is_forwarded(gateway: Gateway, fake: FakeUpstream, path: str) -> None:
    response = post(gateway, path, request_body(path, max_tokens=TOKENS_CEILING))
    assert response.status == 200, response.body[:300]
    assert fake.call_count() == 1


@pytest.mark.parametrize("value", ["absent", "null"])
def test_missing_max_tokens_is_400_on_messages(
    gateway: Gateway, fake: FakeUpstream, value: str
) -> None:
    body = request_body("/v1/messages")
    if value == "absent":
        del body["max_tokens"]
    else:
        body["max_tokens"] = None
    error = assert_refusal(post(gateway, "/v1/messages", body), 400, "anthropic")
    assert error["message"] == "max_tokens: Field required"
    assert fake.call_count() == 0


# -- wrong types -----------------------------------------------------------------------------

ANTHROPIC_WRONG: list[tuple[str, Any]] = [
    ("model", 5),
    ("model", ["claude-sonnet-4-6"]),
    ("model", ""),
    ("messages", "hi"),
    ("messages", {"role": "user"}),
    ("messages", [5]),
    ("messages", [{"role": "user", "content": 5}]),
    ("messages", [{"role": "user", "content": {"type": "text"}}]),
    ("system", 5),
    ("system", {"text": "x"}),
    ("metadata", [1]),
    ("metadata", "user-1"),
    ("stop_sequences", "STOP"),
    ("temperature", "hot"),
    ("temperature", True),
    ("top_p", "0.5"),
    ("top_k", 1.5),
    ("top_k", "5"),
    ("tools", {"name": "f"}),
    ("tools", "f"),
    ("tool_choice", "auto"),
    ("thinking", True),
]
MESSAGES_ONLY_WRONG: list[tuple[str, Any]] = [("stream", "yes"), ("stream", 1)]
OPENAI_WRONG: list[tuple[str, Any]] = [
    ("model", 5),
    ("messages", "hi"),
    ("messages", [5]),
    ("messages", [{"role": "user", "content": 5}]),
    ("stream", "yes"),
    ("stream_options", "include_usage"),
    ("temperature", "hot"),
    ("top_p", []),
    ("presence_penalty", "x"),
    ("frequency_penalty", {}),
    ("n", "2"),
    ("n", 1.5),
    ("seed", "42"),
    ("stop", 5),
    ("tools", {"type": "function"}),
    ("tool_choice", 5),
    ("response_format", "json"),
    ("user", 5),
    ("metadata", [1]),
    ("logit_bias", [1]),
    ("logprobs", "yes"),
    ("parallel_tool_calls", "no"),
    ("store", 1),
]
WRONG_TYPE_CASES = [
    *[(p, f, v) for p in ANTHROPIC_ROUTES for f, v in ANTHROPIC_WRONG],
    *[("/v1/messages", f, v) for f, v in MESSAGES_ONLY_WRONG],
    *[(p, f, v) for p in OPENAI_ROUTES for f, v in OPENAI_WRONG],
]


@pytest.mark.parametrize(
    ("model", "path", "field", "value"),
    [
        (model, path, field, value)
        for model in ("claude-sonnet-4-6", "gpt-4o-mini")  # either upstream
        for path, field, value in WRONG_TYPE_CASES
        # count_tokens is a 404 for OpenAI-upstream models whatever the body holds.
        if not (path == "/v1/messages/count_tokens" and model == "gpt-4o-mini" and field != "model")
    ],
)
def test_wrong_types_are_400_naming_the_field(
    gateway: Gateway, fake: FakeUpstream, model: str, path: str, field: str, value: Any
) -> None:
    body = request_body(path, model)
    body[field] = value
    error = assert_refusal(post(gateway, path, body), 400, surface_of(path))
    assert field in error["message"], error
    if path in OPENAI_ROUTES and field != "model":
        assert error["param"] is not None and error["param"].startswith(field), error
    assert fake.call_count() == 0


# -- model names -----------------------------------------------------------------------------

TRICKY_MODELS: dict[str, tuple[str, int]] = {
    "parent path": ("../../etc/passwd", 404),
    "encoded parent path": ("%2e%2e/%2e%2e/v1/admin", 404),
    "absolute URL": ("http://169.254.169.254/latest/meta-data", 404),
    "NUL": ("claude-sonnet-4-6\x00", 400),
    "CRLF": ("claude-sonnet-4-6\r\nx-injected: 1", 400),
    "DEL": ("claude\x7f", 400),
    "C1 control": ("claude\x85", 400),
    "10 KB": ("c" * 10_000, 400),
    "unicode": ("クロード-😀", 404),
    "right-to-left override": ("\u202egpt", 404),
    "whitespace": ("   ", 400),
}


@pytest.mark.parametrize("path", DATA_ROUTES)
@pytest.mark.parametrize("case", list(TRICKY_MODELS))
def test_tricky_model_names_are_refused(
    gateway: Gateway, fake: FakeUpstream, path: str, case: str
) -> None:
    model, status = TRICKY_MODELS[case]
    error = assert_refusal(post(gateway, path, request_body(path, model)), status, surface_of(path))
    assert "model" in error["message"]
    assert fake.call_count() == 0


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_path_tricks_in_a_wildcard_model_stay_in_the_body(
    gateway: Gateway, fake: FakeUpstream, path: str
) -> None:
    """``claude-*`` is served by wildcard: a name with path segments is only ever the model
    id in the JSON body; the upstream URL is the configured one."""
    model = "claude-../../../v1/admin?x=%2e%2e"
    response = post(gateway, path, request_body(path, model))

    assert response.status == 200, response.body[:300]
    assert [call.path for call in fake.calls] == ["/v1/messages"]
    assert fake.calls[0].json["model"] == model

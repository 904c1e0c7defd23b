"""Property tests of the request parsers (issue 7 §6): whatever the bytes, a parser returns
a ParsedRequest that keeps its promises, or refuses with a 4xx GatewayError. Nothing else
escapes: no TypeError, RecursionError, OverflowError or KeyError reaches the pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from sluicegate.api.admin.base import validate
from sluicegate.api.admin.schemas import (
    DeleteKeys,
    GenerateKey,
    KeyRef,
    NewPartner,
    PartnerRef,
    UpdateKey,
    UpdatePartner,
    UsageQuery,
)
from sluicegate.api.anthropic import (
    MAX_MODEL_NAME,
    MAX_TOKENS_LIMIT,
    ParsedRequest,
    parse_count_tokens,
    parse_messages,
)
from sluicegate.api.json_body import MAX_JSON_DEPTH, loads_limited, too_deep
from sluicegate.api.openai import parse_chat
from sluicegate.errors import GatewayError

PARSERS: dict[str, Callable[[bytes], ParsedRequest]] = {
    "messages": parse_messages,
    "count_tokens": parse_count_tokens,
    "chat": parse_chat,
}
# Derandomized: the same examples on every run (CI stays reproducible), and no example
# database written into the working tree.
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
# Request-shaped objects: the fields the parsers read, each plausible or arbitrary, so that
# the later checks are reached too.
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from(["claude-sonnet-4-6", "gpt-4o-mini", "", " ", "a\x00b"]) | scalars,
    "max_tokens": st.integers(min_value=-5, max_value=2**64) | json_values,
    "max_completion_tokens": st.integers(min_value=-5, max_value=2**64) | json_values,
    "messages": st.lists(
        st.builds(
            lambda role, content: {"role": role, "content": content},
            st.sampled_from(["user", "assistant", "system", "tool"]),
            json_values,
        ),
        max_size=3,
    )
    | json_values,
    "stream": st.booleans() | json_values,
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_values,
}
for name in ("system", "metadata", "temperature", "top_k", "tools", "tool_choice", "stop", "n"):
    FIELDS[name] = json_values
request_like = st.fixed_dictionaries({}, optional=FIELDS)


def encode(value: Any) -> bytes:
    """JSON text of any generated value (the stdlib writes integers of any size)."""
    return json.dumps(value).encode()


def check(parser: Callable[[bytes], ParsedRequest], raw: bytes) -> None:
    """The property: a sound ParsedRequest, or a 4xx GatewayError."""
    try:
        parsed = parser(raw)
    except GatewayError as error:
        assert 400 <= error.status < 500, error
        assert error.message
        return
    assert isinstance(parsed, ParsedRequest)
    assert parsed.raw is raw
    assert isinstance(parsed.payload, dict)
    assert isinstance(parsed.model, str) and parsed.model.strip()
    assert len(parsed.model) <= MAX_MODEL_NAME
    assert isinstance(parsed.stream, bool)
    if parsed.max_tokens is not None:
        assert type(parsed.max_tokens) is int
        assert 1 <= parsed.max_tokens <= MAX_TOKENS_LIMIT
    assert isinstance(parsed.payload.get("messages"), list)
    # What the pipeline does next with a parsed request must work too, or be a 4xx (a body
    # too deep to re-encode: the parsers leave the depth walk to where it matters).
    try:
        parsed.body_for("other-upstream-model")
    except GatewayError as error:
        assert 400 <= error.status < 500, error


@pytest.mark.parametrize("parser", list(PARSERS))
@SETTINGS
@given(value=json_values)
def test_any_json_value(parser: str, value: Any) -> None:
    check(PARSERS[parser], encode(value))


@pytest.mark.parametrize("parser", list(PARSERS))
@SETTINGS
@given(value=request_like)
@example(value={"model": "m", "max_tokens": 2**63, "messages": []})
@example(value={"model": "m", "max_tokens": True, "messages": []})
@example(value={"model": "m", "max_tokens": 1, "messages": [{"content": 5}]})
def test_request_shaped_objects(parser: str, value: dict[str, Any]) -> None:
    check(PARSERS[parser], encode(value))


@pytest.mark.parametrize("parser", list(PARSERS))
@SETTINGS
@given(raw=st.binary(max_size=300))
@example(raw=b"")
@example(raw=b"\xff\xfe{}")
@example(raw=b'{"model": "\xed\xa0\x80"}')
@example(raw=b"[" * 2000)
@example(raw=b'{"a":' * 1100)
@example(raw=b"1e309")
def test_any_bytes(parser: str, raw: bytes) -> None:
    check(PARSERS[parser], raw)


@pytest.mark.parametrize("parser", list(PARSERS))
@SETTINGS
@given(raw=st.binary(max_size=200), cut=st.integers(min_value=0, max_value=400))
def test_valid_request_with_bytes_spliced_in(parser: str, raw: bytes, cut: int) -> None:
    valid = encode({"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": []})
    check(PARSERS[parser], valid[:cut] + raw + valid[cut:])


def nested_text(depth: int, shape: str) -> bytes:
    """JSON text nesting ``depth`` containers (written directly: encoders stop near 1,000)."""
    opens, closes = [], []
    for level in range(depth):
        array = shape == "array" or (shape == "mixed" and level % 2 == 1)
        opens.append(b"[" if array else b'{"k":')
        closes.append(b"]" if array else b"}")
    return b"".join(opens) + b"0" + b"".join(reversed(closes))


def depth_of(value: Any) -> int:
    """The reference definition: 0 for a scalar, 1 + the deepest child for a container."""
    if isinstance(value, dict):
        return 1 + max(map(depth_of, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of, value), default=0)
    return 0


@SETTINGS
@given(
    depth=st.integers(min_value=1, max_value=1200),
    shape=st.sampled_from(["array", "object", "mixed"]),
)
@example(depth=MAX_JSON_DEPTH - 1, shape="array")
@example(depth=MAX_JSON_DEPTH, shape="object")
def test_depth_limit_is_exact(depth: int, shape: str) -> None:
    start = b'{"model": "claude-sonnet-4-6", "max_tokens": 5, "messages": [], "metadata": '
    raw = start + nested_text(depth, shape) + b"}"
    if depth + 1 > MAX_JSON_DEPTH:  # the request object is a level of its own
        with pytest.raises(GatewayError, match=f"deeper than {MAX_JSON_DEPTH}"):
            loads_limited(raw)
    else:
        assert depth_of(loads_limited(raw)) == depth + 1
    check(parse_messages, raw)


@SETTINGS
@given(value=json_values, limit=st.integers(min_value=0, max_value=8))
def test_too_deep_matches_the_reference(value: Any, limit: int) -> None:
    assert too_deep(value, limit) == (depth_of(value) > limit)


ADMIN_MODELS: list[type[BaseModel]] = [
    GenerateKey,
    UpdateKey,
    DeleteKeys,
    KeyRef,
    NewPartner,
    UpdatePartner,
    PartnerRef,
    UsageQuery,
]
admin_like = st.dictionaries(
    st.sampled_from(
        ["key_alias", "key_id", "key", "models", "rpm_limit", "tpm_limit", "max_budget",
         "budget_duration", "duration", "metadata", "partner", "team_id", "name", "weight",
         "key_aliases", "keys", "group_by", "since"]
    ),
    json_values,
    max_size=5,
)  # fmt: skip


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda m: m.__name__)
@SETTINGS
@given(value=admin_like | json_values)
def test_admin_bodies_validate_or_refuse(model: type[BaseModel], value: Any) -> None:
    try:
        validated = validate(model, value)
    except GatewayError as error:
        assert error.status == 400
        return
    assert isinstance(validated, model)
    validated.model_dump(mode="json")

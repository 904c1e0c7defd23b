"""Input-token estimates and rate-limit headers in each surface's names."""

from __future__ import annotations

import re
import time

import orjson

from sluicegate.policy.estimate import IMAGE_TOKENS, estimate_input_tokens
from sluicegate.policy.ratelimit_headers import duration, ratelimit_headers
from sluicegate.state.base import WindowState


def _estimate(payload: dict[str, object]) -> int:
    return estimate_input_tokens(orjson.dumps(payload), payload)  # type: ignore[arg-type]


def test_text_is_about_four_bytes_per_token() -> None:
    payload = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x" * 4000}]}
    raw = orjson.dumps(payload)
    assert _estimate(payload) == len(raw) // 4


def test_base64_images_count_a_flat_amount_not_their_bytes() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "A" * 400_000},
    }
    payload = {
        "model": "m",
        "messages": [{"role": "user", "content": [image, {"type": "text", "text": "hi"}]}],
    }
    estimate = _estimate(payload)
    assert IMAGE_TOKENS <= estimate < IMAGE_TOKENS + 100
    # Nested in a tool result, and OpenAI's data: URLs, the same.
    nested = {"type": "tool_result", "tool_use_id": "t", "content": [image]}
    assert _estimate({"messages": [{"role": "user", "content": [nested]}]}) < IMAGE_TOKENS + 100
    openai = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 400_000}}
    assert _estimate({"messages": [{"role": "user", "content": [openai]}]}) < IMAGE_TOKENS + 100


def test_documents_count_by_decoded_size() -> None:
    doc = {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "A" * 160_000},
    }
    estimate = _estimate({"messages": [{"role": "user", "content": [doc]}]})
    assert 7_400 <= estimate <= 7_600  # 120 kB decoded / 16


def test_odd_shapes_do_not_break_the_estimate() -> None:
    for payload in (
        {},
        {"messages": "x"},
        {"messages": [1, None, {"content": [1, {"source": 5}]}]},
    ):
        assert _estimate(payload) >= 1


WINDOWS = (
    WindowState("key:k", 100, 40, 12.0, 10_000, 9_000, 3.0),
    WindowState("partner:p", 1000, 10, 30.0, None, None, None),
)


def _as_dict(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in headers}


def test_anthropic_headers_report_the_tightest_scope_with_rfc3339_resets() -> None:
    headers = _as_dict(ratelimit_headers("anthropic", WINDOWS))
    assert headers["anthropic-ratelimit-requests-limit"] == "1000"
    assert headers["anthropic-ratelimit-requests-remaining"] == "10"
    assert headers["anthropic-ratelimit-tokens-limit"] == "10000"
    assert headers["anthropic-ratelimit-tokens-remaining"] == "9000"
    reset = headers["anthropic-ratelimit-requests-reset"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", reset)
    at = time.mktime(time.strptime(reset, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 29 <= at - time.time() <= 32


def test_openai_headers_use_durations() -> None:
    headers = _as_dict(ratelimit_headers("openai", WINDOWS))
    assert headers == {
        "x-ratelimit-limit-requests": "1000",
        "x-ratelimit-remaining-requests": "10",
        "x-ratelimit-reset-requests": "30s",
        "x-ratelimit-limit-tokens": "10000",
        "x-ratelimit-remaining-tokens": "9000",
        "x-ratelimit-reset-tokens": "3s",
    }
    assert ratelimit_headers("openai", ()) == []


def test_duration_format() -> None:
    assert duration(0.25) == "250ms"
    assert duration(1) == "1s"
    assert duration(360) == "6m0s"
    assert duration(3723) == "1h2m3s"

"""Rate-limit response headers in each surface's familiar names.

Anthropic: ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` with the reset as
an RFC 3339 time. OpenAI: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` with the
reset as a duration (``1s``, ``6m0s``). The numbers are those of the most constraining scope
(the one with the least remaining) among the request's limits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sluicegate.state.base import WindowState

HeaderList = list[tuple[bytes, bytes]]


def ratelimit_headers(surface: str, windows: Sequence[WindowState]) -> HeaderList:
    if not windows:
        return []
    requests: WindowState | None = None
    tokens: WindowState | None = None
    for window in windows:  # one or two from the memory backend, every scope from Redis
        if window.requests_limit is not None and (
            requests is None
            or (window.requests_remaining or 0) < (requests.requests_remaining or 0)
        ):
            requests = window
        if window.tokens_limit is not None and (
            tokens is None or (window.tokens_remaining or 0) < (tokens.tokens_remaining or 0)
        ):
            tokens = window
    headers: HeaderList = []
    if requests is not None:
        headers += _trio(
            surface,
            "requests",
            requests.requests_limit,
            requests.requests_remaining,
            requests.requests_reset,
        )
    if tokens is not None:
        headers += _trio(
            surface, "tokens", tokens.tokens_limit, tokens.tokens_remaining, tokens.tokens_reset
        )
    return headers


def _names(pattern: str) -> tuple[bytes, bytes, bytes]:
    limit, remaining, reset = (pattern.format(part).encode() for part in PARTS)
    return limit, remaining, reset


PARTS = ("limit", "remaining", "reset")
_NAMES = {
    (surface, what): _names(pattern.replace("WHAT", what))
    for surface, pattern in (
        ("anthropic", "anthropic-ratelimit-WHAT-{}"),
        ("openai", "x-ratelimit-{}-WHAT"),
    )
    for what in ("requests", "tokens")
}


def _trio(
    surface: str, what: str, limit: int | None, remaining: int | None, reset: float | None
) -> HeaderList:
    # Six of these headers go with every governed answer: the limit's bytes are cached
    # (limits rarely change) and the reset's text is memoised per second.
    limit_name, remaining_name, reset_name = _NAMES[(surface, what)]
    reset = reset or 0.0
    if surface == "anthropic":
        reset_value = _rfc3339_bytes(time.time() + reset)
    else:
        reset_value = duration(reset).encode()
    limit_value = _LIMIT_BYTES.get(limit)
    if limit_value is None:
        limit_value = str(limit).encode()
        if len(_LIMIT_BYTES) < 1000:
            _LIMIT_BYTES[limit] = limit_value
    return [
        (limit_name, limit_value),
        (remaining_name, b"%d" % max(remaining or 0, 0)),
        (reset_name, reset_value),
    ]


_LIMIT_BYTES: dict[int | None, bytes] = {}
_last_rfc3339: list[tuple[int, str]] = [(-1, "")]
_last_rfc3339_bytes: list[tuple[int, bytes]] = [(-1, b"")]


def _rfc3339_bytes(unix: float) -> bytes:
    second = int(unix + 0.999)
    cached = _last_rfc3339_bytes[0]
    if cached[0] == second:
        return cached[1]
    text = rfc3339(unix).encode()
    _last_rfc3339_bytes[0] = (second, text)
    return text


def rfc3339(unix: float) -> str:
    """The next whole second at or after ``unix``, as RFC 3339 UTC (memoised: resets of one
    second repeat across all requests in that second)."""
    second = int(unix + 0.999)
    cached = _last_rfc3339[0]
    if cached[0] == second:
        return cached[1]
    text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    _last_rfc3339[0] = (second, text)
    return text


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``250ms``, ``1s``, ``6m0s``, ``1h2m3s``."""
    if seconds < 1:
        return f"{max(round(seconds * 1000), 0)}ms"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"

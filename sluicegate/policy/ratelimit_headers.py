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
    # Six of these headers go with every governed answer, so they are made here in one go:
    # the names and the limits' bytes are cached (limits rarely change) and the resets'
    # text is memoised per second.
    anthropic = surface == "anthropic"
    names = _ANTHROPIC_NAMES if anthropic else _OPENAI_NAMES
    now = time.time() if anthropic else 0.0
    headers: HeaderList = []
    if requests is not None:
        limit, left = requests.requests_limit, requests.requests_remaining or 0
        headers += (
            (names[0], _LIMIT_BYTES.get(limit) or _limit_bytes(limit)),
            (names[1], b"%d" % left if left > 0 else b"0"),
            (names[2], _reset_bytes(anthropic, now, requests.requests_reset)),
        )
    if tokens is not None:
        limit, left = tokens.tokens_limit, tokens.tokens_remaining or 0
        headers += (
            (names[3], _LIMIT_BYTES.get(limit) or _limit_bytes(limit)),
            (names[4], b"%d" % left if left > 0 else b"0"),
            (names[5], _reset_bytes(anthropic, now, tokens.tokens_reset)),
        )
    return headers


def _limit_bytes(limit: int | None) -> bytes:
    """The limit's text, remembered (limits rarely change): a miss of _LIMIT_BYTES."""
    value = _LIMIT_BYTES.get(limit)
    if value is None:
        value = str(limit).encode()
        if len(_LIMIT_BYTES) < 1000:
            _LIMIT_BYTES[limit] = value
    return value


def _reset_bytes(anthropic: bool, now: float, reset: float | None) -> bytes:
    if anthropic:
        return _rfc3339_bytes(now + (reset or 0.0))
    return duration(reset or 0.0).encode()


def _names(pattern: str) -> tuple[bytes, bytes, bytes]:
    limit, remaining, reset = (pattern.format(part).encode() for part in PARTS)
    return limit, remaining, reset


PARTS = ("limit", "remaining", "reset")
# Per surface: requests' limit, remaining, reset, then tokens' limit, remaining, reset.
_ANTHROPIC_NAMES = (
    *_names("anthropic-ratelimit-requests-{}"),
    *_names("anthropic-ratelimit-tokens-{}"),
)
_OPENAI_NAMES = (*_names("x-ratelimit-{}-requests"), *_names("x-ratelimit-{}-tokens"))
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

"""Upstream rate-limit awareness: steer load away from a deployment about to run dry.

Providers report their remaining quota on every response. Anthropic sends
``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``
with the reset as an RFC 3339 time; OpenAI (and most compatible servers) send
``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` with the reset as a Go-style
duration (``250ms``, ``6m0s``, ``1h2m3s``). Sending a request to a deployment that just said
it is out only earns a 429 and a wasted attempt, so :class:`UpstreamLimits` remembers, per
deployment, until when the last report said it would stay (nearly) exhausted; deployment
selection then puts it last instead of first.

This runs on every upstream response, so responses without rate-limit headers cost only a
couple of lookups, and nothing here raises on a malformed value: a bad header is ignored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime

# Without a parseable reset time we still back off briefly rather than not at all: the
# provider said "out", and retrying within the same second is the likeliest 429.
_DEFAULT_BACKOFF = 1.0

_ANTHROPIC_PROBE = "anthropic-ratelimit-requests-remaining"
_OPENAI_PROBE = "x-ratelimit-remaining-requests"

# (limit, remaining, reset) header names per resource, lowercase: dict headers from our own
# code are lowercase and aiohttp's CIMultiDictProxy folds case itself, so one lookup each.
_ANTHROPIC = tuple(
    (
        f"anthropic-ratelimit-{r}-limit",
        f"anthropic-ratelimit-{r}-remaining",
        f"anthropic-ratelimit-{r}-reset",
    )
    for r in ("requests", "tokens", "input-tokens", "output-tokens")
)
_OPENAI = tuple(
    (f"x-ratelimit-limit-{r}", f"x-ratelimit-remaining-{r}", f"x-ratelimit-reset-{r}")
    for r in ("requests", "tokens")
)

# Go's time.Duration units, which is what OpenAI's reset values are printed as.
_UNITS = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ns": 1e-9,
}
_NUMBER_CHARS = frozenset("0123456789.")


def _number(text: str | None) -> float | None:
    """A finite float, or None for a missing or malformed value (``nan``/``inf`` included)."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_duration(text: str) -> float | None:
    """Seconds in a Go duration such as ``1h2m3s``, ``0.5s`` or ``250ms``; None if malformed.

    A bare number is taken as seconds, which some OpenAI-compatible servers send.
    """
    s = text.strip()
    n = len(s)
    if n == 0:
        return None
    total = 0.0
    i = 0
    while i < n:
        j = i
        while j < n and s[j] in _NUMBER_CHARS:
            j += 1
        if j == i:
            return None
        value = _number(s[i:j])
        if value is None:
            return None
        k = j
        while k < n and s[k] not in _NUMBER_CHARS:
            k += 1
        unit = s[j:k]
        if not unit:
            # Only a whole-string number may omit its unit; "1h30" is ambiguous, so refuse it.
            return value if i == 0 else None
        scale = _UNITS.get(unit)
        if scale is None:
            return None
        total += value * scale
        i = k
    return total


def parse_timestamp(text: str) -> float | None:
    """Epoch seconds of an RFC 3339 time such as ``2026-12-05T01:02:03Z``; None if malformed."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        # RFC 3339 requires an offset; a bare time from a sloppy proxy is most likely UTC.
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


class UpstreamLimits:
    """Per deployment: until when its upstream said it is (nearly) out of quota."""

    __slots__ = ("_clock", "_low_fraction", "_until")

    def __init__(self, low_fraction: float = 0.05, clock: Callable[[], float] = time.time) -> None:
        if not 0.0 <= low_fraction < 1.0:
            raise ValueError("low_fraction must be in [0, 1)")
        self._low_fraction = low_fraction
        # Wall clock by default: Anthropic's resets are absolute times, not monotonic ones.
        self._clock = clock
        self._until: dict[str, float] = {}

    def observe(self, name: str, headers: Mapping[str, str]) -> None:
        """Fold one response's rate-limit headers into deployment ``name``'s state.

        ``headers`` must either look keys up case-insensitively (aiohttp's headers do) or have
        lowercase keys. A response carrying none of the headers changes nothing.
        """
        # Fast path: each family always sends its requests header alongside the others.
        anthropic = _ANTHROPIC_PROBE in headers
        if not anthropic and _OPENAI_PROBE not in headers:
            return
        now = self._clock()
        seen = False
        until: float | None = None
        for resource_seen, low_until in self._resources(headers, now, anthropic):
            seen = seen or resource_seen
            if low_until is not None and (until is None or low_until > until):
                until = low_until
        if until is not None:
            self._until[name] = until
        elif seen:
            # Fresh, parseable numbers that are no longer low: the quota has recovered.
            self._until.pop(name, None)

    def _resources(
        self, headers: Mapping[str, str], now: float, anthropic: bool
    ) -> Iterator[tuple[bool, float | None]]:
        """Per resource present: (had a usable remaining count, exhausted-until if low)."""
        if anthropic:
            for limit_key, remaining_key, reset_key in _ANTHROPIC:
                yield self._resource(headers, limit_key, remaining_key, reset_key, now, False)
        # Both families on one response is unusual, but a proxy in front may add its own.
        if _OPENAI_PROBE in headers:
            for limit_key, remaining_key, reset_key in _OPENAI:
                yield self._resource(headers, limit_key, remaining_key, reset_key, now, True)

    def _resource(
        self,
        headers: Mapping[str, str],
        limit_key: str,
        remaining_key: str,
        reset_key: str,
        now: float,
        relative: bool,
    ) -> tuple[bool, float | None]:
        remaining = _number(headers.get(remaining_key))
        if remaining is None:
            return False, None
        limit = _number(headers.get(limit_key))
        if limit is not None and limit > 0:
            low = remaining <= max(1.0, self._low_fraction * limit)
        else:
            # Without a limit we cannot tell what "nearly out" means; only "out" is certain.
            low = remaining <= 0
        if not low:
            return True, None
        reset_text = headers.get(reset_key)
        reset: float | None = None
        if reset_text is not None:
            if relative:
                seconds = parse_duration(reset_text)
                reset = None if seconds is None or seconds < 0 else now + seconds
            else:
                reset = parse_timestamp(reset_text)
        return True, (now + _DEFAULT_BACKOFF if reset is None else reset)

    def exhausted(self, name: str) -> bool:
        """True while the last report said ``name`` is (nearly) out and its reset is ahead."""
        return self.exhausted_until(name) is not None

    def exhausted_until(self, name: str) -> float | None:
        """The clock time ``name`` is expected to recover at, or None if it is not exhausted."""
        until = self._until.get(name)
        if until is None:
            return None
        if self._clock() >= until:
            # Reset passed: forget it so the common lookup stays a miss.
            del self._until[name]
            return None
        return until

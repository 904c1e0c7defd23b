"""When to try an upstream request again, how long to wait, and when to stop.

An upstream failure that has not yet been relayed to the client gets one of three verdicts:
retry it (transient), fall back to another deployment (this one cannot serve it, e.g. the
prompt overflows its context window) or relay it as is (fatal). Classification reads only
status codes, headers, structured JSON error fields and typed exceptions - never message
text, which providers reword freely and which would make the policy silently drift.

Waits use AWS-style "full jitter" so synchronized clients spread out, but an explicit
server hint (``retry-after-ms`` / ``retry-after``) is obeyed exactly. A :class:`RetryBudget`
caps retries at a fraction of recent traffic (the Finagle/Envoy idea) so that a broadly
failing upstream is not hammered with a multiple of its normal load.
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

import orjson

from sluicegate.errors import UpstreamTimeout, UpstreamUnavailable

# Bodies are parsed only for the two statuses whose meaning depends on them, and only when
# small: an error body is a few hundred bytes, a huge one is not worth the parse.
_MAX_BODY = 64 * 1024
_RETRYABLE_4XX = frozenset({408, 409, 429})
_QUOTA_CODES = frozenset({"insufficient_quota", "budget_exceeded"})
# Above this exponent the computed ceiling is far past any sane cap; stop before float overflow.
_MAX_EXPONENT = 60
_BUDGET_SLOTS = 10  # the sliding window is kept as this many equal sub-buckets


class Outcome(enum.Enum):
    RETRY = "retry"  # transient: another attempt (same or other deployment) may succeed
    FALLBACK = "fallback"  # this deployment cannot serve it: try the next one, not this again
    FATAL = "fatal"  # relay to the client as is; never retried nor fallen back


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    retry_after: float | None  # seconds the upstream asked us to wait, if any
    reason: str  # short machine-ish reason for logs, e.g. "status_529", "timeout"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """``name`` (lowercase) looked up case-insensitively in a dict or a CIMultiDict."""
    value = headers.get(name)
    if value is not None:
        return value
    # A CIMultiDict already matched above; a plain dict may still hold mixed-case keys.
    # This scan only runs on the error path, where a header is usually absent anyway.
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def _error_fields(body: bytes | None) -> tuple[str | None, str | None]:
    """``(error.code, error.type)`` of a small JSON error body; ``(None, None)`` otherwise."""
    if not body or len(body) >= _MAX_BODY:
        return None, None
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, None  # not JSON: the status alone decides
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, kind = error.get("code"), error.get("type")
    return (code if isinstance(code, str) else None, kind if isinstance(kind, str) else None)


def classify_status(status: int, headers: Mapping[str, str], body: bytes | None) -> Verdict:
    """The verdict on an upstream answer with ``status`` that has not been relayed yet."""
    if 200 <= status < 400:
        return Verdict(Outcome.FATAL, None, "ok")  # success is never retried; total for safety
    should_retry = (_header(headers, "x-should-retry") or "").strip().lower()
    if should_retry == "false":
        # The upstream knows retrying cannot help (e.g. a spent budget behind another gateway).
        return Verdict(Outcome.FATAL, None, "should_retry_false")
    if status == 429:
        code, kind = _error_fields(body)
        if code in _QUOTA_CODES or kind in _QUOTA_CODES:
            # A spend limit does not lift within any wait we would make: retrying only burns
            # budget and load. "budget_exceeded" is what a chained sluicegate answers.
            return Verdict(Outcome.FATAL, None, "insufficient_quota")
    elif status == 400:
        code, _ = _error_fields(body)
        if code == "context_length_exceeded":
            # Another deployment (a larger context window) may serve it; this one never will.
            return Verdict(Outcome.FALLBACK, None, "context_length_exceeded")
    # "x-should-retry: true" cannot widen this set: the spec keeps every other 4xx fatal, and
    # every status it could apply to is retryable already.
    if status in _RETRYABLE_4XX or 500 <= status <= 599:
        return Verdict(Outcome.RETRY, retry_after_seconds(headers), f"status_{status}")
    return Verdict(Outcome.FATAL, None, f"status_{status}")


def classify_transport(error: BaseException) -> Verdict:
    """The verdict on a request that failed before any response status arrived."""
    if isinstance(error, UpstreamUnavailable):
        return Verdict(Outcome.RETRY, error.retry_after, "connect_error")
    if isinstance(error, UpstreamTimeout):
        return Verdict(Outcome.RETRY, error.retry_after, "timeout")
    # Anything untyped is a gateway bug or a cancellation: retrying would hide or repeat it.
    return Verdict(Outcome.FATAL, None, "internal")


def _non_negative(value: float) -> float | None:
    return value if math.isfinite(value) and value >= 0 else None


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the upstream asked us to wait, or None when it did not say (or said junk).

    ``retry-after-ms`` (OpenAI, Anthropic) is more precise and wins over ``retry-after``,
    which is delta-seconds or an HTTP-date (RFC 9110 section 10.2.3).
    """
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        try:
            parsed = _non_negative(float(millis) / 1000.0)
        except ValueError:
            parsed = None
        if parsed is not None:
            return parsed
    value = _header(headers, "retry-after")
    if value is None:
        return None
    try:
        return _non_negative(float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # "-0000" parses naive but RFC 5322 means UTC
    reference = time.time() if now is None else now
    return _non_negative(when.timestamp() - reference)


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 0.5  # seconds
    cap: float = 8.0  # longest single wait
    max_hint: float = 60.0  # a retry-after longer than this is not waited for

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0 or self.max_hint < 0:
            raise ValueError("backoff base, cap and max_hint must be non-negative")

    def delay(self, attempt: int, hint: float | None, rng: random.Random) -> float | None:
        """Wait before retry number ``attempt`` (1 = first retry).

        With a server hint within ``max_hint``: the hint itself (never jittered below it).
        Hint above ``max_hint``: None (do not retry this deployment). No hint:
        ``uniform(0, min(cap, base * 2**(attempt-1)))``.
        """
        if hint is not None:
            # Waiting less than asked gets another 429; waiting a minute holds the client.
            return max(hint, 0.0) if hint <= self.max_hint else None
        exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
        # Full jitter: the whole range from zero, so retries from many clients decorrelate.
        return rng.uniform(0.0, min(self.cap, self.base * 2.0**exponent))


class RetryBudget:
    """Retries allowed: ``ratio`` of first attempts plus ``min_per_second``, over ``window``.

    The window is a ring of sub-buckets with running totals, so both calls are O(1)
    amortised. Not thread-safe by design: it lives on one event loop.
    """

    __slots__ = (
        "_clock",
        "_floor",
        "_head",
        "_ratio",
        "_requests",
        "_retries",
        "_slot",
        "_total_requests",
        "_total_retries",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 5.0,
        window: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ratio < 0 or min_per_second < 0 or not window > 0:
            raise ValueError("ratio and min_per_second must be >= 0 and window > 0")
        self._ratio = ratio
        # The floor keeps low-traffic routes retryable: 1 request in 10 s still earns retries.
        self._floor = min_per_second * window
        self._slot = window / _BUDGET_SLOTS
        self._clock = clock
        self._requests = [0] * _BUDGET_SLOTS
        self._retries = [0] * _BUDGET_SLOTS
        self._total_requests = 0
        self._total_retries = 0
        self._head = math.floor(clock() / self._slot)  # index of the newest sub-bucket

    def _advance(self) -> int:
        """Expire sub-buckets older than the window; the ring position of the current one."""
        current = math.floor(self._clock() / self._slot)
        # A clock stepping back (only a fake one can) keeps counting into the newest bucket.
        if current > self._head:
            # At most one full turn needs clearing, however long the gap was.
            for index in range(self._head + 1, min(current, self._head + _BUDGET_SLOTS) + 1):
                ring = index % _BUDGET_SLOTS
                self._total_requests -= self._requests[ring]
                self._total_retries -= self._retries[ring]
                self._requests[ring] = 0
                self._retries[ring] = 0
            self._head = current
        return self._head % _BUDGET_SLOTS

    def record_request(self) -> None:
        """Count a first attempt: it earns ``ratio`` of a retry."""
        ring = self._advance()
        self._requests[ring] += 1
        self._total_requests += 1

    def try_spend(self) -> bool:
        """Take one retry (or fallback) from the budget; False means stop trying."""
        ring = self._advance()
        allowed = self._ratio * self._total_requests + self._floor
        # The small epsilon keeps 0.2 * 100 from landing a hair under 20 in floating point.
        if self._total_retries + 1 > allowed + 1e-9:
            return False
        self._retries[ring] += 1
        self._total_retries += 1
        return True

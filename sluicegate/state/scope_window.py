"""One scope's window in the in-process backend: its 1-second buckets in a ring with running
sums, its concurrency leases, and what the headers and refusals read of them.

The bucket layout and the checks mirror the Redis script (redis.py) so both backends answer
alike.
"""

from __future__ import annotations

from collections.abc import Callable

from sluicegate.state.base import (
    WINDOW_BUCKETS,
    RateLimit,
    Refusal,
    WindowState,
    leaves_window_in,
)


class ScopeWindow:
    """One scope's counts and leases. The counts live in a ring of ``WINDOW_BUCKETS``
    one-second buckets ending at ``head`` (the newest second seen), with running sums, so
    a check or an add is a few integer operations and the ring is swept once per second,
    not per request."""

    __slots__ = ("first", "head", "leases", "requests", "sum_requests", "sum_tokens", "tokens")

    def __init__(self) -> None:
        self.head = 0
        # No bucket before ``first`` holds a count: the scan for the oldest counted bucket
        # (for the reset headers) starts there, so it is O(1) amortised.
        self.first = 1
        self.requests = [0] * WINDOW_BUCKETS
        self.tokens = [0] * WINDOW_BUCKETS
        self.sum_requests = 0
        self.sum_tokens = 0
        self.leases: dict[str, float] = {}  # lease -> expiry (scopes with max_parallel)

    def advance(self, bucket: int) -> None:
        """Move the window's end to ``bucket``, dropping the buckets that left it. A clock
        that stepped back keeps the head where it is: counts are never lost."""
        head = self.head
        if bucket <= head:
            return
        requests, tokens = self.requests, self.tokens
        if bucket - head >= WINDOW_BUCKETS:
            if self.sum_requests or self.sum_tokens:
                requests[:] = tokens[:] = [0] * WINDOW_BUCKETS
                self.sum_requests = self.sum_tokens = 0
        else:
            for second in range(head + 1, bucket + 1):
                slot = second % WINDOW_BUCKETS
                if requests[slot] or tokens[slot]:
                    self.sum_requests -= requests[slot]
                    self.sum_tokens -= tokens[slot]
                    requests[slot] = tokens[slot] = 0
        self.head = bucket

    def correct(self, bucket: int, requests: int, tokens: int) -> None:
        """Adjust ``bucket``'s counts, never below 0, if it is still in the ring."""
        head = self.head
        if bucket <= head - WINDOW_BUCKETS or bucket > head:
            return
        slot = bucket % WINDOW_BUCKETS
        if requests:
            self.sum_requests += _add_at_least_zero(self.requests, slot, requests)
        if tokens:
            self.sum_tokens += _add_at_least_zero(self.tokens, slot, tokens)

    def freed_at(self, counts: list[int], total: int, fits: Callable[[int], bool]) -> int | None:
        """The bucket whose leaving makes ``fits(remaining)`` true; None if nothing does."""
        remaining = total
        for second in range(self.head - WINDOW_BUCKETS + 1, self.head + 1):
            count = counts[second % WINDOW_BUCKETS]
            if count:
                remaining -= count
                if fits(remaining):
                    return second
        return None

    def state(self, limit: RateLimit, now: float) -> WindowState:
        """Header state: what is left, and when the oldest bucket counted leaves the window."""
        rpm, tpm = limit.rpm, limit.tpm
        requests, tokens, head = self.requests, self.tokens, self.head
        second = self.first
        if second <= head - WINDOW_BUCKETS:
            second = head - WINDOW_BUCKETS + 1
        while second <= head:  # move ``first`` to the oldest bucket holding anything
            slot = second % WINDOW_BUCKETS
            if requests[slot] or tokens[slot]:
                break
            second += 1
        self.first = second
        requests_left = tokens_left = None
        requests_reset = tokens_reset = None
        if rpm is not None:
            requests_left, requests_reset = _left(
                rpm, self.sum_requests, requests, second, head, now
            )
        if tpm is not None:
            tokens_left, tokens_reset = _left(tpm, self.sum_tokens, tokens, second, head, now)
        return WindowState(
            limit.scope, rpm, requests_left, requests_reset, tpm, tokens_left, tokens_reset
        )


def _add_at_least_zero(counts: list[int], slot: int, delta: int) -> int:
    """Add ``delta`` to ``counts[slot]``, never below 0; the change made (for the sum).
    MemoryBackend.settle_now inlines it for tokens: it runs per scope for nearly every
    request."""
    updated = counts[slot] + delta
    if updated < 0:
        updated = 0
    change = updated - counts[slot]
    counts[slot] = updated
    return change


def _left(
    limit: int, total: int, counts: list[int], second: int, head: int, now: float
) -> tuple[int, float]:
    """What ``limit`` has left after ``total``, and the seconds until the oldest bucket
    from ``second`` that holds a count in ``counts`` leaves the window (0 when none does)."""
    oldest = second
    while oldest <= head and counts[oldest % WINDOW_BUCKETS] <= 0:
        oldest += 1
    reset = oldest + WINDOW_BUCKETS - now if oldest <= head else 0.0
    return (limit - total if limit > total else 0), (reset if reset > 0.0 else 0.0)


# A windowed limit as the hot loops read it: (scope, rpm, tpm, the limit), with an unset
# rpm or tpm as a number no count reaches.
Windowed = tuple[ScopeWindow, int, int, RateLimit]


def window_states(windowed: tuple[Windowed, ...], now: float) -> tuple[WindowState, ...]:
    """The header state of the tightest scope for requests and for tokens (the headers
    report only those): a full state costs more than picking by the running sums. (The
    in-process backend's fast path picks them while checking, then calls ``tightest``.)"""
    by_requests: Windowed | None = None
    by_tokens: Windowed | None = None
    least_requests = least_tokens = 0
    for entry in windowed:
        scope, _, _, limit = entry
        rpm, tpm = limit.rpm, limit.tpm
        if rpm is not None and (by_requests is None or rpm - scope.sum_requests < least_requests):
            by_requests, least_requests = entry, rpm - scope.sum_requests
        if tpm is not None and (by_tokens is None or tpm - scope.sum_tokens < least_tokens):
            by_tokens, least_tokens = entry, tpm - scope.sum_tokens
    return tightest(by_requests, by_tokens, now)


def tightest(
    by_requests: Windowed | None, by_tokens: Windowed | None, now: float
) -> tuple[WindowState, ...]:
    """The header state of the scopes picked as tightest for requests and for tokens."""
    if by_requests is None:
        return () if by_tokens is None else (by_tokens[0].state(by_tokens[3], now),)
    first = by_requests[0].state(by_requests[3], now)
    if by_tokens is None or by_tokens is by_requests:
        return (first,)
    return (first, by_tokens[0].state(by_tokens[3], now))


def window_refusal(limit: RateLimit, scope: ScopeWindow, tokens: int, now: float) -> Refusal | None:
    requests, used_tokens = scope.sum_requests, scope.sum_tokens
    if limit.rpm is not None and requests + 1 > limit.rpm:
        rpm = limit.rpm
        freed = scope.freed_at(scope.requests, requests, lambda left: left + 1 <= rpm)
        retry = None if freed is None else leaves_window_in(freed, now)
        return Refusal(limit.scope, "rpm", retry, rpm, requests)
    if limit.tpm is not None and used_tokens > 0 and used_tokens + tokens > limit.tpm:
        tpm = limit.tpm
        freed = scope.freed_at(
            scope.tokens, used_tokens, lambda left: left == 0 or left + tokens <= tpm
        )
        retry = None if freed is None else leaves_window_in(freed, now)
        return Refusal(limit.scope, "tpm", retry, tpm, used_tokens)
    return None

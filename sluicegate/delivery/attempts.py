"""Getting one request an upstream answer worth relaying: plan, attempts, retries, fallbacks.

``Deliverer.plan`` orders the routes that may serve a request: the alias's deployments (by
the configured strategy; deployments behind an open breaker or out of upstream rate limit
go last), then each fallback alias's, in order. A request too large for a deployment's
``context_window`` skips it, and goes to the alias's context-window fallbacks first.

``Deliverer.open`` walks that plan until an answer can be committed to the client:

* a success (a JSON body, or a stream whose first event arrived and is not an error), or a
  failure that retrying cannot fix (400, 401, 403, 404, 413, spend limits, ...) is returned
  to be relayed as it is;
* a retryable failure (408, 409, 429, 5xx, 529, connection errors, timeouts, an ``error``
  first stream event) moves on: to the next route at once, or to a route already tried after
  a backoff with full jitter, or after the upstream's ``retry-after``;
* attempts stop at ``max_attempts``, at the request's deadline, when a retry-after exceeds
  ``max_retry_after`` everywhere, or when the process-wide retry budget is spent (an
  upstream failing broadly is not hit with a multiple of the traffic): the last failure
  then goes to the client as the upstream sent it (a transport failure as a 502/504).

Nothing is retried once a byte went to the client: this module never sends to the client.
Errors are classified from statuses, headers, structured fields and typed exceptions
(:mod:`sluicegate.delivery.retry_policy`), never from message text.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sluicegate.delivery.breaker import Breakers, BreakerState
from sluicegate.delivery.first_event import COMMIT, first_event_verdict
from sluicegate.delivery.retry_policy import (
    Backoff,
    Outcome,
    RetryBudget,
    Verdict,
    classify_status,
    classify_transport,
)
from sluicegate.delivery.selection import Candidate, DeploymentStats, order
from sluicegate.delivery.upstream_limits import UpstreamLimits
from sluicegate.errors import GatewayError, Overloaded, UpstreamTimeout
from sluicegate.providers.base import UpstreamCall, UpstreamResponse
from sluicegate.routing.router import Route, Router
from sluicegate.settings_delivery import RoutingSettings

if TYPE_CHECKING:
    from sluicegate.api.translated import Translation

log = logging.getLogger("sluicegate.delivery")

Prepare = Callable[[Route], tuple[UpstreamCall, "Translation | None"]]
Send = Callable[[UpstreamCall], Awaitable[UpstreamResponse]]


@dataclass(slots=True)
class Opened:
    """An upstream answer to relay, and how it was obtained."""

    route: Route
    call: UpstreamCall
    translation: Translation | None
    upstream: UpstreamResponse
    attempts: int


class Deliverer:
    def __init__(
        self,
        settings: RoutingSettings,
        router: Router,
        breakers: Breakers | None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        retries = settings.retries
        self._settings = settings
        self._router = router
        self.breakers = breakers
        self._rng = rng or random.Random()
        self._clock = clock
        self._backoff = Backoff(retries.base_delay, retries.max_delay, retries.max_retry_after)
        self._max_attempts = retries.max_attempts
        self.budget = RetryBudget(retries.budget_ratio, retries.budget_min_per_second)
        self.stats = DeploymentStats()
        # In-flight counts and latencies matter only to the strategies that read them.
        self._track = settings.strategy != "weighted"
        self.upstream_limits = UpstreamLimits(settings.upstream_low_fraction)
        self.request_timeout = settings.request_timeout
        # Told of every upstream call's end: (deployment, status or None on a transport
        # failure). For metrics.
        self.on_attempt: Callable[[str, int | None], None] | None = None
        # Whether any deployment has a context window (else requests need no estimate).
        self._windows = router.has_context_windows()

    def routes_changed(self) -> None:
        """The router's table was replaced (routing/sync.py): re-read what is cached of it."""
        self._windows = self._router.has_context_windows()

    # -- the plan ----------------------------------------------------------------------

    def plan(self, model: str, routes: list[Route], estimate: Callable[[], int]) -> list[Route]:
        """Routes to try, best first: ``routes`` (the requested alias's), then fallbacks.
        ``estimate`` (input tokens) is called only when a context window is configured."""
        if not routes:
            return []
        alias = routes[0].deployment.alias
        settings = self._settings
        if (
            len(routes) == 1
            and not self._windows
            and alias not in settings.fallbacks
            and alias not in settings.context_window_fallbacks
        ):
            return routes  # one deployment, nothing to order or fall back to
        input_tokens = estimate() if self._windows else 0
        fitting = [r for r in routes if _fits(r, input_tokens)]
        planned = self._ordered(fitting)
        seen = {alias}
        tables = [settings.fallbacks.get(alias, [])]
        if len(fitting) < len(routes):  # too large for some: bigger windows come first
            tables.insert(0, settings.context_window_fallbacks.get(alias, []))
        for table in tables:
            for other in table:
                if other in seen:
                    continue
                seen.add(other)
                fallback = [
                    Route(d, d.upstream_model or model)
                    for d in self._router.deployments_of(other)
                    if _fits_deployment(d.context_window, input_tokens)
                ]
                planned += self._ordered(fallback)
        return planned

    def _ordered(self, routes: list[Route]) -> list[Route]:
        if len(routes) <= 1:
            return routes
        candidates = [Candidate(r.deployment.name, r.deployment.weight, r) for r in routes]
        ordered = order(
            candidates, self._settings.strategy, self.stats, self._rng, avoid=self._avoid
        )
        return [c.payload for c in ordered]

    def _avoid(self, name: str) -> bool:
        if self.upstream_limits.exhausted(name):
            return True
        return self.breakers is not None and self.breakers.state(name) is BreakerState.OPEN

    # -- the attempts ------------------------------------------------------------------

    async def open(
        self,
        plan: list[Route],
        prepare: Prepare,
        send: Send,
        deadline: float,
        stream: bool,
    ) -> Opened:
        """The first answer worth relaying; raises a GatewayError when there is none."""
        self.budget.record_request()
        tried: dict[str, int] = {}
        hints: dict[str, float | None] = {}  # the last retry-after of each route tried
        excluded: set[str] = set()
        last_opened: Opened | None = None
        last_error: GatewayError | None = None
        attempts = 0
        position = 0
        while attempts < self._max_attempts:
            pick = self._next(plan, position, excluded, tried, hints)
            if pick is None:
                break
            position, route, wait = pick
            name = route.deployment.name
            if attempts and not self.budget.try_spend():
                log.warning("retry budget spent: not retrying", extra={"deployment": name})
                self._unclaim(name)
                break
            if self._clock() + wait >= deadline:
                self._unclaim(name)
                break
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                call, translation = prepare(route)
            except GatewayError:
                self._unclaim(name)
                if attempts == 0 and not excluded:
                    raise  # the client's own request cannot be sent: not a fallback case
                excluded.add(name)  # this fallback cannot take the request; others may
                continue
            attempts += 1
            tried[name] = tried.get(name, 0) + 1
            opened, error, verdict = await self._attempt(
                route, call, translation, send, deadline, stream, attempts
            )
            if verdict.outcome is Outcome.FATAL:
                _discard(last_opened)
                if opened is not None:
                    return opened
                assert error is not None
                raise error
            _discard(last_opened)
            last_opened, last_error = opened, error
            if verdict.outcome is Outcome.FALLBACK:  # too large here: the next alias
                alias = route.deployment.alias
                excluded.update(r.deployment.name for r in plan if r.deployment.alias == alias)
            hints[name] = verdict.retry_after
            position += 1
        if last_opened is not None:
            last_opened.attempts = attempts
            return last_opened
        if last_error is not None:
            raise last_error
        if attempts == 0 and plan and self.breakers is not None and not excluded:
            raise Overloaded(
                "Every upstream deployment for this model is unavailable right now "
                "(circuit breakers open); retry shortly.",
                retry_after=self._soonest_probe(plan),
            )
        raise UpstreamTimeout("No upstream answered before the request's deadline.")

    def _next(
        self,
        plan: list[Route],
        position: int,
        excluded: set[str],
        tried: dict[str, int],
        hints: dict[str, float | None],
    ) -> tuple[int, Route, float] | None:
        """From ``position`` on (cyclically): the next route not excluded whose breaker
        lets an attempt through, and the wait before it (backoff when tried before)."""
        for step in range(len(plan)):
            index = (position + step) % len(plan)
            route = plan[index]
            name = route.deployment.name
            if name in excluded:
                continue
            if self.breakers is not None and not self.breakers.allow(name):
                continue
            times = tried.get(name, 0)
            wait = 0.0
            if times:
                hint = hints.get(name)
                delay = self._backoff.delay(times, hint, self._rng)
                if delay is None:  # asked to wait longer than max_retry_after: not here
                    self._unclaim(name)
                    excluded.add(name)
                    continue
                wait = delay
            return index, route, wait
        return None

    async def _attempt(
        self,
        route: Route,
        call: UpstreamCall,
        translation: Translation | None,
        send: Send,
        deadline: float,
        stream: bool,
        attempt: int,
    ) -> tuple[Opened | None, GatewayError | None, Verdict]:
        """One upstream call, up to the point where it can be committed or judged."""
        name = route.deployment.name
        if self._track:
            self.stats.started(name)
        started = self._clock()
        upstream: UpstreamResponse | None = None
        remaining = deadline - started
        try:
            if remaining + 1.0 < route.deployment.timeouts.first_byte:
                # The request's deadline is nearer than the deployment's own bound (by more
                # than the second a timer is worth).
                async with asyncio.timeout(max(0.0, remaining)):
                    upstream, verdict = await self._call(name, call, send, stream)
            else:  # the common case: no timer of our own (they cost per request)
                upstream, verdict = await self._call(name, call, send, stream)
        except (GatewayError, TimeoutError) as exc:
            if upstream is not None:
                upstream.close()
            error = exc if isinstance(exc, GatewayError) else _deadline_error()
            verdict = classify_transport(error)
            if self.on_attempt is not None:
                self.on_attempt(name, None)
            self._record(name, ok=False, ttfb=None)
            self._log_failure(name, attempt, verdict)
            return None, error, verdict
        except BaseException:
            if upstream is not None:
                upstream.close()
            if self._track:
                self.stats.finished(name, None)
            if self.breakers is not None:
                self.breakers.release(name)
            raise
        if self.on_attempt is not None:
            self.on_attempt(name, upstream.status)
        ok = verdict.outcome is not Outcome.RETRY
        if upstream.status == 429 and not ok:
            # Rate limited, not unwell: the retry honours its retry-after and the upstream
            # limit headers steer traffic away. Opening the breaker would turn a few seconds
            # of rate limiting into a cool-down of refusals.
            self._unclaim(name)
            if self._track:
                self.stats.finished(name, None)
        else:
            ttfb = self._clock() - started if ok and self._track else None
            self._record(name, ok=ok, ttfb=ttfb)
        if not ok:
            self._log_failure(name, attempt, verdict)
        return Opened(route, call, translation, upstream, attempt), None, verdict

    async def _call(
        self, name: str, call: UpstreamCall, send: Send, stream: bool
    ) -> tuple[UpstreamResponse, Verdict]:
        upstream = await send(call)
        try:
            self.upstream_limits.observe(name, upstream.headers)
            if upstream.status >= 300:
                body = await upstream.read()
                return upstream, classify_status(upstream.status, upstream.headers, body)
            if stream:
                return upstream, first_event_verdict(await upstream.first_event(), upstream.headers)
            await upstream.read()
            return upstream, COMMIT
        except BaseException:
            upstream.close()
            raise

    def _unclaim(self, name: str) -> None:
        """An attempt the breaker let through will not happen: give its probe slot back."""
        if self.breakers is not None:
            self.breakers.release(name)

    def _record(self, name: str, *, ok: bool, ttfb: float | None) -> None:
        if self._track:
            self.stats.finished(name, ttfb)
        if self.breakers is not None:
            self.breakers.record(name, ok)

    def _soonest_probe(self, plan: list[Route]) -> float | None:
        if self.breakers is None:
            return None
        now = self._clock()
        times = [self.breakers.open_until(r.deployment.name) for r in plan]
        known = [t - now for t in times if t is not None]
        return max(1.0, min(known)) if known else None

    @staticmethod
    def _log_failure(name: str, attempt: int, verdict: Verdict) -> None:
        log.warning(
            "upstream attempt failed",
            extra={"deployment": name, "attempt": attempt, "reason": verdict.reason},
        )


def _fits(route: Route, input_tokens: int) -> bool:
    return _fits_deployment(route.deployment.context_window, input_tokens)


def _fits_deployment(window: int | None, input_tokens: int) -> bool:
    return window is None or input_tokens <= window


def _discard(opened: Opened | None) -> None:
    """A failed answer that will not be relayed: drop its connection (a read body was
    already released; a stream whose first event failed is still open)."""
    if opened is not None and opened.upstream.status < 300:
        opened.upstream.close()


def _deadline_error() -> GatewayError:
    return UpstreamTimeout("The request's deadline passed before the upstream answered.")

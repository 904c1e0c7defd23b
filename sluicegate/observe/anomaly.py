"""Per-partner anomalies: error rate, latency and spend of a partner's recent traffic judged
against that partner's own recent baseline, not only fixed thresholds.

Why a baseline of its own: a partner whose batch jobs usually fail 10% of the time is not
news at 12%, while a partner that never fails is news at 30%; a fixed threshold fits one of
them at best.

How: per subject, requests are counted into a window of ``settings.window`` seconds (count,
failures, latency sum, spend). The baseline is an exponentially weighted moving average over
past windows: decayed sums of requests, failures, latency and spend, each multiplied by
``0.5 ** (elapsed / baseline_half_life)`` as time passes, so a window half a half-life old
weighs half as much as the newest one. The rates and means compared are ratios of those sums
(requests-weighted: a quiet window of two requests does not swing the error baseline as
much as a busy one). Spend is compared per window, and only windows that had traffic count:
a partner idle overnight is not judged against a baseline of empty windows.

The open window is judged as it fills, at every request, against thresholds computed once
when it opened (a few float comparisons): a burst alerts within its window, not a window
later. Each kind is raised at most once per subject per window; the alert sink (see
:mod:`sluicegate.observe.alerts`) also deduplicates across windows. A window that alerted
is still folded into the baseline afterwards, so a lasting change becomes the new normal.

Every alert is a WARNING log event ``anomaly.<kind>`` with ``extra={"alert": ..., "subject":
..., numbers}``: the log shows it with or without a webhook.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable

from sluicegate.settings_observe import AnomalySettings

log = logging.getLogger("sluicegate.anomaly")

ERROR_RATE = "anomaly.error_rate"
LATENCY = "anomaly.latency"
SPEND_RATE = "anomaly.spend_rate"

_INF = float("inf")


class _Subject:
    """One subject's open window, its baseline and the thresholds derived for this window."""

    __slots__ = (
        "base_failures",
        "base_latency",
        "base_requests",
        "base_spend",
        "base_time",
        "base_windows",
        "count",
        "error_limit",
        "failures",
        "latency_limit",
        "latency_sum",
        "raised",
        "spend",
        "spend_limit",
        "window_end",
    )

    def __init__(self, now: float, window: float, error_floor: float) -> None:
        self.count = 0
        self.failures = 0
        self.latency_sum = 0.0
        self.spend = 0.0
        self.window_end = now + window
        self.raised = 0  # bit set of kinds already raised in this window
        self.base_requests = self.base_failures = 0.0
        self.base_latency = self.base_spend = self.base_windows = 0.0
        self.base_time = now
        # No baseline yet: error rate is judged against the floor only; latency and spend
        # are not judged at all (there is nothing to compare with).
        self.error_limit = error_floor
        self.latency_limit = _INF  # compared with mean latency
        self.spend_limit = _INF  # compared with the window's spend


_ERROR_BIT, _LATENCY_BIT, _SPEND_BIT = 1, 2, 4


class AnomalyDetector:
    """Watches finished requests per subject (a partner, or a key without one) and logs
    ``anomaly.error_rate``, ``anomaly.latency`` and ``anomaly.spend_rate`` alerts.

    ``observe`` is called once per finished request, on the request path: it is O(1) and
    does a few attribute updates and comparisons; windows are rolled lazily, by the first
    request after a window ended, so no timer runs.

    What counts as *failed* is the caller's choice. The gateway passes True for answers the
    partner could not use because of the upstream or the gateway: status >= 500 (including
    the 502/504 of upstream failures and 529 overloaded / open breakers) and transport
    failures. Client errors (4xx) and the gateway's own 429 refusals (the partner's own limits
    or budget) are not failures: they say the partner's requests or quotas are wrong, not
    that the service is unwell.

    Rules, per window of ``settings.window`` seconds:

    - error rate: at least ``min_requests`` requests and failures / requests above
      ``max(error_rate_floor, error_rate_factor * baseline rate)``; without a baseline,
      above the floor (a partner whose first minute is all errors alerts);
    - latency: at least ``min_requests`` requests, a baseline, and mean latency above
      ``latency_factor * baseline mean``;
    - spend: a baseline, and the window's spend above
      ``max(spend_floor_usd, spend_factor * baseline spend per window)``.

    A baseline exists for error rate and latency once past windows hold at least
    ``min_requests`` requests (their weights decayed), so a mean of a handful of requests is
    never the yardstick, and a partner idle for hours is judged afresh; for spend, once one
    window with traffic has closed.

    Memory is bounded: at most ``max_subjects`` subjects are kept; a new subject beyond it
    evicts the one whose window rolled least recently.
    """

    def __init__(
        self,
        settings: AnomalySettings,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_subjects: int = 10_000,
    ) -> None:
        if max_subjects < 1:
            raise ValueError("max_subjects must be at least 1")
        self.settings = settings
        self._clock = clock
        self._max_subjects = max_subjects
        self._window = settings.window
        self._min_requests = settings.min_requests
        self._subjects: OrderedDict[str, _Subject] = OrderedDict()

    def __len__(self) -> int:
        return len(self._subjects)

    def observe(self, subject: str, failed: bool, latency_s: float, cost_usd: float) -> None:
        """One finished request of ``subject``: ``failed`` as the class docstring says,
        ``latency_s`` from arrival to the end of the answer, ``cost_usd`` charged."""
        if not self.settings.enabled:
            return
        now = self._clock()
        state = self._subjects.get(subject)
        if state is None:
            state = self._add(subject, now)
        elif now >= state.window_end:
            self._roll(subject, state, now)
        state.count += 1
        state.latency_sum += latency_s
        state.spend += cost_usd
        if failed:
            state.failures += 1
        # Judge the open window as it fills. Each test is a comparison against a threshold
        # computed when the window opened; the bits keep it to one alert per kind per window.
        if state.raised == _ERROR_BIT | _LATENCY_BIT | _SPEND_BIT:
            return
        if state.spend > state.spend_limit and not state.raised & _SPEND_BIT:
            state.raised |= _SPEND_BIT
            self._alert_spend(subject, state)
        if state.count < self._min_requests:
            return
        if state.failures > state.error_limit * state.count and not state.raised & _ERROR_BIT:
            state.raised |= _ERROR_BIT
            self._alert_error_rate(subject, state)
        if (
            state.latency_sum > state.latency_limit * state.count
            and not state.raised & _LATENCY_BIT
        ):
            state.raised |= _LATENCY_BIT
            self._alert_latency(subject, state)

    def _add(self, subject: str, now: float) -> _Subject:
        if len(self._subjects) >= self._max_subjects:
            self._subjects.popitem(last=False)  # the least recently rolled subject
        state = self._subjects[subject] = _Subject(
            now, self._window, self.settings.error_rate_floor
        )
        return state

    def _roll(self, subject: str, state: _Subject, now: float) -> None:
        """Fold the window that ended into the baseline, decayed to ``now``, and open a new
        window at ``now`` with thresholds from the updated baseline."""
        settings = self.settings
        half_life = settings.baseline_half_life
        # Decay the old sums to now, and the closed window by its age (it ended at
        # window_end; the next request may come much later).
        decay = 0.5 ** ((now - state.base_time) / half_life)
        age = 0.5 ** ((now - state.window_end) / half_life)
        state.base_requests = state.base_requests * decay + state.count * age
        state.base_failures = state.base_failures * decay + state.failures * age
        state.base_latency = state.base_latency * decay + state.latency_sum * age
        state.base_spend = state.base_spend * decay + state.spend * age
        state.base_windows = state.base_windows * decay + age  # a window exists only if used
        state.base_time = now

        if state.base_requests >= self._min_requests:
            rate = state.base_failures / state.base_requests
            state.error_limit = max(settings.error_rate_floor, settings.error_rate_factor * rate)
            state.latency_limit = settings.latency_factor * state.base_latency / state.base_requests
        else:
            state.error_limit = settings.error_rate_floor
            state.latency_limit = _INF
        state.spend_limit = max(
            settings.spend_floor_usd,
            settings.spend_factor * state.base_spend / state.base_windows,
        )

        state.count = state.failures = state.raised = 0
        state.latency_sum = state.spend = 0.0
        state.window_end = now + self._window
        self._subjects.move_to_end(subject)  # once per window, not per request

    # -- the alerts -------------------------------------------------------------------------

    def _baseline_rate(self, state: _Subject) -> float | None:
        if state.base_requests < self._min_requests:
            return None
        return _round(state.base_failures / state.base_requests)

    def _alert_error_rate(self, subject: str, state: _Subject) -> None:
        log.warning(
            ERROR_RATE,
            extra={
                "alert": ERROR_RATE,
                "subject": subject,
                "error_rate": _round(state.failures / state.count),
                "baseline": self._baseline_rate(state),
                "threshold": _round(state.error_limit),
                "requests": state.count,
                "failures": state.failures,
                "window_s": self._window,
            },
        )

    def _alert_latency(self, subject: str, state: _Subject) -> None:
        log.warning(
            LATENCY,
            extra={
                "alert": LATENCY,
                "subject": subject,
                "latency_s": _round(state.latency_sum / state.count),
                "baseline": _round(state.base_latency / state.base_requests),
                "threshold": _round(state.latency_limit),
                "requests": state.count,
                "window_s": self._window,
            },
        )

    def _alert_spend(self, subject: str, state: _Subject) -> None:
        log.warning(
            SPEND_RATE,
            extra={
                "alert": SPEND_RATE,
                "subject": subject,
                "spend_usd": _round(state.spend),
                "baseline": _round(state.base_spend / state.base_windows),
                "threshold": _round(state.spend_limit),
                "requests": state.count,
                "window_s": self._window,
            },
        )


def _round(value: float) -> float:
    # Six significant digits: enough to read, short in a chat message.
    return float(f"{value:.6g}")

"""Ordering the deployments that can serve one model alias.

An alias may map to several deployments (regions, providers, keys). Each request tries them
in the order :func:`order` returns: the first is the primary attempt, the rest are the
fallbacks. Three strategies decide that order:

* ``weighted`` -- a weighted random permutation, so traffic splits by the configured weights
  and the fallbacks are themselves spread by weight;
* ``least-busy`` -- fewest in-flight attempts per unit of weight first;
* ``lowest-latency`` -- lowest moving average of time to first byte first; deployments
  never measured go first so that they get a measurement.

Weight 0 marks a standby: it goes after every weighted deployment, in configured order, under
every strategy. Finally, deployments the caller wants to ``avoid`` (quota exhausted, breaker
open) move to the back, keeping their relative order: never dropped, because a deployment
that is probably out still beats returning an error without trying.

This runs on every request over a handful of candidates, so it does small list work only.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

WEIGHTED = "weighted"
LEAST_BUSY = "least-busy"
LOWEST_LATENCY = "lowest-latency"
STRATEGIES = frozenset({WEIGHTED, LEAST_BUSY, LOWEST_LATENCY})


@dataclass(slots=True)
class Candidate:
    """One deployment able to serve the request; ``payload`` is handed back untouched."""

    name: str
    weight: float = 1.0
    payload: Any = None


class DeploymentStats:
    """Per deployment: in-flight attempts and an EWMA of time to first byte."""

    __slots__ = ("_alpha", "_ewma", "_inflight")

    def __init__(self, alpha: float = 0.2) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self._alpha = alpha
        self._inflight: dict[str, int] = {}
        self._ewma: dict[str, float] = {}

    def started(self, name: str) -> None:
        self._inflight[name] = self._inflight.get(name, 0) + 1

    def finished(self, name: str, ttfb: float | None) -> None:
        """An attempt ended; ``ttfb`` None (failed or unknown) leaves the average alone."""
        count = self._inflight.get(name, 0)
        if count > 1:
            self._inflight[name] = count - 1
        else:
            # Floor at zero: an unmatched finish must not make a deployment look extra idle.
            self._inflight.pop(name, None)
        if ttfb is None or not math.isfinite(ttfb) or ttfb < 0:
            return
        previous = self._ewma.get(name)
        if previous is None:
            # Seed with the first sample; averaging it against 0 would flatter a new deployment.
            self._ewma[name] = ttfb
        else:
            self._ewma[name] = previous + self._alpha * (ttfb - previous)

    def inflight(self, name: str) -> int:
        return self._inflight.get(name, 0)

    def latency(self, name: str) -> float | None:
        return self._ewma.get(name)


def _never(name: str) -> bool:
    return False


def _usable_weight(candidate: Candidate) -> float:
    """The weight, with non-finite or negative values treated as a standby's 0."""
    weight = candidate.weight
    return weight if weight > 0 and math.isfinite(weight) else 0.0


def _weighted(pool: list[Candidate], rng: random.Random) -> list[Candidate]:
    """Draw without replacement, each pick proportional to weight among those left.

    Consumes ``pool``, which the caller builds fresh for each request.
    """
    out: list[Candidate] = []
    weights = [_usable_weight(c) for c in pool]
    while len(pool) > 1:
        point = rng.random() * sum(weights)
        index = len(pool) - 1  # float rounding can leave point just past the last bound
        for i, weight in enumerate(weights):
            point -= weight
            if point < 0:
                index = i
                break
        out.append(pool.pop(index))
        weights.pop(index)
    out.extend(pool)
    return out


def _least_busy(
    pool: list[Candidate], stats: DeploymentStats, rng: random.Random
) -> list[Candidate]:
    # The random second key breaks ties so idle deployments share the load evenly.
    return sorted(pool, key=lambda c: (stats.inflight(c.name) / _usable_weight(c), rng.random()))


def _lowest_latency(
    pool: list[Candidate], stats: DeploymentStats, rng: random.Random
) -> list[Candidate]:
    def key(candidate: Candidate) -> tuple[bool, float, float]:
        latency = stats.latency(candidate.name)
        # Unmeasured first (False sorts before True): otherwise they would never be measured.
        if latency is None:
            return (False, 0.0, rng.random())
        return (True, latency, rng.random())

    return sorted(pool, key=key)


def order(
    candidates: Sequence[Candidate],
    strategy: str,
    stats: DeploymentStats,
    rng: random.Random,
    *,
    avoid: Callable[[str], bool] = _never,
) -> list[Candidate]:
    """The order in which to try ``candidates``: a new list holding every one of them.

    Raises ValueError for an unknown ``strategy`` (configuration should have caught it).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r}")
    active = [c for c in candidates if _usable_weight(c) > 0]
    if len(active) == len(candidates):
        standby: list[Candidate] = []
    else:
        standby = [c for c in candidates if _usable_weight(c) == 0]
    # One or no candidate has one order; skipping the rng keeps seeded sequences stable.
    if len(active) > 1:
        if strategy == WEIGHTED:
            active = _weighted(active, rng)
        elif strategy == LEAST_BUSY:
            active = _least_busy(active, stats, rng)
        else:
            active = _lowest_latency(active, stats, rng)
    ordered = active + standby if standby else active
    if avoid is _never:
        return ordered
    flags = [avoid(c.name) for c in ordered]
    if not any(flags):
        return ordered
    keep = [c for c, flag in zip(ordered, flags, strict=True) if not flag]
    later = [c for c, flag in zip(ordered, flags, strict=True) if flag]
    return keep + later

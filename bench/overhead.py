"""Governance overhead in interleaved rounds: the gateway with limits, budgets and the ledger
on against the gateway core, CPU per request, measured turn about.

Why rounds: on a shared VM one saturation run's CPU per request moves by up to +-10% from
run to run (the host takes cycles, the core's speed drifts over minutes), so a ratio of two
single runs, taken minutes apart, swings between 1.2x and 1.5x for the same build. Here both
gateways run side by side (one idle while the other is measured), each round measures both,
the order alternating from round to round (core first, then governed first, ...: a drift
favours neither), and the verdict takes the median of the rounds' ratios. Every round's
figures are kept in the JSON results.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import benchlib as bl

if TYPE_CHECKING:
    from run import Bench, Target

MODES = ("json", "stream")
Samples = dict[str, list[tuple[float, float]]]  # mode -> [(core, governed) ms/req per round]


def cpu_per_request(bench: Bench, target: Target, mode: str, label: str) -> float | None:
    """One saturation run of ``target``: its CPU ms per request (None if it had errors)."""
    assert target.pid is not None
    before = bl.cpu_seconds(target.pid)
    result = bench.wrk(target, mode, bench.o.duration, label)
    time.sleep(bench.o.settle)  # deferred per-request work (ledger flush) counts, as above
    after = bl.cpu_seconds(target.pid)
    if result.error_count or not result.requests:
        return None
    return (after - before) * 1000.0 / result.requests


def interleaved(bench: Bench, core: Target, governed: Target, rounds: int) -> Samples:
    """``rounds`` rounds of core and governed, per mode, in alternating order."""
    for target in (core, governed):
        for mode in MODES:
            bench.wrk(target, mode, bench.o.warmup, "round-warmup")
    samples: Samples = {mode: [] for mode in MODES}
    for number in range(rounds):
        for mode in MODES:
            order = (core, governed) if number % 2 == 0 else (governed, core)
            print(f"  [overhead round {number + 1}/{rounds} / {mode}] "
                  f"{order[0].name}, then {order[1].name} ...", flush=True)
            got = {t.name: cpu_per_request(bench, t, mode, f"round{number + 1}") for t in order}
            mine, base = got[governed.name], got[core.name]
            if mine is not None and base is not None:
                samples[mode].append((base, mine))
    return samples

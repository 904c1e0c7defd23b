"""Helpers for ``bench/run.py``: wrk output parsing, percentiles, /proc readers, verdicts.

Everything here is either pure (easy to unit-test) or a thin reader of /proc.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# Verdict thresholds (see bench/README.md).
MAX_CPU_RATIO = 1.5  # CPU ms/req at most 1.5x the reference proxy's
MIN_RPS_RATIO = 0.60  # JSON saturation RPS at least 60% of the reference proxy's
MAX_TRANSLATE_CPU_RATIO = 2.0  # translated JSON CPU ms/req at most 2x the reference pass-through
MAX_ADDED_P50_MS = 1.0  # steady-rate p50 at most 1 ms above hitting the upstream directly
MAX_IDLE_RSS_MIB = 100.0


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear-interpolated percentile (like numpy's default) of unsorted ``values``."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return float(ordered[0])
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


# --------------------------------------------------------------------------- wrk output


@dataclass
class WrkResult:
    """One wrk run, from the ``BENCH_RESULT`` line our Lua ``done()`` prints."""

    requests: int
    duration_s: float
    bytes: int
    errors_connect: int
    errors_read: int
    errors_write: int
    errors_timeout: int
    non_2xx: int
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def socket_errors(self) -> int:
        return self.errors_connect + self.errors_read + self.errors_write + self.errors_timeout

    @property
    def error_count(self) -> int:
        return self.socket_errors + self.non_2xx

    def error_summary(self) -> str:
        parts = [f"{name} {n}" for name, n in (
            ("non-2xx", self.non_2xx), ("connect", self.errors_connect),
            ("read", self.errors_read), ("write", self.errors_write),
            ("timeout", self.errors_timeout)) if n]
        return ", ".join(parts)


_RESULT_RE = re.compile(r"^BENCH_RESULT (.*)$", re.MULTILINE)


def parse_wrk_output(text: str) -> WrkResult:
    """Parse the machine-readable line from ``bench/wrk_messages.lua``'s ``done()``.

    Cross-checks against wrk's own human summary when present: the
    ``Non-2xx or 3xx responses`` line and the ``Socket errors`` line.
    """
    match = _RESULT_RE.search(text)
    if match is None:
        raise ValueError("wrk output has no BENCH_RESULT line (did the Lua script run?)")
    kv: dict[str, str] = dict(item.split("=", 1) for item in match.group(1).split())
    us = 1000.0
    result = WrkResult(
        requests=int(kv["requests"]),
        duration_s=int(kv["duration_us"]) / 1e6,
        bytes=int(kv["bytes"]),
        errors_connect=int(kv["connect"]),
        errors_read=int(kv["read"]),
        errors_write=int(kv["write"]),
        errors_timeout=int(kv["timeout"]),
        non_2xx=int(kv["status"]),
        p50_ms=float(kv["p50"]) / us,
        p75_ms=float(kv["p75"]) / us,
        p90_ms=float(kv["p90"]) / us,
        p95_ms=float(kv["p95"]) / us,
        p99_ms=float(kv["p99"]) / us,
        max_ms=float(kv["max"]) / us,
        mean_ms=float(kv["mean"]) / us,
    )
    human = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    if human:
        result.non_2xx = max(result.non_2xx, int(human.group(1)))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if sock:
        c, r, w, t = (int(g) for g in sock.groups())
        result.errors_connect = max(result.errors_connect, c)
        result.errors_read = max(result.errors_read, r)
        result.errors_write = max(result.errors_write, w)
        result.errors_timeout = max(result.errors_timeout, t)
    return result


# --------------------------------------------------------------------------- /proc readers


def _ppid_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                rest = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(rest[1])
    return parents


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants (uvicorn workers, if any)."""
    parents = _ppid_map()
    tree = [pid]
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        tree += kids
        frontier += kids
    return tree


def parse_stat_cpu_ticks(stat_line: str) -> int:
    """utime + stime (clock ticks) from one /proc/PID/stat line."""
    fields = stat_line.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of the man page); utime/stime are fields 14 and 15.
    return int(fields[11]) + int(fields[12])


def _sum_over_tree(pid: int, proc_file: str, parse: Callable[[str], int]) -> int:
    """``parse(/proc/N/<proc_file>)`` summed over ``pid`` and its live descendants."""
    total = 0
    for member in process_tree(pid):
        try:
            with open(f"/proc/{member}/{proc_file}") as fh:
                total += parse(fh.read())
        except OSError:  # the process ended meanwhile
            continue
    return total


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of ``pid`` and its live descendants, in seconds."""
    return _sum_over_tree(pid, "stat", parse_stat_cpu_ticks) / CLK_TCK


def parse_vmrss_kib(status_text: str) -> int:
    match = re.search(r"^VmRSS:\s+(\d+)\s+kB", status_text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` plus its live descendants, in MiB."""
    return _sum_over_tree(pid, "status", parse_vmrss_kib) / 1024.0


def parse_proc_stat_cpus(text: str) -> dict[str, tuple[int, int]]:
    """``{"cpu0": (busy, total), ...}`` jiffies from /proc/stat's per-core lines."""
    cores: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *nums = line.split()
        values = [int(n) for n in nums]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        total = sum(values[:8])  # user..steal; guest is already counted in user
        cores[name] = (total - idle, total)
    return cores


def read_core_times() -> dict[str, tuple[int, int]]:
    with open("/proc/stat") as fh:
        return parse_proc_stat_cpus(fh.read())


def core_busy_percent(before: dict[str, tuple[int, int]],
                      after: dict[str, tuple[int, int]]) -> dict[str, float]:
    busy: dict[str, float] = {}
    for name, (b1, t1) in after.items():
        b0, t0 = before.get(name, (0, 0))
        busy[name] = 100.0 * (b1 - b0) / (t1 - t0) if t1 > t0 else math.nan
    return busy


# --------------------------------------------------------------------------- verdicts


@dataclass
class Check:
    name: str
    status: str  # PASS, FAIL or N/A
    detail: str


@dataclass
class Verdict:
    target: str
    checks: list[Check] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.status != "FAIL" for c in self.checks)


def _num(value: Any) -> float | None:
    if isinstance(value, int | float) and not math.isnan(value):
        return float(value)
    return None


MAX_GOVERNANCE_CPU_RATIO = 1.25


def evaluate_overhead(target: str, base: str, rows: dict[tuple[str, str], dict[str, Any]],
                      max_ratio: float = MAX_GOVERNANCE_CPU_RATIO,
                      rounds: dict[str, list[tuple[float, float]]] | None = None) -> Verdict:
    """CPU per request of ``target`` (the gateway with limits, budgets and the ledger on)
    against ``base`` (the same gateway without them), per mode. With ``rounds`` (mode ->
    [(base, target) ms/req] from interleaved runs, see overhead.py) the verdict is the median
    of the rounds' ratios; otherwise the ratio of the two table rows."""
    verdict = Verdict(f"{target} (vs {base})")
    for mode in ("json", "stream"):
        row = rows.get((target, mode), {})
        mine = _num(row.get("cpu_ms_per_req"))
        ref = _num(rows.get((base, mode), {}).get("cpu_ms_per_req"))
        pairs = [(b, t) for b, t in (rounds or {}).get(mode, []) if b > 0]
        name = f"CPU/req ({mode}) <= {max_ratio}x {base}"
        if row.get("errors"):
            verdict.checks.append(Check(name, "FAIL", "; ".join(row["errors"])))
        elif pairs:
            ratios = sorted(t / b for b, t in pairs)
            ratio = percentile(ratios, 50)
            each = ", ".join(f"{r:.2f}" for r in ratios)
            verdict.checks.append(Check(name, "PASS" if ratio <= max_ratio else "FAIL",
                                        f"median of {len(ratios)} interleaved rounds "
                                        f"{ratio:.2f}x ({each})"))
        elif mine is None or ref is None or ref <= 0:
            verdict.checks.append(Check(name, "N/A", "CPU time not measured"))
        else:
            ratio = mine / ref
            verdict.checks.append(Check(name, "PASS" if ratio <= max_ratio else "FAIL",
                                        f"{mine:.3f} vs {ref:.3f} ms/req = {ratio:.2f}x"))
    return verdict


def evaluate(target: str, rows: dict[tuple[str, str], dict[str, Any]],
             reference: str = "reference") -> Verdict:
    """Compare ``target``'s rows against the reference proxy's (keys: (target, mode)).

    Row keys used: ``rps``, ``cpu_ms_per_req``, ``added_p50_ms``, ``rss_idle_mib``,
    ``errors`` (a list of strings; any entry makes the row invalid).
    """
    verdict = Verdict(target)
    for mode in ("json", "stream", "translate"):
        row = rows.get((target, mode))
        if row is None:
            continue
        if row.get("errors"):
            verdict.checks.append(Check(f"valid run ({mode})", "FAIL",
                                        "; ".join(row["errors"])))
    for mode in ("json", "stream"):
        mine = _num(rows.get((target, mode), {}).get("cpu_ms_per_req"))
        ref = _num(rows.get((reference, mode), {}).get("cpu_ms_per_req"))
        name = f"CPU/req ({mode}) <= {MAX_CPU_RATIO}x reference"
        if mine is None or ref is None or ref <= 0:
            verdict.checks.append(Check(name, "N/A", "CPU time not measured"))
        else:
            ratio = mine / ref
            verdict.checks.append(Check(
                name, "PASS" if ratio <= MAX_CPU_RATIO else "FAIL",
                f"{mine:.3f} vs {ref:.3f} ms/req = {ratio:.2f}x"))
    if (target, "translate") in rows:
        mine = _num(rows[(target, "translate")].get("cpu_ms_per_req"))
        ref = _num(rows.get((reference, "json"), {}).get("cpu_ms_per_req"))
        name = f"CPU/req (translate) <= {MAX_TRANSLATE_CPU_RATIO}x reference json"
        if mine is None or ref is None or ref <= 0:
            verdict.checks.append(Check(name, "N/A", "CPU time not measured"))
        else:
            ratio = mine / ref
            verdict.checks.append(Check(
                name, "PASS" if ratio <= MAX_TRANSLATE_CPU_RATIO else "FAIL",
                f"{mine:.3f} vs {ref:.3f} ms/req = {ratio:.2f}x"))
    mine = _num(rows.get((target, "json"), {}).get("rps"))
    ref = _num(rows.get((reference, "json"), {}).get("rps"))
    name = f"RPS (json) >= {MIN_RPS_RATIO:.0%} of reference"
    if mine is None or ref is None or ref <= 0:
        verdict.checks.append(Check(name, "N/A", "RPS not measured"))
    else:
        ratio = mine / ref
        verdict.checks.append(Check(name, "PASS" if ratio >= MIN_RPS_RATIO else "FAIL",
                                    f"{mine:,.0f} vs {ref:,.0f} req/s = {ratio:.0%}"))
    for mode in ("json", "stream"):
        added = _num(rows.get((target, mode), {}).get("added_p50_ms"))
        name = f"added steady p50 ({mode}) <= {MAX_ADDED_P50_MS} ms"
        if added is None:
            verdict.checks.append(Check(name, "N/A", "steady run missing"))
        else:
            verdict.checks.append(Check(name, "PASS" if added <= MAX_ADDED_P50_MS else "FAIL",
                                        f"{added:+.3f} ms"))
    idle = _num(rows.get((target, "json"), {}).get("rss_idle_mib"))
    name = f"idle RSS <= {MAX_IDLE_RSS_MIB:.0f} MiB"
    if idle is None:
        verdict.checks.append(Check(name, "N/A", "RSS not measured"))
    else:
        verdict.checks.append(Check(name, "PASS" if idle <= MAX_IDLE_RSS_MIB else "FAIL",
                                    f"{idle:.1f} MiB"))
    return verdict


def fmt(value: Any, spec: str = ".2f", missing: str = "-") -> str:
    number = _num(value)
    return missing if number is None else format(number, spec)


def parse_named(items: Iterable[str], what: str) -> dict[str, str]:
    """``["a=x", "b=y"]`` -> ``{"a": "x", "b": "y"}``; raises ValueError on a bad item."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"{what}: expected NAME=VALUE, got {item!r}")
        out[name] = value
    return out

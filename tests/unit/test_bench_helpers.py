"""Pure helpers of bench/benchlib.py (the benchmark runner's parsing and verdict logic)."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import benchlib as bl

WRK_OUTPUT = """\
Running 3s test @ http://127.0.0.1:40000/v1/messages
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.11ms    2.01ms  27.00ms   89.22%
  Latency Distribution
     50%    6.11ms
  14200 requests in 3.00s, 8.27MB read
  Non-2xx or 3xx responses: 12
Requests/sec:   4733.33
BENCH_RESULT requests=14200 duration_us=3000000 bytes=8671000 connect=0 read=3 write=0 \
status=12 timeout=1 p50=6110 p75=7000 p90=9000 p95=24180 p99=44720 max=60000 mean=6500.5
"""


def test_percentile_interpolates_like_numpy() -> None:
    assert bl.percentile([1, 2, 3, 4], 50) == 2.5
    assert bl.percentile([5.0], 99) == 5.0
    assert bl.percentile([3, 1, 2], 0) == 1.0
    assert bl.percentile([3, 1, 2], 100) == 3.0
    assert math.isnan(bl.percentile([], 50))


def test_parse_wrk_output_reads_the_lua_line_and_errors() -> None:
    result = bl.parse_wrk_output(WRK_OUTPUT)
    assert result.requests == 14200
    assert result.rps == pytest.approx(4733.33, rel=1e-3)
    assert result.p50_ms == pytest.approx(6.11)
    assert result.p95_ms == pytest.approx(24.18)
    assert result.p99_ms == pytest.approx(44.72)
    assert result.non_2xx == 12
    assert result.error_count == 16
    assert result.error_summary() == "non-2xx 12, read 3, timeout 1"


def test_parse_wrk_output_takes_wrk_human_counts_when_higher() -> None:
    text = WRK_OUTPUT.replace("status=12", "status=0").replace(
        "Non-2xx or 3xx responses: 12",
        "Non-2xx or 3xx responses: 40\n  Socket errors: connect 1, read 2, write 0, timeout 0",
    )
    result = bl.parse_wrk_output(text)
    assert result.non_2xx == 40
    assert result.errors_connect == 1
    assert result.errors_read == 3


def test_parse_wrk_output_without_result_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="BENCH_RESULT"):
        bl.parse_wrk_output("Running 1s test\n")


def test_proc_parsers() -> None:
    stat = "1234 (sluice gate) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 70 3 4 20 0 6 0"
    assert bl.parse_stat_cpu_ticks(stat) == 320
    assert bl.parse_vmrss_kib("Name:\tpython\nVmRSS:\t   91832 kB\nThreads:\t6\n") == 91832
    assert bl.parse_vmrss_kib("Name:\tkthread\n") == 0
    cores = bl.parse_proc_stat_cpus(
        "cpu  10 0 10 80 0 0 0 0 0 0\n"
        "cpu0 5 0 5 40 0 0 0 0 0 0\n"
        "cpu1 5 0 5 30 10 0 0 0 0 0\n"
        "intr 1 2 3\n"
    )
    assert cores == {"cpu0": (10, 50), "cpu1": (10, 50)}
    busy = bl.core_busy_percent(cores, {"cpu0": (60, 100), "cpu1": (10, 100)})
    assert busy == {"cpu0": 100.0, "cpu1": 0.0}


def _rows(**sluicegate: object) -> dict[tuple[str, str], dict[str, object]]:
    base = {
        "rps": 6000.0,
        "cpu_ms_per_req": 0.15,
        "added_p50_ms": 0.5,
        "rss_idle_mib": 40.0,
        "errors": [],
    }
    mine = {**base, **sluicegate}
    return {
        ("reference", "json"): dict(base),
        ("reference", "stream"): dict(base),
        ("sluicegate", "json"): dict(mine),
        ("sluicegate", "stream"): dict(mine),
    }


def test_evaluate_passes_a_target_equal_to_the_reference() -> None:
    verdict = bl.evaluate("sluicegate", _rows())
    assert verdict.passed
    assert {c.status for c in verdict.checks} == {"PASS"}


def test_evaluate_flags_each_threshold() -> None:
    verdict = bl.evaluate(
        "sluicegate", _rows(rps=3000.0, cpu_ms_per_req=0.3, added_p50_ms=1.5, rss_idle_mib=120.0)
    )
    assert not verdict.passed
    failed = {
        c.name.split(" (")[0].split(" <=")[0].split(" >=")[0]
        for c in verdict.checks
        if c.status == "FAIL"
    }
    assert failed == {"CPU/req", "RPS", "added steady p50", "idle RSS"}


def test_evaluate_fails_invalid_runs_and_marks_missing_numbers() -> None:
    verdict = bl.evaluate(
        "sluicegate", _rows(errors=["saturation: non-2xx 5"], cpu_ms_per_req=None)
    )
    assert not verdict.passed
    assert any(c.name.startswith("valid run") and c.status == "FAIL" for c in verdict.checks)
    assert any(c.name.startswith("CPU/req") and c.status == "N/A" for c in verdict.checks)


def test_parse_named() -> None:
    assert bl.parse_named(["a=http://x:1/p?q=1", "b=2"], "--peer") == {
        "a": "http://x:1/p?q=1",
        "b": "2",
    }
    with pytest.raises(ValueError, match="--peer"):
        bl.parse_named(["novalue"], "--peer")


def test_evaluate_overhead_takes_the_median_of_interleaved_rounds() -> None:
    rows = {
        ("sluicegate", "json"): {"cpu_ms_per_req": 0.200},
        ("sluicegate+limits", "json"): {"cpu_ms_per_req": 0.300},  # a disturbed single run
        ("sluicegate", "stream"): {"cpu_ms_per_req": 0.200},
        ("sluicegate+limits", "stream"): {"cpu_ms_per_req": 0.240},
    }
    single = bl.evaluate_overhead("sluicegate+limits", "sluicegate", rows)
    assert [c.status for c in single.checks] == ["FAIL", "PASS"]
    rounds = {
        "json": [(0.200, 0.230), (0.210, 0.320), (0.190, 0.220)],  # ratios 1.15, 1.52, 1.16
        "stream": [(0.200, 0.260), (0.200, 0.270), (0.200, 0.250)],  # 1.30, 1.35, 1.25
    }
    verdict = bl.evaluate_overhead("sluicegate+limits", "sluicegate", rows, rounds=rounds)
    json_check, stream_check = verdict.checks
    assert json_check.status == "PASS"
    assert "median of 3 interleaved rounds 1.16x" in json_check.detail
    assert stream_check.status == "FAIL" and "1.30x" in stream_check.detail
    assert not verdict.passed

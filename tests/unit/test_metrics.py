"""The in-process metric series and their Prometheus exposition, merged across workers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from sluicegate.observe.metrics import OTHER, Counter, Gauge, Histogram, MetricSet
from sluicegate.observe.metrics_export import MetricsExporter


def samples(exporter: MetricsExporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = exporter.render().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_counter_keeps_at_most_max_series_and_counts_the_rest_as_other() -> None:
    counter = Counter("c_total", "doc", ("key_name",), max_series=3)
    for name in ["a", "b", "c", "d", "e", "a"]:
        counter.inc((name,))
    assert dict(counter.snapshot()) == {("a",): 2.0, ("b",): 1.0, (OTHER,): 2.0, ("c",): 1.0}


def test_histogram_buckets_are_cumulative_and_le_inclusive() -> None:
    metrics = MetricSet()
    histogram = Histogram("h_seconds", "doc", ("m",), (0.1, 1.0))
    metrics.add(histogram)
    for value in (0.05, 0.1, 0.5, 1.0, 3.0):
        histogram.observe(("x",), value)
    got = samples(MetricsExporter(metrics))
    assert got[("h_seconds_bucket", (("le", "0.1"), ("m", "x")))] == 2
    assert got[("h_seconds_bucket", (("le", "1.0"), ("m", "x")))] == 4
    assert got[("h_seconds_bucket", (("le", "+Inf"), ("m", "x")))] == 5
    assert got[("h_seconds_count", (("m", "x"),))] == 5
    assert abs(got[("h_seconds_sum", (("m", "x"),))] - 4.65) < 1e-9


def test_gauge_sources_are_read_at_scrape_time_and_a_broken_source_is_not_fatal() -> None:
    metrics = MetricSet()
    state = {"d1": 2.0}
    metrics.add(
        Gauge("g", "doc", ("deployment",), source=lambda: [((k,), v) for k, v in state.items()])
    )
    exporter = MetricsExporter(metrics)
    assert samples(exporter)[("g", (("deployment", "d1"),))] == 2
    state["d1"] = 0.0
    assert samples(exporter)[("g", (("deployment", "d1"),))] == 0

    def broken() -> list[tuple[tuple[str, ...], float]]:
        raise RuntimeError("boom")

    metrics.add(Gauge("g2", "doc", ("x",), source=broken))
    assert ("g", (("deployment", "d1"),)) in samples(exporter)


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_workers_snapshots_merge_counters_of_all_and_gauges_of_live_workers(
    tmp_path: Path,
) -> None:
    def metric_set() -> tuple[MetricSet, Counter, Histogram, Gauge, Gauge]:
        metrics = MetricSet()
        counter = Counter("requests_total", "doc", ("status",))
        histogram = Histogram("latency_seconds", "doc", (), (1.0,))
        in_flight = Gauge("in_flight", "doc", ())
        breaker = Gauge("breaker", "doc", ("d",), merge="max")
        for metric in (counter, histogram, in_flight, breaker):
            metrics.add(metric)
        return metrics, counter, histogram, in_flight, breaker

    own, counter, histogram, in_flight, breaker = metric_set()
    counter.inc(("200",), 3)
    histogram.observe((), 0.5)
    in_flight.add((), 2)
    breaker.set(("a",), 0)

    other, o_counter, o_histogram, o_in_flight, o_breaker = metric_set()
    o_counter.inc(("200",), 4)
    o_counter.inc(("500",), 1)
    o_histogram.observe((), 2.0)
    o_in_flight.add((), 5)
    o_breaker.set(("a",), 2)
    live = os.getppid()  # alive, and not this process
    (tmp_path / f"{live}.json").write_bytes(orjson.dumps(other.snapshot()))

    gone, g_counter, _, g_in_flight, _ = metric_set()
    g_counter.inc(("200",), 10)
    g_in_flight.add((), 7)
    (tmp_path / f"{_dead_pid()}.json").write_bytes(orjson.dumps(gone.snapshot()))
    (tmp_path / "not-a-pid.json").write_text("{}")
    (tmp_path / "99.json").write_text("{truncated")  # mid-write: skipped

    got = samples(MetricsExporter(own, str(tmp_path)))
    assert got[("requests_total", (("status", "200"),))] == 3 + 4 + 10  # the dead one's too
    assert got[("requests_total", (("status", "500"),))] == 1
    assert got[("latency_seconds_count", ())] == 2
    assert got[("latency_seconds_bucket", (("le", "1.0"),))] == 1
    assert got[("in_flight", ())] == 2 + 5  # the dead worker's gauge is dropped
    assert got[("breaker", (("d", "a"),))] == 2  # max across workers


async def test_a_worker_writes_its_snapshot_and_its_last_counts_at_close(tmp_path: Path) -> None:
    metrics = MetricSet()
    counter = Counter("requests_total", "doc", ())
    metrics.add(counter)
    exporter = MetricsExporter(metrics, str(tmp_path))
    await exporter.start()
    counter.inc(())
    await exporter.close()
    written = orjson.loads((tmp_path / f"{os.getpid()}.json").read_bytes())
    assert written["requests_total"] == [[[], 1.0]]

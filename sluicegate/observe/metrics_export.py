"""Prometheus exposition of the in-process series, merged across ``--workers`` processes.

Single process: a scrape renders the live series. Several workers (``SLUICEGATE_METRICS_DIR``
set by ``sluicegate serve`` before it starts them): each worker writes its snapshot to
``<dir>/<pid>.json`` once a second (atomically: write, then rename), and whichever worker
answers a scrape adds the other workers' latest snapshots to its own live series. Counters
and histograms of a worker that exited stay counted (they are totals); its gauges are
dropped (nothing is in flight in a dead process). So a scrape is at most a second behind
for the other workers' counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from sluicegate.observe.metrics import Counter, Gauge, Histogram, Labels, MetricSet

METRICS_DIR_ENV = "SLUICEGATE_METRICS_DIR"
SNAPSHOT_INTERVAL = 1.0
log = logging.getLogger("sluicegate.metrics")

Snapshot = dict[str, list[tuple[Labels, Any]]]


class MetricsExporter:
    def __init__(self, metrics: MetricSet, directory: str | None = None) -> None:
        self._metrics = metrics
        self._dir = Path(directory) if directory else None
        self._pid = os.getpid()
        self._task: asyncio.Task[None] | None = None
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)

    # -- worker snapshots ----------------------------------------------------------------

    async def start(self) -> None:
        if self._dir is not None:
            self._task = asyncio.create_task(self._write_forever())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._write_snapshot()  # the last counts of this worker, for later scrapes

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_INTERVAL)
            try:
                self._write_snapshot()
            except OSError as exc:
                log.warning("metrics snapshot not written: %s", exc.strerror)

    def _write_snapshot(self) -> None:
        assert self._dir is not None
        path = self._dir / f"{self._pid}.json"
        temporary = self._dir / f".{self._pid}.tmp"
        temporary.write_bytes(orjson.dumps(self._metrics.snapshot()))
        os.replace(temporary, path)

    def _other_workers(self) -> Iterator[tuple[bool, Snapshot]]:
        """(alive, snapshot) of every other worker that wrote one."""
        if self._dir is None:
            return
        for path in self._dir.glob("*.json"):
            try:
                pid = int(path.stem)
            except ValueError:
                continue
            if pid == self._pid:
                continue
            try:
                snapshot = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # replaced while read: the next scrape has it
            yield _alive(pid), snapshot

    # -- exposition --------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self._registry)

    def collect(self) -> Iterator[Metric]:
        """prometheus_client's collector protocol: the merged families."""
        own = self._metrics.snapshot()
        others = list(self._other_workers())
        for name, metric in self._metrics.metrics.items():
            series: dict[Labels, Any] = {}
            for labels, value in own.get(name, []):
                series[tuple(labels)] = value
            for alive, snapshot in others:
                if isinstance(metric, Gauge) and not alive:
                    continue
                for labels, value in snapshot.get(name, []):
                    _merge(metric, series, tuple(labels), value)
            yield _family(metric, series)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        pass
    return True


def _merge(
    metric: Counter | Histogram | Gauge, series: dict[Labels, Any], labels: Labels, value: Any
) -> None:
    current = series.get(labels)
    if current is None:
        series[labels] = list(value) if isinstance(value, list) else value
    elif isinstance(metric, Histogram):
        series[labels] = [a + b for a, b in zip(current, value, strict=True)]
    elif isinstance(metric, Gauge) and metric.merge == "max":
        series[labels] = max(current, value)
    elif isinstance(metric, Gauge) and metric.merge == "min":
        series[labels] = min(current, value)
    else:
        series[labels] = current + value


def _family(metric: Counter | Histogram | Gauge, series: dict[Labels, Any]) -> Metric:
    labelnames = list(metric.labelnames)
    if isinstance(metric, Counter):
        counter = CounterMetricFamily(metric.name, metric.documentation, labels=labelnames)
        for labels, value in series.items():
            counter.add_metric(list(labels), value)
        return counter
    if isinstance(metric, Gauge):
        gauge = GaugeMetricFamily(metric.name, metric.documentation, labels=labelnames)
        for labels, value in series.items():
            gauge.add_metric(list(labels), value)
        return gauge
    histogram = HistogramMetricFamily(metric.name, metric.documentation, labels=labelnames)
    bounds = [*(_bound(b) for b in metric.buckets), "+Inf"]
    for labels, values in series.items():
        cumulative, buckets = 0.0, []
        for bound, count in zip(bounds, values[:-1], strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        histogram.add_metric(list(labels), buckets, values[-1])
    return histogram


def _bound(value: float) -> str:
    return repr(float(value))

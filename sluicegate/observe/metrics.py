"""In-process metric series, cheap enough for the request path.

A request updates a dozen series. ``prometheus_client``'s own metric objects take a lock and
(in its multiprocess mode) write a memory-mapped file on every update, which would cost the
request path several per cent of CPU. Here an update is a dict lookup and an addition; the
series are turned into Prometheus exposition only when scraped (:mod:`.metrics_export`,
which uses ``prometheus_client`` for the format). With ``--workers N`` each worker writes a
snapshot of its series to a shared directory once a second and a scrape merges them.

Label cardinality is bounded twice: label values come from the configuration and the key
store (model aliases, deployments, partners, key names, statuses), never from request data;
and each metric keeps at most ``max_series`` label combinations, counting any further ones
under the value ``other``.
"""

from __future__ import annotations

import contextlib
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Literal

Labels = tuple[str, ...]
OTHER = "other"
GaugeMerge = Literal["sum", "max", "min"]

# Seconds. Upstream latencies (a long generation takes minutes) and the gateway's own
# overhead (well under a millisecond normally) need different ranges.
LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0,
)
OVERHEAD_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
)
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


Cell = list[float]  # [value]: a series' value, held in a list so it can be bumped in place


class _Metric:
    kind: str

    def __init__(
        self, name: str, documentation: str, labelnames: Labels, max_series: int
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self._max_series = max_series

    def _bounded(self, labels: Labels, size: int) -> Labels:
        """A new label combination: itself while there is room, else ``other`` everywhere
        (one overflow series, so totals stay right)."""
        if size < self._max_series:
            return labels
        return (OTHER,) * len(labels)


class _Cells(_Metric):
    """A metric whose series are single values (counters, gauges)."""

    def __init__(
        self, name: str, documentation: str, labelnames: Labels, max_series: int = 10_000
    ) -> None:
        super().__init__(name, documentation, labelnames, max_series)
        self.values: dict[Labels, Cell] = {}

    def cell(self, labels: Labels) -> Cell:
        """The series of ``labels`` (or the overflow series), created at 0. Callers on the
        request path may keep it and bump ``cell[0]`` directly."""
        cell = self.values.get(labels)
        if cell is None:
            labels = self._bounded(labels, len(self.values))
            cell = self.values.get(labels)
            if cell is None:
                cell = self.values[labels] = [0.0]
        return cell

    def snapshot(self) -> list[tuple[Labels, float]]:
        return [(labels, cell[0]) for labels, cell in self.values.items()]


class Counter(_Cells):
    kind = "counter"

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        cell = self.values.get(labels) or self.cell(labels)
        cell[0] += amount


class Histogram(_Metric):
    """Per label combination: counts per bucket (not cumulative), sum, count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Labels,
        buckets: tuple[float, ...],
        max_series: int = 10_000,
    ) -> None:
        super().__init__(name, documentation, labelnames, max_series)
        self.buckets = buckets
        # [count per bucket ..., count above the last bound, sum]
        self.values: dict[Labels, list[float]] = {}

    def series(self, labels: Labels) -> list[float]:
        """The series of ``labels`` (or the overflow series); callers may keep it and pass
        it to :meth:`observe_in`."""
        series = self.values.get(labels)
        if series is None:
            labels = self._bounded(labels, len(self.values))
            series = self.values.get(labels)
            if series is None:
                series = self.values[labels] = [0.0] * (len(self.buckets) + 2)
        return series

    def observe(self, labels: Labels, value: float) -> None:
        self.observe_in(self.values.get(labels) or self.series(labels), value)

    def observe_in(self, series: list[float], value: float) -> None:
        series[bisect_left(self.buckets, value)] += 1
        series[-1] += value

    def snapshot(self) -> list[tuple[Labels, list[float]]]:
        return [(labels, list(series)) for labels, series in self.values.items()]


class Gauge(_Cells):
    """A value set or moved by the gateway, or read from ``source`` at scrape time.
    ``merge`` says how the workers' values combine (in-flight counts add up; a breaker's
    state or a budget's remaining amount is the same fact seen by each worker)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Labels,
        merge: GaugeMerge = "sum",
        source: Callable[[], Iterable[tuple[Labels, float]]] | None = None,
        max_series: int = 10_000,
    ) -> None:
        super().__init__(name, documentation, labelnames, max_series)
        self.merge: GaugeMerge = merge
        self.source = source

    def add(self, labels: Labels, amount: float) -> None:
        cell = self.values.get(labels) or self.cell(labels)
        cell[0] += amount

    def set(self, labels: Labels, value: float) -> None:
        cell = self.values.get(labels) or self.cell(labels)
        cell[0] = value

    def snapshot(self) -> list[tuple[Labels, float]]:
        if self.source is not None:
            # A broken source must not break the scrape: its last values are shown.
            with contextlib.suppress(Exception):
                for labels, value in self.source():
                    self.set(labels, value)
        return super().snapshot()


Metric = Counter | Histogram | Gauge


class MetricSet:
    """The metrics of one process, by name."""

    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def add(self, metric: Metric) -> Metric:
        if metric.name in self.metrics:
            raise ValueError(f"metric {metric.name} defined twice")
        self.metrics[metric.name] = metric
        return metric

    def snapshot(self) -> dict[str, list[tuple[Labels, float | list[float]]]]:
        """Every series' current value, as plain data (what a worker writes to its file)."""
        return {
            name: list(metric.snapshot())
            for name, metric in self.metrics.items()
        }

"""The benchmark's output: the table and verdicts on the terminal, the JSON results file."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import benchlib as bl
from common import MODES, REPO

if TYPE_CHECKING:
    from run import Bench, Options


def render(bench: Bench, verdicts: list[bl.Verdict], opts: Options) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 170)
    table = Table(title=f"sluicegate benchmark: wrk -t{opts.threads} -c{opts.connections} "
                  f"-d{opts.duration}s; steady {opts.steady_rate:g} req/s x "
                  f"{opts.steady_seconds:g}s; SUT on cpu{opts.sut_cpu}, upstream+load on "
                  f"cpu{opts.loadgen_cpu}", title_justify="left")
    columns = [("target", "left"), ("mode", "left"), ("RPS", "right"), ("p50", "right"),
               ("p95", "right"), ("p99", "right"), ("CPU ms/req", "right"),
               ("steady p50", "right"), ("steady p99", "right"), ("+p50 vs direct", "right"),
               ("RSS idle", "right"), ("RSS after", "right"), ("busy load/SUT %", "right")]
    for name, justify in columns:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in bench.rows.values():
        bad = bool(row.get("errors"))
        busy = (f"{bl.fmt(row.get('loadgen_core_busy_pct'), '.0f')}/"
                f"{bl.fmt(row.get('sut_core_busy_pct'), '.0f')}")
        table.add_row(
            row["target"], row["mode"],
            "[bold red]INVALID[/]" if bad else bl.fmt(row.get("rps"), ",.0f"),
            bl.fmt(row.get("p50_ms")), bl.fmt(row.get("p95_ms")), bl.fmt(row.get("p99_ms")),
            bl.fmt(row.get("cpu_ms_per_req"), ".3f"),
            bl.fmt(row.get("steady_p50_ms"), ".3f"), bl.fmt(row.get("steady_p99_ms"), ".3f"),
            bl.fmt(row.get("added_p50_ms"), "+.3f"),
            bl.fmt(row.get("rss_idle_mib"), ".1f"), bl.fmt(row.get("rss_after_mib"), ".1f"),
            busy, style="red" if bad else None)
    console.print(table)
    console.print("latencies in ms (saturation: wrk; steady: paced client, full response); "
                  "RSS in MiB; CPU = utime+stime of the SUT process tree / requests")
    invalid = [row for row in bench.rows.values() if row.get("errors")]
    if invalid:
        console.print("\n[bold red]!!! INVALID RUNS: these numbers must not be read as "
                      "results !!![/]")
        for row in invalid:
            for error in row["errors"]:
                console.print(f"[red]  {row['target']} / {row['mode']}: {error}[/]")
    warnings = [(row, w) for row in bench.rows.values() for w in row.get("warnings", [])]
    for row, warning in warnings:
        console.print(f"[yellow]warning: {row['target']} / {row['mode']}: {warning}[/]")
    for note in bench.notes:
        console.print(f"[yellow]note: {note}[/]")
    ref = {mode: bench.rows.get(("reference", mode), {}) for mode in MODES}
    if verdicts and ref["json"] and not ref["json"].get("errors"):
        console.print(
            "\ncontext: the reference proxy itself adds "
            f"{bl.fmt(ref['json'].get('added_p50_ms'), '+.3f')} (json) / "
            f"{bl.fmt(ref['stream'].get('added_p50_ms'), '+.3f')} (stream) ms at steady p50 "
            f"and idles at {bl.fmt(ref['json'].get('rss_idle_mib'), '.1f')} MiB on this "
            "machine")
    for verdict in verdicts:
        missing = sum(c.status == "N/A" for c in verdict.checks)
        head = "[bold green]PASS[/]" if verdict.passed else "[bold red]FAIL[/]"
        if missing:
            head += f" [yellow]({missing} of {len(verdict.checks)} checks not measured)[/]"
        against = "" if "(vs " in verdict.target else " (vs reference proxy)"
        console.print(f"\nverdict for {verdict.target}{against}: {head}")
        for check in verdict.checks:
            colour = {"PASS": "green", "FAIL": "red"}.get(check.status, "yellow")
            console.print(f"  [{colour}]{check.status:4}[/]  {check.name:38} {check.detail}")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def git_describe() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "sluicegate"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def write_json(bench: Bench, verdicts: list[bl.Verdict], opts: Options, started: float,
               path: Path) -> None:
    data = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 1),
        "sluicegate_commit": git_describe(),
        "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "options": vars(opts),
        "rows": list(bench.rows.values()),
        "notes": bench.notes,
        # governed vs core CPU ms/req, per mode, one (core, governed) pair per round
        "overhead_rounds": bench.rounds,
        "verdicts": [{"target": v.target, "passed": v.passed,
                      "checks": [vars(c) for c in v.checks]} for v in verdicts],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(data), indent=2) + "\n")

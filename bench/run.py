"""Benchmark sluicegate against a minimal aiohttp proxy and the bare upstream.

    .venv/bin/python bench/run.py [--duration 10] [--connections 32] [--quick]

Starts bench/fast_upstream.py (pinned with wrk and the paced client to one core), then, one at
a time on the other core, the reference proxy (bench/reference_proxy.py) and sluicegate (temp
config, key made with ``sluicegate keys create``, one worker). For each target and mode (JSON,
streaming): wrk warm-up, a paced 20 req/s latency run, a wrk saturation run with CPU time of
the system under test read from /proc, and RSS. Prints a table and a verdict, writes
bench/results/latest.json. See bench/README.md.

Exit status: 0 all verdicts pass, 1 a verdict failed, 2 a run was invalid (errors, a target
did not start), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import benchlib as bl  # noqa: E402
import overhead  # noqa: E402
from common import (  # noqa: E402
    EXPECT,
    LOGS,
    LUA,
    MODEL,
    MODES,
    RESULTS,
    SLUICEGATE_MODES,
)
from procs import Processes, StartError, free_port, http_call, log_tail, wait_ready  # noqa: E402
from report import render, write_json  # noqa: E402


def request_body(mode: str) -> bytes:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 64,
                            "messages": [{"role": "user", "content": "Hello"}]}
    if mode == "stream":
        body["stream"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def smoke(target: Target, mode: str) -> str | None:
    """One request through the target; returns a problem description or None."""
    headers = {"x-api-key": target.key, "anthropic-version": "2023-06-01",
               "content-type": "application/json"}
    try:
        status, payload = http_call(target.url_for(mode), "POST", request_body(mode), headers)
    except OSError as exc:
        return f"smoke request failed: {exc}"
    compact = payload.replace(b'": "', b'":"')
    if status != 200 or EXPECT[mode] not in compact:
        return f"smoke request: HTTP {status}, body {payload[:300]!r}"
    return None


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    kind: str  # direct | reference | sluicegate | peer
    base_url: str
    key: str
    pid: int | None = None
    proc: subprocess.Popen[Any] | None = None

    @property
    def messages_url(self) -> str:
        return self.base_url.rstrip("/") + "/v1/messages"

    def url_for(self, mode: str) -> str:
        if mode == "translate":
            return self.base_url.rstrip("/") + "/v1/chat/completions"
        return self.messages_url

    @property
    def modes(self) -> tuple[str, ...]:
        return SLUICEGATE_MODES if self.kind == "sluicegate" else MODES


@dataclass
class Options:
    duration: int
    connections: int
    threads: int
    warmup: int
    steady_rate: float
    steady_seconds: float
    settle: float
    loadgen_cpu: int | None
    sut_cpu: int | None
    upstream_key: str
    sluicegate_bin: str
    log_level: str


class Bench:
    def __init__(self, opts: Options, procs: Processes) -> None:
        self.o = opts
        self.procs = procs
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.notes: list[str] = []
        self.rounds: overhead.Samples = {}  # governed vs core, interleaved (overhead.py)

    # ---- load generators

    def wrk(self, target: Target, mode: str, seconds: int, label: str) -> bl.WrkResult:
        argv = ["wrk", "-t", str(self.o.threads), "-c", str(self.o.connections),
                "-d", f"{seconds}s", "--timeout", "5s", "--latency", "-s", str(LUA),
                target.url_for(mode)]
        env = {**os.environ, "BENCH_KEY": target.key, "BENCH_BODY": request_body(mode).decode()}
        code, out, err = self.procs.run(f"wrk-{label}", argv, self.o.loadgen_cpu,
                                        timeout=seconds + 30, env=env)
        (LOGS / f"wrk-{target.name}-{mode}-{label}.txt").write_text(out + err)
        if code != 0:
            raise RuntimeError(f"wrk exited {code}: {err.strip()[:300]}")
        return bl.parse_wrk_output(out)

    def paced(self, target: Target, mode: str) -> dict[str, Any]:
        argv = [sys.executable, str(BENCH_DIR / "paced_client.py"),
                "--url", target.url_for(mode), "--expect", EXPECT[mode].decode(),
                "--key", target.key, "--model", MODEL,
                "--rate", str(self.o.steady_rate), "--duration", str(self.o.steady_seconds)]
        if mode == "stream":
            argv.append("--stream")
        code, out, err = self.procs.run("paced", argv, self.o.loadgen_cpu,
                                        timeout=self.o.steady_seconds * 3 + 30)
        if code != 0 or not out.strip():
            raise RuntimeError(f"paced client exited {code}: {err.strip()[-300:]}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    # ---- one target x mode

    def measure(self, target: Target, mode: str, rss_idle: float | None) -> dict[str, Any]:
        row: dict[str, Any] = {"target": target.name, "kind": target.kind, "mode": mode,
                               "errors": [], "warnings": [], "rss_idle_mib": rss_idle}
        self.rows[(target.name, mode)] = row
        print(f"  [{target.name} / {mode}] smoke, warm-up {self.o.warmup}s ...", flush=True)
        problem = smoke(target, mode)
        if problem:
            row["errors"].append(problem)
            return row
        warm = self.wrk(target, mode, self.o.warmup, "warmup")
        if warm.error_count:
            row["errors"].append(f"warm-up: {warm.error_summary()} of {warm.requests}")

        print(f"  [{target.name} / {mode}] steady {self.o.steady_rate:g} req/s for "
              f"{self.o.steady_seconds:g}s ...", flush=True)
        steady = self.paced(target, mode)
        row.update(steady_p50_ms=steady["p50_ms"], steady_p95_ms=steady["p95_ms"],
                   steady_p99_ms=steady["p99_ms"], steady_max_ms=steady["max_ms"],
                   steady_ttfb_p50_ms=steady["ttfb_p50_ms"], steady_ok=steady["ok"],
                   steady_errors=steady["errors"])
        if steady["errors"]:
            row["errors"].append(f"steady: {steady['errors']}/{steady['sent']} failed, e.g. "
                                 f"{steady['first_errors'][0]}")

        print(f"  [{target.name} / {mode}] saturation {self.o.duration}s, "
              f"{self.o.connections} connections ...", flush=True)
        cpu_before = bl.cpu_seconds(target.pid) if target.pid else None
        cores_before = bl.read_core_times()
        sat = self.wrk(target, mode, self.o.duration, "saturation")
        busy = bl.core_busy_percent(cores_before, bl.read_core_times())
        cpu_mid = bl.cpu_seconds(target.pid) if target.pid else None
        time.sleep(self.o.settle)  # let deferred per-request work (logging, accounting) land
        cpu_after = bl.cpu_seconds(target.pid) if target.pid else None
        row.update(rps=sat.rps, requests=sat.requests, p50_ms=sat.p50_ms, p75_ms=sat.p75_ms,
                   p90_ms=sat.p90_ms, p95_ms=sat.p95_ms, p99_ms=sat.p99_ms,
                   max_ms=sat.max_ms, wrk_errors=sat.error_count)
        if sat.error_count:
            row["errors"].append(f"saturation: {sat.error_summary()} "
                                 f"of {sat.requests} responses")
        if cpu_before is not None and cpu_after is not None and sat.requests:
            row["cpu_ms_per_req"] = (cpu_after - cpu_before) * 1000.0 / sat.requests
            row["cpu_seconds"] = cpu_after - cpu_before
        lg = f"cpu{self.o.loadgen_cpu}" if self.o.loadgen_cpu is not None else None
        sut = f"cpu{self.o.sut_cpu}" if self.o.sut_cpu is not None else None
        row["loadgen_core_busy_pct"] = busy.get(lg) if lg else None
        row["sut_core_busy_pct"] = busy.get(sut) if sut else None
        if (target.kind in ("reference", "sluicegate") and lg and sut and busy.get(lg, 0) > 95
                and busy.get(sut, 100) < 90):
            row["warnings"].append(
                f"load-generator core {busy[lg]:.0f}% busy while the SUT core was "
                f"{busy[sut]:.0f}%: the SUT may not have been saturated")
        if (target.kind in ("reference", "sluicegate") and sut and cpu_before is not None
                and cpu_mid is not None and sat.duration_s > 0):
            own = 100.0 * (cpu_mid - cpu_before) / sat.duration_s
            foreign = busy.get(sut, 0.0) - own
            row["sut_core_other_pct"] = foreign
            if foreign > 15:
                row["warnings"].append(
                    f"{foreign:.0f}% of {sut} went to something other than {target.name} "
                    "(other processes or softirq): results disturbed, re-run on a quiet machine")
        if target.pid:
            row["rss_after_mib"] = bl.rss_mib(target.pid)
        if target.proc is not None and target.proc.poll() is not None:
            row["errors"].append(f"{target.name} exited with code {target.proc.returncode} "
                                 "during the run")
        return row

    def run_target(self, target: Target) -> None:
        rss_idle = bl.rss_mib(target.pid) if target.pid else None
        for mode in target.modes:
            if target.proc is not None and target.proc.poll() is not None:
                self.rows[(target.name, mode)] = {
                    "target": target.name, "kind": target.kind, "mode": mode,
                    "warnings": [], "rss_idle_mib": rss_idle,
                    "errors": [f"{target.name} is not running (exit {target.proc.returncode})"]}
                continue
            try:
                self.measure(target, mode, rss_idle)
            except (RuntimeError, ValueError, OSError, json.JSONDecodeError) as exc:
                row = self.rows.setdefault((target.name, mode), {
                    "target": target.name, "kind": target.kind, "mode": mode,
                    "warnings": [], "errors": [], "rss_idle_mib": rss_idle})
                row["errors"].append(f"measurement failed: {exc}")

    def failed_target(self, name: str, kind: str, reason: str) -> None:
        for mode in MODES:
            self.rows[(name, mode)] = {"target": name, "kind": kind, "mode": mode,
                                       "warnings": [], "errors": [reason]}

    def finish(self) -> None:
        for (name, mode), row in self.rows.items():
            # A translated request is compared with a direct JSON call: same work upstream.
            baseline = "json" if mode == "translate" else mode
            direct = self.rows.get(("direct", baseline), {}).get("steady_p50_ms")
            mine = row.get("steady_p50_ms")
            if name != "direct" and isinstance(direct, float) and isinstance(mine, float):
                row["added_p50_ms"] = mine - direct


# --------------------------------------------------------------------------- starting targets


def start_upstream(procs: Processes, opts: Options, port: int) -> Target:
    proc = procs.spawn("upstream", [sys.executable, str(BENCH_DIR / "fast_upstream.py"),
                                    "--port", str(port), "--key", opts.upstream_key],
                       opts.loadgen_cpu)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/", proc, "upstream", timeout=15)
    return Target("direct", "direct", base, opts.upstream_key, proc.pid, proc)


def start_reference(procs: Processes, opts: Options, upstream: str) -> Target:
    port = free_port()
    key = "sk-bench-ref-" + secrets.token_hex(12)
    proc = procs.spawn("reference", [
        sys.executable, str(BENCH_DIR / "reference_proxy.py"), "--port", str(port),
        "--upstream", upstream, "--client-key", key, "--upstream-key", opts.upstream_key],
        opts.sut_cpu)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/health", proc, "reference", timeout=20)
    return Target("reference", "reference", base, key, proc.pid, proc)


# Limits that are checked on every request but never refuse: the governed row measures what
# enforcement costs (key + partner + deployment + global windows, a concurrency lease, two
# budget holds, cost, a ledger row), not what refusing costs.
GOVERNANCE_CONFIG = (
    "limits:\n"
    "  global: {rpm: 1000000000, tpm: 1000000000000, max_parallel: 100000}\n"
    "prices:\n"
    f"  {MODEL}: {{input: 3, output: 15}}\n"
)
GOVERNED_MODEL_LIMITS = "    limits: {rpm: 1000000000, max_parallel: 100000}\n"
HUGE = "1000000000"


def start_sluicegate(procs: Processes, opts: Options, upstream: str, workdir: Path,
                     governed: bool = False) -> Target:
    """sluicegate on its own core; ``governed``: with limits, budgets and the ledger on
    (the plain row runs without the ledger, as "the gateway core")."""
    name = "sluicegate+limits" if governed else "sluicegate"
    workdir = workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "sluicegate.yaml"
    config.write_text(
        f"database_url: sqlite:///{workdir / 'sluicegate.db'}\n"
        f"server: {{log_level: {opts.log_level}}}\n"
        + (GOVERNANCE_CONFIG if governed else "ledger: {enabled: false}\n")
        + "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    provider: anthropic\n"
        f"    api_base: {upstream}\n"
        "    api_key: os.environ/BENCH_UPSTREAM_KEY\n"
        + (GOVERNED_MODEL_LIMITS if governed else ""))
    env = {**os.environ, "BENCH_UPSTREAM_KEY": opts.upstream_key}
    key_args = ["--name", "bench"]
    if governed:
        cli = [opts.sluicegate_bin, "partners", "create", "bench-partner", "--config",
               str(config), "--rpm", HUGE, "--tpm", HUGE, "--budget", HUGE]
        code, out, err = procs.run("sluicegate-partner", cli, opts.loadgen_cpu, timeout=60,
                                   env=env)
        if code != 0:
            raise StartError(f"`sluicegate partners create` exited {code}: {err.strip()[-300:]}")
        key_args += ["--partner", "bench-partner", "--rpm", HUGE, "--tpm", HUGE,
                     "--max-parallel", "100000", "--budget", HUGE, "--budget-period", "daily"]
    code, out, err = procs.run("sluicegate-keys", [
        opts.sluicegate_bin, "keys", "create", "--config", str(config), *key_args],
        opts.loadgen_cpu, timeout=60, env=env)
    key = out.strip()
    if code != 0 or not key or "\n" in key:
        raise StartError(f"`sluicegate keys create` exited {code}; stdout {out[:200]!r}; "
                         f"stderr {err.strip()[-500:]}")
    port = free_port()
    proc = procs.spawn(name, [
        opts.sluicegate_bin, "serve", "--config", str(config), "--port", str(port),
        "--workers", "1"], opts.sut_cpu, env=env)
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/health/readiness", proc, name, timeout=45)
    return Target(name, "governed" if governed else "sluicegate", base, key, proc.pid, proc)


def run_rounds(bench: Bench, procs: Processes, opts: Options, upstream: str, workdir: Path,
               rounds: int) -> None:
    """The governance CPU verdict's figures: core and governed side by side (overhead.py)."""
    print(f"starting sluicegate and sluicegate+limits for {rounds} interleaved rounds ...",
          flush=True)
    started: list[Target] = []
    try:
        core = start_sluicegate(procs, opts, upstream, workdir)
        started.append(core)
        governed = start_sluicegate(procs, opts, upstream, workdir, governed=True)
        started.append(governed)
        bench.rounds = overhead.interleaved(bench, core, governed, rounds)
    except (StartError, RuntimeError, OSError) as exc:
        bench.notes.append(f"overhead rounds not run: {str(exc).splitlines()[0]}")
    finally:
        for target in started:
            assert target.proc is not None
            procs.stop_named(target.proc)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark sluicegate vs a minimal aiohttp proxy vs the bare upstream.",
        epilog="See bench/README.md for what is measured and how to read the table.")
    parser.add_argument("--duration", type=int, help="saturation seconds per run "
                        "(default 10, --quick 3)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (all on one core)")
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute)")
    parser.add_argument("--steady-rate", type=float, default=20.0, help="paced req/s")
    parser.add_argument("--steady-seconds", type=float,
                        help="paced run seconds (default 10, --quick 3)")
    parser.add_argument("--warmup", type=int, help="wrk warm-up seconds (default 2, --quick 1)")
    parser.add_argument("--only", action="append",
                        choices=["direct", "reference", "sluicegate", "governed"],
                        help="limit to these built-in targets (repeatable; direct always "
                        "runs; governed = sluicegate with limits, budgets and ledger on)")
    parser.add_argument("--overhead-rounds", type=int,
                        help="interleaved core/governed rounds behind the governance CPU "
                        "verdict (default 3, --quick 1; 0: compare the table's single runs)")
    parser.add_argument("--sluicegate-bin", help="sluicegate executable (default: next to "
                        "this Python, else on PATH)")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--log-level", default="warning", choices=["warning", "info"],
                        help="sluicegate's log level: warning (default; the reference proxy "
                        "logs nothing either) or info (one JSON line per request, as in "
                        "production)")
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    # ---- Optional hook: peers (other gateways you already run). Nothing is installed here.
    peers = parser.add_argument_group(
        "peers (optional hook)",
        "Compare other gateways you already run. Configure each to route model "
        f"'{MODEL}' to http://127.0.0.1:UPSTREAM_PORT/v1/messages with x-api-key UPSTREAM_KEY "
        "(use --upstream-port/--upstream-key to fix both), pin it with `taskset -c 1`, "
        "and pass --peer NAME=BASE_URL --peer-key NAME=KEY [--peer-pid NAME=PID].")
    peers.add_argument("--peer", action="append", default=[], metavar="NAME=URL",
                       help="base URL of a running gateway (requests go to URL/v1/messages)")
    peers.add_argument("--peer-key", action="append", default=[], metavar="NAME=KEY",
                       help="client key for that peer (or env BENCH_PEER_KEY_<NAME>)")
    peers.add_argument("--peer-pid", action="append", default=[], metavar="NAME=PID",
                       help="its PID, to measure CPU/req and RSS (optional)")
    peers.add_argument("--upstream-port", type=int, help="fixed port for the fake upstream")
    peers.add_argument("--upstream-key", default=os.environ.get("BENCH_UPSTREAM_KEY",
                                                                "sk-bench-upstream-key"),
                       help="key the fake upstream expects (env BENCH_UPSTREAM_KEY)")
    return parser.parse_args(argv)


def choose_cpus(no_pin: bool) -> tuple[int | None, int | None, str | None]:
    if no_pin or shutil.which("taskset") is None:
        return None, None, "not pinned (--no-pin or no taskset): numbers are noisier"
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None, "fewer than 2 usable cores: not pinned, SUT shares with load"
    return allowed[0], allowed[1], None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        peer_urls = bl.parse_named(args.peer, "--peer")
        peer_keys = bl.parse_named(args.peer_key, "--peer-key")
        peer_pids = {k: int(v) for k, v in bl.parse_named(args.peer_pid, "--peer-pid").items()}
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if shutil.which("wrk") is None:
        print("error: wrk not found (apt-get install wrk)", file=sys.stderr)
        return 2
    sg_bin = args.sluicegate_bin or str(Path(sys.executable).parent / "sluicegate")
    if not Path(sg_bin).exists():
        sg_bin = shutil.which("sluicegate") or sg_bin
    loadgen_cpu, sut_cpu, pin_note = choose_cpus(args.no_pin)
    opts = Options(
        duration=args.duration or (3 if args.quick else 10),
        connections=args.connections, threads=args.threads,
        warmup=args.warmup or (1 if args.quick else 2),
        steady_rate=args.steady_rate,
        steady_seconds=args.steady_seconds or (3.0 if args.quick else 10.0),
        settle=0.5 if args.quick else 1.0,
        loadgen_cpu=loadgen_cpu, sut_cpu=sut_cpu,
        upstream_key=args.upstream_key, sluicegate_bin=sg_bin, log_level=args.log_level)
    only = set(args.only or ["direct", "reference", "sluicegate", "governed"])

    LOGS.mkdir(parents=True, exist_ok=True)
    if loadgen_cpu is not None:  # keep this orchestrator off the SUT core too
        os.sched_setaffinity(0, {loadgen_cpu})
    started = time.monotonic()
    procs = Processes()
    bench = Bench(opts, procs)
    if pin_note:
        bench.notes.append(pin_note)
    workdir = Path(tempfile.mkdtemp(prefix="sgbench-"))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        print(f"\n{signal.Signals(signum).name}: stopping processes ...", file=sys.stderr)
        raise SystemExit(128 + signum)

    # Explicit, so Ctrl-C works even when started from a shell that ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    interrupted = False
    try:
        print(f"logs: {LOGS}", flush=True)
        upstream = start_upstream(procs, opts, args.upstream_port or free_port())
        print(f"upstream ready on {upstream.base_url} (cpu{loadgen_cpu})", flush=True)
        bench.run_target(upstream)

        starters = [("reference", lambda: start_reference(procs, opts, upstream.base_url)),
                    ("sluicegate", lambda: start_sluicegate(procs, opts, upstream.base_url,
                                                            workdir)),
                    ("governed", lambda: start_sluicegate(procs, opts, upstream.base_url,
                                                          workdir, governed=True))]
        for name, starter in starters:
            if name not in only:
                continue
            print(f"starting {name} on cpu{sut_cpu} ...", flush=True)
            try:
                target = starter()
            except (StartError, RuntimeError, OSError) as exc:
                print(f"!!! {name} did not start: {exc}", flush=True)
                bench.failed_target(name, name, f"did not start: {str(exc).splitlines()[0]}")
                continue
            time.sleep(0.5)  # let start-up work finish before the idle RSS reading
            bench.run_target(target)
            assert target.proc is not None
            procs.stop_named(target.proc)
            if name == "sluicegate":
                tail = log_tail("sluicegate", 8)
                lines = (LOGS / "sluicegate.log").read_text(errors="replace").splitlines()
                if len(lines) > 1:
                    bench.notes.append(f"sluicegate wrote {len(lines)} log lines at level "
                                       f"warning (see {LOGS / 'sluicegate.log'}):\n{tail}")

        rounds = args.overhead_rounds if args.overhead_rounds is not None else (
            1 if args.quick else 3)
        if rounds > 0 and {"sluicegate", "governed"} <= only:
            run_rounds(bench, procs, opts, upstream.base_url, workdir / "rounds", rounds)

        for name, url in peer_urls.items():  # ---- optional hook: peers
            key = peer_keys.get(name) or os.environ.get(f"BENCH_PEER_KEY_{name.upper()}", "")
            if not key:
                bench.failed_target(name, "peer", "no key: pass --peer-key NAME=KEY")
                continue
            pid = peer_pids.get(name)
            print(f"peer {name} at {url} (pid {pid or 'unknown'}; not pinned by us)", flush=True)
            bench.run_target(Target(name, "peer", url, key, pid, None))
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping processes ...", file=sys.stderr)
    except StartError as exc:
        print(f"!!! cannot run the benchmark: {exc}", file=sys.stderr)
        bench.notes.append(f"aborted: {str(exc).splitlines()[0]}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if interrupted:
        return 130

    bench.finish()
    evaluated = ["sluicegate", *peer_urls]
    verdicts = [bl.evaluate(name, bench.rows) for name in evaluated
                if any(key[0] == name for key in bench.rows)]
    if any(key[0] == "sluicegate+limits" for key in bench.rows):
        verdicts.append(bl.evaluate_overhead("sluicegate+limits", "sluicegate", bench.rows,
                                             rounds=bench.rounds))
    render(bench, verdicts, opts)
    write_json(bench, verdicts, opts, started, args.output)
    print(f"\nresults: {args.output}   logs: {LOGS}   "
          f"wall time {time.monotonic() - started:.0f}s")
    if any(row.get("errors") for row in bench.rows.values()) or not bench.rows:
        return 2
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())

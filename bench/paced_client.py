"""Fixed-rate latency probe for bench/run.py (wrk cannot hold a fixed rate).

Sends one request every ``1/rate`` seconds, sequentially, on a single keep-alive connection,
reads each response to the end, checks it (2xx and a complete Message / SSE stream) and prints
one JSON object with latency percentiles (ms) on stdout.

    python bench/paced_client.py --url http://127.0.0.1:18001/v1/messages --key KEY --stream
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import percentile


async def probe(args: argparse.Namespace) -> dict[str, object]:
    body = json.dumps({
        "model": args.model, "max_tokens": 64, "stream": args.stream,
        "messages": [{"role": "user", "content": "Hello"}],
    }).encode()
    headers = {"x-api-key": args.key, "anthropic-version": "2023-06-01",
               "content-type": "application/json"}
    expect = args.expect.encode() if args.expect else (
        b"event: message_stop" if args.stream else b'"type":"message"')
    latencies: list[float] = []
    ttfb: list[float] = []
    errors: list[str] = []
    interval = 1.0 / args.rate
    total = max(1, int(args.duration * args.rate))
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:

        async def one() -> tuple[float, float, str | None]:
            start = time.perf_counter()
            async with session.post(args.url, data=body, headers=headers) as resp:
                first = time.perf_counter()
                payload = await resp.read()
            end = time.perf_counter()
            problem = None
            if resp.status // 100 != 2:
                problem = f"HTTP {resp.status}: {payload[:200]!r}"
            elif expect not in payload.replace(b'": "', b'":"'):
                problem = f"incomplete/unexpected body: {payload[:200]!r}"
            return (end - start) * 1000.0, (first - start) * 1000.0, problem

        for _ in range(args.warmup):  # open the connection, warm caches; not measured
            await one()
        next_at = time.perf_counter()
        for _ in range(total):
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                latency, first, problem = await one()
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            else:
                if problem:
                    errors.append(problem)
                else:
                    latencies.append(latency)
                    ttfb.append(first)
            next_at = max(next_at + interval, time.perf_counter())  # no catch-up bursts
    return {
        "sent": total,
        "ok": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "p50_ms": percentile(latencies, 50),
        "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
        "ttfb_p50_ms": percentile(ttfb, 50),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="full URL of the /v1/messages endpoint")
    parser.add_argument("--key", required=True, help="x-api-key value")
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--expect", help="bytes every complete answer contains "
                        "(default: message_stop / a Message, by --stream)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured requests first")
    result = uvloop.run(probe(parser.parse_args()))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

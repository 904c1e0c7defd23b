-- wrk script for bench/run.py: POST an Anthropic Messages request, print parseable stats.
--
-- Environment:
--   BENCH_KEY   value of the x-api-key header
--   BENCH_BODY  the JSON request body (include "stream": true for SSE)
--
-- done() prints one line that bench/benchlib.py parses (latencies in microseconds):
--   BENCH_RESULT requests=N duration_us=N bytes=N connect=N read=N write=N status=N
--                timeout=N p50=N p75=N p90=N p95=N p99=N max=N mean=N
-- "status" is wrk's count of non-2xx/3xx responses.

wrk.method = "POST"
wrk.headers["x-api-key"] = os.getenv("BENCH_KEY") or ""
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["content-type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY") or
  '{"model":"bench-model","max_tokens":64,"messages":[{"role":"user","content":"Hello"}]}'

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d"
      .. " timeout=%d p50=%d p75=%d p90=%d p95=%d p99=%d max=%d mean=%.1f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(95), latency:percentile(99), latency.max, latency.mean))
end

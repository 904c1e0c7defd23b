"""Constants shared by the benchmark's modules."""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
MODEL = "bench-model"
MODES = ("json", "stream")
# sluicegate also runs "translate": an OpenAI Chat Completions client (same minimal body) on
# /v1/chat/completions, served by the same Anthropic upstream, so the row measures the
# translation path; it is compared with the reference proxy's pass-through JSON cost.
SLUICEGATE_MODES = (*MODES, "translate")
EXPECT = {"json": b'"type":"message"', "stream": b"event: message_stop",
          "translate": b'"object":"chat.completion"'}
LUA = BENCH_DIR / "wrk_messages.lua"
RESULTS = BENCH_DIR / "results"
LOGS = RESULTS / "logs"

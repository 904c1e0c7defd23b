"""Graceful shutdown through the real gateway (``sluicegate serve`` subprocess, SQLite ledger)
and a private fake upstream. On SIGTERM:

* in-flight streams finish intact, the ledger has every row, the process exits 0;
* readiness answers 503 at once, even on an open keep-alive connection; liveness stays 200;
  new connections are refused;
* streams still running at the drain deadline (``server.shutdown_grace``) end with an error
  event in their surface's format, never a silent cut, and are still ledgered.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway, start_gateway
from tests.integration.test_governance import (
    anthropic_entry,
    ledger_rows,
    openai_entry,
    private_upstream,
)

MODEL = "claude-sonnet-4-6"
OPENAI_MODEL = "gpt-4o-mini"
TEXT = "drain me gently " * 15  # 240 characters: 20 text deltas, 26 events in all
PACED = 0.1  # between events: a stream lasts about 2.5 s
SHUTTING_DOWN = "The gateway is shutting down; retry the request."
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    upstream = private_upstream()
    yield upstream
    upstream.stop_thread()


def start(tmp_path: Path, fake: FakeUpstream, **server: object) -> Gateway:
    return start_gateway(
        tmp_path,
        fake,
        extra_config={
            "server": {"key_sync_interval": 0.5, "log_level": "info", **server},
            "ledger": {"flush_interval": 5},  # longer than the tests: only the final flush
        },
        model_list=[anthropic_entry(MODEL, fake.url), openai_entry(OPENAI_MODEL, fake.url)],
    )


def address(gw: Gateway) -> tuple[str, int]:
    host, port = gw.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


@dataclass
class Streamed:
    request_id: str
    events: list[str]
    text: str
    ended_at: float


class Started:
    """Counts streams that received their first event; ``all`` is set at ``expected``."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.all = asyncio.Event()

    def one(self) -> None:
        self.count += 1
        if self.count == self.expected:
            self.all.set()


async def sdk_stream(client: anthropic.AsyncAnthropic, started: Started) -> Streamed:
    events: list[str] = []
    async with client.messages.stream(
        model=MODEL, max_tokens=1000, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        async for event in stream:
            if not events:
                started.one()
            events.append(event.type)
        message = await stream.get_final_message()
        text = "".join(b.text for b in message.content if b.type == "text")
        return Streamed(stream.request_id or "", events, text, time.monotonic())


async def sigterm_when_started(gw: Gateway, started: Started) -> float:
    await asyncio.wait_for(started.all.wait(), 15)
    gw.process.send_signal(signal.SIGTERM)
    return time.monotonic()


async def exit_code(gw: Gateway, within: float) -> int:
    return await asyncio.to_thread(gw.process.wait, within)


# -- a. in-flight streams finish -----------------------------------------------------------


async def test_in_flight_streams_finish_across_sigterm(tmp_path: Path, fake: FakeUpstream) -> None:
    gw = start(tmp_path, fake)  # shutdown_grace: the default 60 s
    try:
        key = gw.create_key("drain")
        count = 100
        fake.script(*[Behaviour(text=TEXT, chunk_delay=PACED)] * count)
        client = anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0)
        started = Started(count)
        streams = [asyncio.create_task(sdk_stream(client, started)) for _ in range(count)]
        terminated = await sigterm_when_started(gw, started)
        results = await asyncio.wait_for(asyncio.gather(*streams), 20)
        code = await exit_code(gw, 60)
        exit_seconds = time.monotonic() - terminated

        for result in results:
            assert result.events[-1] == "message_stop", result.events[-3:]
            assert result.text == TEXT
            assert result.ended_at > terminated  # it was in flight at SIGTERM
        assert code == 0, gw.log_text()[-2000:]
        # Out once the streams ended, well within the grace: it did not wait for the deadline.
        assert exit_seconds < 10
        rows = ledger_rows(gw)
        assert sorted(r["request_id"] for r in rows) == sorted(r.request_id for r in results)
        assert all(r["status"] == 200 and r["error_type"] is None for r in rows)
        assert "Application shutdown complete" in gw.log_text()
    finally:
        if gw.process.poll() is None:
            gw.stop()


# -- b. out of rotation at once, no new connections ----------------------------------------


def get_on(sock: socket.socket, path: str) -> tuple[int, dict[str, Any]] | None:
    """GET ``path`` on an open keep-alive connection; None when the server closed it."""
    try:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gateway\r\n\r\n".encode())
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())
    except (http.client.RemoteDisconnected, ConnectionError):
        return None


def refused_after(host: str, port: int, limit: float) -> float | None:
    """Seconds until a new connection is refused (None: still accepted after ``limit``)."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        try:
            with socket.create_connection((host, port), timeout=1):
                pass
        except ConnectionRefusedError:
            return time.monotonic() - began
        time.sleep(0.02)
    return None


async def test_readiness_fails_at_once_and_new_connections_are_refused(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    gw = start(tmp_path, fake)
    host, port = address(gw)
    try:
        key = gw.create_key("drain")
        fake.script(*[Behaviour(text=TEXT, chunk_delay=PACED)] * 5)
        probe = socket.create_connection((host, port), timeout=5)
        alive = socket.create_connection((host, port), timeout=5)
        ready = get_on(probe, "/health/readiness")
        assert ready is not None and ready[0] == 200, ready
        assert (get_on(alive, "/health/liveness") or (0,))[0] == 200
        client = anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0)
        started = Started(5)
        streams = [asyncio.create_task(sdk_stream(client, started)) for _ in range(5)]
        await sigterm_when_started(gw, started)

        # Before uvicorn's next tick closes idle connections, on those already open.
        readiness, liveness = await asyncio.to_thread(
            lambda: (get_on(probe, "/health/readiness"), get_on(alive, "/health/liveness"))
        )
        refused = await asyncio.to_thread(refused_after, host, port, 2.0)
        in_flight = sum(not s.done() for s in streams)
        results = await asyncio.wait_for(asyncio.gather(*streams), 20)
        code = await exit_code(gw, 60)
        probe.close()
        alive.close()

        print(
            f"\nafter SIGTERM: readiness {readiness}, liveness {liveness}, new connections "
            f"refused after {refused} s with {in_flight} streams in flight"
        )
        if readiness is not None:  # not closed yet: then it must say the gateway drains
            assert readiness[0] == 503, readiness
            assert readiness[1]["status"] == "not ready"
            assert readiness[1]["checks"]["server"] == "draining"
        assert liveness is None or liveness[0] == 200, liveness
        assert refused is not None and refused < 1.0
        assert in_flight == 5  # refused while every stream was still being served
        assert all(r.events[-1] == "message_stop" and r.text == TEXT for r in results)
        assert code == 0
    finally:
        if gw.process.poll() is None:
            gw.stop()


# -- c. the drain deadline ---------------------------------------------------------------


Raw = tuple[str, bytes, float]  # request id, body, when it ended


async def raw_stream(
    session: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    started: Started,
) -> Raw:
    async with session.post(url, json=body, headers=headers) as response:
        assert response.status == 200, await response.text()
        first = await response.content.readany()
        started.one()
        rest = await response.read()  # a clean end of the body, or aiohttp raises
        return response.headers["request-id"], first + rest, time.monotonic()


def sse_payloads(raw: bytes) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) per SSE event, ``[DONE]`` left out."""
    out: list[tuple[str | None, Any]] = []
    for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        name: str | None = None
        data = b""
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                data += line[5:].strip()
        if data and data != b"[DONE]":
            out.append((name, json.loads(data)))
    return out


async def sdk_stream_error(
    client: anthropic.AsyncAnthropic, started: Started
) -> tuple[str, anthropic.APIStatusError, float]:
    request_id = ""
    with pytest.raises(anthropic.APIStatusError) as caught:
        async with client.messages.stream(
            model=MODEL, max_tokens=1000, messages=[{"role": "user", "content": "x"}]
        ) as stream:
            request_id = stream.request_id or ""
            first = True
            async for _ in stream:
                if first:
                    started.one()
                    first = False
    return request_id, caught.value, time.monotonic()


async def test_streams_still_running_at_the_deadline_end_with_an_error_event(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    gw = start(tmp_path, fake, shutdown_grace=1)
    try:
        key = gw.create_key("drain")
        # A few events, then the upstream goes silent for far longer than the grace.
        fake.script(*[Behaviour(text=TEXT, stall_after_events=4, stall_seconds=30)] * 5)
        anthropic_headers = {**ANTHROPIC_HEADERS, "x-api-key": key}
        openai_headers = {"authorization": f"Bearer {key}"}
        messages = [{"role": "user", "content": "x"}]

        def body(model: str) -> dict[str, Any]:
            return {"model": model, "max_tokens": 1000, "stream": True, "messages": messages}

        client = anthropic.AsyncAnthropic(base_url=gw.url, api_key=key, max_retries=0)
        started = Started(5)
        async with aiohttp.ClientSession() as session:

            def post(path: str, headers: dict[str, str], model: str) -> asyncio.Task[Raw]:
                return asyncio.create_task(
                    raw_stream(session, gw.url + path, headers, body(model), started)
                )

            tasks = {
                "anthropic": post("/v1/messages", anthropic_headers, MODEL),
                "anthropic->openai": post("/v1/messages", anthropic_headers, OPENAI_MODEL),
                "openai": post("/v1/chat/completions", openai_headers, OPENAI_MODEL),
                "openai->anthropic": post("/v1/chat/completions", openai_headers, MODEL),
            }
            sdk = asyncio.create_task(sdk_stream_error(client, started))
            terminated = await sigterm_when_started(gw, started)
            answers = {name: await task for name, task in tasks.items()}
            sdk_id, sdk_error, sdk_ended = await sdk
        code = await exit_code(gw, 20)
        exit_seconds = time.monotonic() - terminated

        shutdown = {"type": "overloaded_error", "message": SHUTTING_DOWN}
        for name in ("anthropic", "anthropic->openai"):
            events = sse_payloads(answers[name][1])
            assert events[0][0] == "message_start", (name, events[:2])
            assert events[-1] == ("error", {"type": "error", "error": shutdown}), (name, events)
        # OpenAI surface: the error chunk each path already uses for a failure mid-stream.
        chunks = sse_payloads(answers["openai"][1])
        assert chunks[0][1]["choices"], chunks[:1]
        assert chunks[-1][1] == {"error": {**shutdown, "param": None, "code": None}}, chunks
        chunks = sse_payloads(answers["openai->anthropic"][1])
        assert chunks[0][1]["choices"], chunks[:1]
        expected = {"message": SHUTTING_DOWN, "type": "server_error", "code": "overloaded"}
        assert chunks[-1][1] == {"error": {**expected, "param": None}}, chunks
        assert sdk_error.body == {"type": "error", "error": shutdown}
        # Cut at the deadline (1 s), not before and not long after.
        for _, _, ended in [*answers.values(), (sdk_id, b"", sdk_ended)]:
            assert 0.9 < ended - terminated < 4, ended - terminated
        assert code == 0, gw.log_text()[-2000:]
        assert exit_seconds < 6
        rows = {r["request_id"]: r for r in ledger_rows(gw)}
        ids = [sdk_id, *(a[0] for a in answers.values())]
        assert sorted(rows) == sorted(ids)
        assert all(r["error_type"] == "overloaded_error" for r in rows.values()), rows
    finally:
        if gw.process.poll() is None:
            gw.stop()


# -- d. with --workers, each worker drains the same way ------------------------------------


def worker_pids(supervisor: int) -> list[int]:
    """The uvicorn workers (multiprocessing spawn children) of ``supervisor``."""
    pids: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == supervisor and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


async def test_each_worker_turns_unready_at_its_signal(tmp_path: Path, fake: FakeUpstream) -> None:
    gw = start(tmp_path, fake, workers=2)
    host, port = address(gw)
    try:
        probes = [socket.create_connection((host, port), timeout=5) for _ in range(6)]
        assert all((get_on(s, "/health/readiness") or (0,))[0] == 200 for s in probes)
        workers = worker_pids(gw.process.pid)
        assert len(workers) == 2, workers
        # The supervisor relays SIGTERM to its workers at its next poll (up to 0.5 s later),
        # and each worker drains from then on; signal the workers directly to see readiness
        # flip in whichever worker holds each connection, before the connections close.
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
        answers = await asyncio.to_thread(lambda: [get_on(s, "/health/readiness") for s in probes])
        for sock in probes:
            sock.close()
        statuses = [a[0] if a else None for a in answers]
        print(f"\nreadiness after the workers got SIGTERM: {statuses}")
        assert 503 in statuses, statuses
        for answer in answers:
            assert answer is None or answer[1]["checks"]["server"] == "draining", answer
        gw.process.send_signal(signal.SIGTERM)
        assert await exit_code(gw, 20) == 0
    finally:
        if gw.process.poll() is None:
            gw.stop()

"""A fast fake Anthropic upstream for benchmarks: raw asyncio Protocol on uvloop + httptools.

It answers ``POST .../v1/messages`` (any path prefix) with a canned Message JSON, or, when the
body asks for ``"stream": true``, with a canned SSE sequence written at once as a single HTTP
chunk. Every response is HTTP/1.1 keep-alive: Content-Length for JSON, chunked for SSE.
``GET`` on any path answers 200 ``ok`` (readiness probe). A wrong ``x-api-key`` gets 401.

It exists so that the upstream is never the bottleneck: it does no JSON parsing, no
allocation beyond the parser's, and writes pre-built bytes.

    python bench/fast_upstream.py --port 18001 --key sk-bench-upstream
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
from typing import cast

import httptools
import uvloop

MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {
            "type": "text",
            "text": "Hello! I'm a canned reply from the benchmark upstream. It is long enough "
            "to look like a short real answer, so relaying it costs what a real one would.",
        }
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 24,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 38,
        "service_tier": "standard",
    },
}

DELTAS = [
    "Hello", "! I'm", " a canned", " streamed", " reply", " from the", " benchmark",
    " upstream", ", split", " into deltas.",
]


def _event(name: str, data: dict[str, object]) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def build_sse() -> bytes:
    start_msg = {**MESSAGE, "content": [], "stop_reason": None,
                 "usage": {**MESSAGE["usage"], "output_tokens": 1}}  # type: ignore[dict-item]
    parts = [
        _event("message_start", {"type": "message_start", "message": start_msg}),
        _event("ping", {"type": "ping"}),
        _event("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {"type": "text", "text": ""}}),
    ]
    parts += [
        _event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": text}})
        for text in DELTAS
    ]
    parts += [
        _event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _event("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                 "usage": {"output_tokens": 38}}),
        _event("message_stop", {"type": "message_stop"}),
    ]
    return b"".join(parts)


def _response(status: str, headers: list[tuple[str, str]], body: bytes, chunked: bool) -> bytes:
    head = [f"HTTP/1.1 {status}"]
    head += [f"{k}: {v}" for k, v in headers]
    if chunked:
        head.append("transfer-encoding: chunked")
        payload = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    else:
        head.append(f"content-length: {len(body)}")
        payload = body
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


COMMON = [("request-id", "req_bench_0001"), ("anthropic-organization-id", "bench-org")]
JSON_BODY = json.dumps(MESSAGE, separators=(",", ":")).encode()
JSON_RESP = _response("200 OK", [("content-type", "application/json"), *COMMON], JSON_BODY,
                      chunked=False)
SSE_RESP = _response("200 OK", [("content-type", "text/event-stream; charset=utf-8"),
                                ("cache-control", "no-cache"), *COMMON], build_sse(),
                     chunked=True)
UNAUTH_RESP = _response(
    "401 Unauthorized", [("content-type", "application/json"), *COMMON],
    b'{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}',
    chunked=False)
NOT_FOUND_RESP = _response(
    "404 Not Found", [("content-type", "application/json"), *COMMON],
    b'{"type":"error","error":{"type":"not_found_error","message":"not found"}}',
    chunked=False)
OK_RESP = _response("200 OK", [("content-type", "text/plain")], b"ok", chunked=False)

STREAM_MARKERS = (b'"stream":true', b'"stream": true')


class UpstreamProtocol(asyncio.Protocol):
    """One connection; httptools does the parsing, responses are pre-built bytes."""

    expected_key: bytes = b""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.key = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._close()
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"
                                     b"connection: close\r\n\r\n")
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url = b""
        self.key = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 9 and name.lower() == b"x-api-key":
            self.key = value

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        transport = self.transport
        if transport is None:
            return
        method = self.parser.get_method()
        if method == b"GET":
            resp = OK_RESP
        elif not self.url.split(b"?", 1)[0].endswith(b"/v1/messages"):
            resp = NOT_FOUND_RESP
        elif self.key != self.expected_key:
            resp = UNAUTH_RESP
        else:
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
            resp = SSE_RESP if any(m in body for m in STREAM_MARKERS) else JSON_RESP
        transport.write(resp)
        if not self.parser.should_keep_alive():
            self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def serve(host: str, port: int, key: str) -> None:
    UpstreamProtocol.expected_key = key.encode()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=4096,
                                      reuse_address=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18001)
    parser.add_argument("--key", default="sk-bench-upstream", help="expected x-api-key")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.key))


if __name__ == "__main__":
    main()

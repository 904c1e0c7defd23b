"""The request-head limits of api/http_protocol.py, fed byte chunks directly (no sockets):
where a limit starts, how much of an unfinished head is held, and that requests pipelined
on one connection are not counted against each other."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from sluicegate.api.http_protocol import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    MAX_TARGET_BYTES,
    GatewayHttpProtocol,
)


class Transport(asyncio.Transport):
    """Collects what the protocol writes; records closing."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8400), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Answers 200 with the number of headers it got, once the body is read."""
    while (await receive()).get("more_body"):
        pass
    body = json.dumps({"headers": len(scope["headers"])}).encode()
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": 200, "headers": [length]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def connection() -> Iterator[tuple[GatewayHttpProtocol, Transport]]:
    loop = asyncio.new_event_loop()
    config = Config(app=app, http=GatewayHttpProtocol, lifespan="off", log_config=None)
    protocol = GatewayHttpProtocol(config, ServerState(), {}, _loop=loop)
    transport = Transport()
    protocol.connection_made(transport)
    yield protocol, transport
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


def head(target: bytes = b"/v1/messages", headers: int = 2, body: bytes = b"") -> bytes:
    lines = [b"POST " + target + b" HTTP/1.1", b"host: x"]
    lines += [b"x-h%d: v" % i for i in range(headers - 2)]
    lines += [b"content-length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def answer(transport: Transport) -> tuple[int, dict[str, Any]]:
    status_line, _, rest = transport.written.partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    return int(status_line.split()[1]), json.loads(body)


def run_pending(protocol: GatewayHttpProtocol) -> None:
    protocol.loop.run_until_complete(asyncio.sleep(0.01))


def test_headers_at_the_count_limit_pass(connection: tuple[GatewayHttpProtocol, Transport]) -> None:
    protocol, transport = connection
    protocol.data_received(head(headers=MAX_HEADERS))
    run_pending(protocol)
    assert answer(transport) == (200, {"headers": MAX_HEADERS})


def test_one_header_over_the_count_is_431(
    connection: tuple[GatewayHttpProtocol, Transport],
) -> None:
    protocol, transport = connection
    protocol.data_received(head(headers=MAX_HEADERS + 1))
    status, body = answer(transport)
    assert status == 431
    assert body["error"]["type"] == "request_too_large"
    assert transport.closed


def test_a_head_arriving_in_small_pieces_is_counted_exactly(
    connection: tuple[GatewayHttpProtocol, Transport],
) -> None:
    protocol, transport = connection
    data = head(headers=3)[:-4] + b"\r\nx-big: " + b"a" * (MAX_HEAD_BYTES - 200) + b"\r\n\r\n"
    for start in range(0, len(data), 1000):
        protocol.data_received(data[start : start + 1000])
    run_pending(protocol)
    assert answer(transport)[0] == 200

    protocol2 = GatewayHttpProtocol(protocol.config, ServerState(), {}, _loop=protocol.loop)
    transport2 = Transport()
    protocol2.connection_made(transport2)
    data = head(headers=3)[:-4] + b"\r\nx-big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
    for start in range(0, len(data), 1000):
        protocol2.data_received(data[start : start + 1000])
    assert answer(transport2)[0] == 431


def test_an_unfinished_header_is_refused_after_the_limit(
    connection: tuple[GatewayHttpProtocol, Transport],
) -> None:
    """No callback sees a header until it ends: the bytes of the chunks after the first
    count instead, so the connection is cut at about one chunk plus the limit."""
    protocol, transport = connection
    protocol.data_received(b"POST /v1/chat/completions HTTP/1.1\r\nx-endless: ")
    chunks = 0
    while not transport.closed:
        protocol.data_received(b"a" * 16_384)
        chunks += 1
        assert chunks < 100, "never refused"
    assert chunks * 16_384 <= MAX_HEAD_BYTES + 16_384
    status, body = answer(transport)
    assert status == 431
    assert body["error"]["code"] == "request_header_fields_too_large"  # OpenAI's shape


def test_pipelined_requests_are_not_counted_together(
    connection: tuple[GatewayHttpProtocol, Transport],
) -> None:
    """Two requests in one chunk, each with a body over the head limit: bodies never count
    as head bytes, also in the chunk where the next request starts."""
    protocol, transport = connection
    body = b"b" * (MAX_HEAD_BYTES + 1000)
    protocol.data_received(head(body=body) + head(body=body)[:20])
    protocol.data_received(head(body=body)[20:])
    run_pending(protocol)
    assert transport.written.count(b"HTTP/1.1 200 OK") == 2, transport.written[:300]


def test_long_target_is_414(connection: tuple[GatewayHttpProtocol, Transport]) -> None:
    protocol, transport = connection
    protocol.data_received(head(target=b"/v1/messages?x=" + b"a" * MAX_TARGET_BYTES))
    status, body = answer(transport)
    assert status == 414
    assert body == {
        "type": "error",
        "error": {"type": "request_too_large", "message": body["error"]["message"]},
    }


def test_parser_errors_are_json_in_the_path_shape(
    connection: tuple[GatewayHttpProtocol, Transport],
) -> None:
    protocol, transport = connection
    protocol.data_received(b"POST /v1/chat/completions HTTP/1.1\r\nx-bad: a\x00b\r\n\r\n")
    status, body = answer(transport)
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert b"request-id: req_" in transport.written
    assert transport.closed


def test_a_large_header_in_two_reads_is_431(
    connection: tuple[GatewayHttpProtocol, Transport],
) -> None:
    """The head ends in a read smaller than the limit, after a first read that was larger:
    the whole head is counted (CI once saw a 100 KB header arrive this way)."""
    protocol, transport = connection
    data = head(headers=3)[:-4] + b"\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n"
    protocol.data_received(data[:70_000])
    protocol.data_received(data[70_000:])
    assert answer(transport)[0] == 431

"""Helpers shared by the bad-input suites (``test_bad_input_*.py``); no tests here.

Requests go over raw sockets where http.client refuses to send them (CR, LF or NUL in a
header value, bytes outside ASCII in the path, thousands of headers), and over
:func:`raw_request` otherwise. Every refusal is checked the same way: a 4xx, JSON in the
surface's error shape with a request id, and nothing that looks like a traceback.
"""

from __future__ import annotations

import contextlib
import json
import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tests.gateway_harness import ADMIN_TOKEN, Gateway
from tests.integration.test_anthropic_support import JSON_BODY_HEADERS, RawResponse, raw_request

TRACEBACK_MARKERS = (b"Traceback", b'File "', b'.py", line')
# Routes by the error shape they answer in.
ANTHROPIC_ROUTES = ("/v1/messages", "/v1/messages/count_tokens")
OPENAI_ROUTES = ("/v1/chat/completions",)
ADMIN_BODY_ROUTES = ("/key/generate", "/key/update", "/partner/new", "/partner/update")


def surface_of(path: str) -> str:
    return "openai" if path in OPENAI_ROUTES else "anthropic"


def admin_headers(**extra: str) -> dict[str, str]:
    return {
        "authorization": f"Bearer {ADMIN_TOKEN}",
        "content-type": "application/json",
        **extra,
    }


def data_headers(gateway: Gateway, **extra: str) -> dict[str, str]:
    return {**JSON_BODY_HEADERS, "x-api-key": gateway.keys["full"], **extra}


def headers_for(gateway: Gateway, path: str) -> dict[str, str]:
    if path.startswith(("/key/", "/partner/", "/usage/")):
        return admin_headers()
    headers = data_headers(gateway)
    if path in OPENAI_ROUTES:
        del headers["anthropic-version"]  # an OpenAI client sends none
    return headers


def post(gateway: Gateway, path: str, body: bytes | Any) -> RawResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw_request(gateway.url, "POST", path, raw, headers_for(gateway, path))


def assert_refusal(response: RawResponse, status: int, surface: str) -> dict[str, Any]:
    """A clean refusal: ``status`` (a 4xx), JSON in ``surface``'s shape, a request id, and
    no traceback text."""
    assert 400 <= status < 500
    assert response.status == status, (response.status, response.body[:400])
    assert response.headers.get("content-type", "").startswith("application/json")
    assert response.request_id.startswith("req_"), response.headers
    for marker in TRACEBACK_MARKERS:
        assert marker not in response.body, response.body[:400]
    body = response.json()
    if surface == "openai":
        assert set(body) == {"error"}, body
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}, body
        assert isinstance(error["type"], str) and error["type"], body
    else:
        assert set(body) == {"type", "error"}, body
        assert body["type"] == "error"
        error = body["error"]
        assert set(error) == {"type", "message"}, body
        assert isinstance(error["type"], str) and error["type"], body
    assert isinstance(error["message"], str) and error["message"], body
    return error  # type: ignore[no-any-return]


def assert_ready(gateway: Gateway) -> None:
    with urllib.request.urlopen(f"{gateway.url}/health/readiness", timeout=5) as answer:
        assert answer.status == 200


@contextlib.contextmanager
def no_gateway_errors(gateway: Gateway) -> Iterator[None]:
    """Fails if the gateway logged an error (a 500, a crash) while the block ran."""
    start = len(gateway.log_text())
    yield
    logged = gateway.log_text()[start:]
    errors = [line for line in logged.splitlines() if '"level":"error"' in line]
    assert not errors, errors[:3]
    assert "Traceback" not in logged


# -- raw sockets -------------------------------------------------------------------------


@dataclass(frozen=True)
class WireResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def as_raw(self) -> RawResponse:
        return RawResponse(self.status, self.headers, self.body)


def wire_request(
    method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> bytes:
    """A request written byte for byte: nothing is checked or escaped."""
    lines = [method + b" " + target + b" HTTP/1.1"]
    lines += [name + b": " + value for name, value in headers]
    head = b"\r\n".join(lines) + b"\r\n"
    return head + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def send_wire(base_url: str, data: bytes, *, timeout: float = 15.0) -> WireResponse | None:
    """Send ``data`` on a fresh connection and read until the server closes it. None when
    the server reset the connection before any answer arrived."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout) as s:
        # No half-close after sending: uvicorn takes the client's EOF for a disconnect.
        # The requests say "connection: close", so the server ends the exchange.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                received += chunk
    return parse_wire(received) if received else None


def parse_wire(data: bytes) -> WireResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    length = headers.get("content-length")
    return WireResponse(
        int(status_line.split()[1]), headers, body[: int(length)] if length else body
    )


def base_headers(gateway: Gateway, path: bytes) -> list[tuple[bytes, bytes]]:
    """What a client of ``path`` sends, as raw pairs (the connection closes after)."""
    pairs = [(b"host", b"127.0.0.1"), (b"connection", b"close")]
    pairs += [(k.encode(), v.encode()) for k, v in headers_for(gateway, path.decode()).items()]
    return pairs


def message_request(model: str = "claude-sonnet-4-6") -> bytes:
    return json.dumps(
        {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    ).encode()

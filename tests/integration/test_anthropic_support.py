"""Helpers shared by the Anthropic-surface integration tests (``test_anthropic_*.py``).

This module holds no tests (its name only follows the file-ownership convention of the
test suite). It talks plain HTTP with :mod:`http.client`, so the tests see exactly the
bytes, statuses and headers a client gets, with no SDK in between.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anthropic

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import UPSTREAM_KEY, Gateway

API_VERSION = "2023-06-01"
JSON_BODY_HEADERS = {"content-type": "application/json", "anthropic-version": API_VERSION}


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def request_id(self) -> str:
        return self.headers.get("request-id", "")


def raw_request(
    base_url: str,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    timeout: float = 30.0,
) -> RawResponse:
    """One request on a fresh connection. An iterable body is sent chunked."""
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=timeout)
    try:
        # The server may answer (e.g. 413) and stop reading before the upload ends; its
        # answer is still waiting in the socket.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request(method, path, body=body, headers=dict(headers or {}))
        response = conn.getresponse()
        data = response.read()
        merged: dict[str, str] = {}
        for name, value in response.getheaders():
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        return RawResponse(response.status, merged, data)
    finally:
        conn.close()


def key_headers(key: str, **extra: str) -> dict[str, str]:
    return {**JSON_BODY_HEADERS, "x-api-key": key, **extra}


def message_body(
    model: str = "claude-sonnet-4-6", text: str = "hello", **extra: Any
) -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def post_messages(
    gateway: Gateway,
    body: bytes | dict[str, Any],
    key: str | None = None,
    *,
    path: str = "/v1/messages",
    headers: Mapping[str, str] | None = None,
) -> RawResponse:
    """POST to the gateway; a dict body is JSON-encoded, ``key`` defaults to ``full``."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = key_headers(gateway.keys["full"] if key is None else key)
    sent.update(headers or {})
    return raw_request(gateway.url, "POST", path, raw, sent)


def post_to_fake(fake: FakeUpstream, body: bytes, path: str = "/v1/messages") -> RawResponse:
    """The same request sent straight to the fake provider (the reference answer)."""
    headers = {**JSON_BODY_HEADERS, "x-api-key": UPSTREAM_KEY}
    return raw_request(fake.url, "POST", path, body, headers)


def sdk(gateway: Gateway, key: str | None = None) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.url,
        api_key=gateway.keys["full"] if key is None else key,
        max_retries=0,
        timeout=20.0,
    )


def parse_sse(body: bytes) -> list[tuple[str | None, Any]]:
    """``(event name, parsed data)`` for each event of an SSE body."""
    events: list[tuple[str | None, Any]] = []
    for block in body.decode().replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
        events.append((name, json.loads("\n".join(data)) if data else None))
    return events


def assert_gateway_error(response: RawResponse, status: int, error_type: str) -> dict[str, Any]:
    """An error the gateway made: Anthropic's shape, the status, a request id."""
    assert response.status == status, (response.status, response.body)
    assert response.headers.get("content-type", "").startswith("application/json")
    assert response.request_id.startswith("req_"), response.headers
    body = response.json()
    assert set(body) == {"type", "error"}, body
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return body  # type: ignore[no-any-return]


def log_entries(gateway: Gateway) -> list[dict[str, Any]]:
    entries = []
    for line in gateway.log_text().splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries


def wait_for_log(gateway: Gateway, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The gateway's request log line for ``request_id`` (the line may lag a little)."""
    deadline = time.monotonic() + timeout
    while True:
        for entry in log_entries(gateway):
            if entry.get("request_id") == request_id:
                return entry
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line for {request_id}:\n{gateway.log_text()[-3000:]}")
        time.sleep(0.05)

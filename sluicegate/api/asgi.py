"""Minimal ASGI plumbing for the data path: request view, bounded body reading, responses.

The data path avoids a web framework on purpose: a request costs one dict lookup to route
and a few ``send`` calls to answer, which keeps the gateway's own CPU per request close to
a hand-written proxy (see bench/).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from sluicegate.errors import RequestTooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
HeaderList = list[tuple[bytes, bytes]]

JSON_CONTENT = (b"content-type", b"application/json")
SSE_HEADERS: HeaderList = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


# Request ids must be unique, not secret: a random per-process prefix and a counter are
# enough, and far cheaper than asking the OS for fresh randomness on every request.
_ID_PREFIX = "req_" + secrets.token_hex(6)
_id_counter = itertools.count(1)


# First path segments (after /v1) of OpenAI's API: errors there answer in OpenAI's shape
# unless the request says it comes from an Anthropic client (anthropic-version).
OPENAI_NAMESPACES = frozenset(
    {
        "chat",
        "completions",
        "responses",
        "embeddings",
        "models",
        "audio",
        "images",
        "files",
        "batches",
        "moderations",
        "assistants",
        "threads",
        "fine_tuning",
        "vector_stores",
    }
)


def openai_path(path: str) -> bool:
    """Is ``path`` in OpenAI's API namespace (``/v1/chat/...``, ``/models`` ...)?"""
    first = path.removeprefix("/v1").lstrip("/").split("/", 1)[0]
    return first in OPENAI_NAMESPACES


def new_request_id() -> str:
    """The gateway's id for one request, sent back as the ``request-id`` header."""
    return f"{_ID_PREFIX}{next(_id_counter):012x}"


def request_id_header(request_id: str | None = None) -> tuple[bytes, bytes]:
    return (b"request-id", (request_id or new_request_id()).encode())


class ClientDisconnected(Exception):
    """The client went away while the gateway was still reading or writing."""


class Request:
    """A read-only view of one HTTP request's scope."""

    __slots__ = ("_headers", "client", "method", "path", "query_string", "raw_headers")

    def __init__(self, scope: Scope) -> None:
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query_string: bytes = scope.get("query_string", b"")
        self.raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        # The TCP peer (host, port); None on a Unix socket. See policy/client_ip.
        self.client: tuple[str, int] | None = scope.get("client")
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """Lower-case header names; repeated headers joined with ", " as HTTP allows."""
        if self._headers is None:
            merged: dict[str, str] = {}
            for raw_name, raw_value in self.raw_headers:
                name = raw_name.decode("latin-1").lower()
                value = raw_value.decode("latin-1")
                merged[name] = f"{merged[name]}, {value}" if name in merged else value
            self._headers = merged
        return self._headers

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


async def read_body(receive: Receive, request: Request, limit: int) -> bytes:
    """Read the whole body, refusing (413) as soon as it exceeds ``limit`` bytes.

    A declared Content-Length over the limit is refused before reading anything; a chunked
    body is refused at the first chunk that crosses the limit, so an oversized upload is
    never held in memory.
    """
    declared = request.header("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request body exceeds the gateway's limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(f"Request body exceeds the gateway's limit of {limit} bytes.")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_bytes(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]]
) -> None:
    header_list = list(headers)
    header_list.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": header_list})
    await send({"type": "http.response.body", "body": body})


async def send_json(
    send: Send, status: int, payload: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    await send_bytes(send, status, orjson.dumps(payload), [JSON_CONTENT, *headers])

"""Incremental observer of an Anthropic SSE stream that the gateway relays byte for byte.

The relay never waits for the observer and never changes a byte. The observer splits the
bytes into events as they pass (events may straddle chunks) and decodes JSON only for the
events that carry usage, stop reason or errors; the bulk of a stream, content deltas, is
only counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

_PARSED_EVENTS = frozenset({b"message_start", b"message_delta", b"error"})


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def update(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        for name in (
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
        ):
            value = data.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, value)


@dataclass(slots=True)
class StreamObservation:
    usage: Usage = field(default_factory=Usage)
    upstream_message_id: str | None = None
    stop_reason: str | None = None
    first_token_at: float | None = None  # perf_counter() of the first content delta
    events: int = 0
    saw_message_stop: bool = False
    error_type: str | None = None

    @property
    def complete(self) -> bool:
        return self.saw_message_stop or self.error_type is not None


class SSEObserver:
    """Feed it the relayed chunks; read :attr:`observation` at any time.

    :meth:`feed` returns the bytes that complete whole events and holds back a partial
    event until its end arrives, so the relay never leaves a client with half an event:
    if the upstream dies mid-event, what follows on the wire is a clean ``error`` event.
    """

    __slots__ = ("_buffer", "_data", "_event", "_scanned", "observation")

    def __init__(self) -> None:
        self._buffer = b""
        self._scanned = 0  # bytes of _buffer already split into lines
        self._event: bytes = b""
        self._data: list[bytes] = []
        self.observation = StreamObservation()

    def feed(self, chunk: bytes) -> bytes:
        """Observe ``chunk``; return the bytes now ready to relay (whole events only)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        position = self._scanned
        boundary = 0
        while True:
            end = buffer.find(b"\n", position)
            if end < 0:
                break
            line = buffer[position:end]
            position = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if line:
                self._line(line)
            else:
                self._dispatch()
                boundary = position
        if boundary == len(buffer):
            self._buffer, self._scanned = b"", 0
            return buffer
        self._buffer = buffer[boundary:]
        self._scanned = position - boundary
        return buffer[:boundary]

    @property
    def pending(self) -> int:
        """Bytes of an unfinished event held back."""
        return len(self._buffer)

    def _line(self, line: bytes) -> None:
        if line.startswith(b"event:"):
            self._event = line[6:].strip()
        elif line.startswith(b"data:"):
            self._data.append(line[5:].lstrip(b" "))
        # comments (":...") and other fields (id, retry) carry nothing we observe

    def _dispatch(self) -> None:
        event, data = self._event, self._data
        self._event, self._data = b"", []
        if not event and not data:
            return
        obs = self.observation
        obs.events += 1
        if event == b"content_block_delta":
            if obs.first_token_at is None:
                obs.first_token_at = time.perf_counter()
            return
        if event == b"message_stop":
            obs.saw_message_stop = True
            return
        if event not in _PARSED_EVENTS:
            return
        try:
            payload = orjson.loads(b"\n".join(data))
        except orjson.JSONDecodeError:
            return
        if not isinstance(payload, dict):
            return
        if event == b"message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                msg_id = message.get("id")
                obs.upstream_message_id = msg_id if isinstance(msg_id, str) else None
                obs.usage.update(message.get("usage"))
        elif event == b"message_delta":
            obs.usage.update(payload.get("usage"))
            delta = payload.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                obs.stop_reason = delta["stop_reason"]
        else:  # error
            error = payload.get("error")
            kind = error.get("type") if isinstance(error, dict) else None
            obs.error_type = kind if isinstance(kind, str) else "api_error"

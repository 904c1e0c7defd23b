"""Incremental observer of an Anthropic SSE stream that the gateway relays byte for byte.

The relay never waits for the observer and never changes a byte. The observer finds event
boundaries as the bytes pass (events may straddle chunks) and decodes JSON only for the
events that carry usage, stop reason or errors; the bulk of a stream, content deltas, is
never parsed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0  # all cache writes, 5-minute and 1-hour
    cache_creation_1h_input_tokens: int = 0  # the 1-hour part of the writes, when reported

    def update(self, data: Any) -> None:
        """Take the counts present in an Anthropic ``usage`` object (they are cumulative)."""
        if not isinstance(data, dict):
            return
        if type(value := data.get("input_tokens")) is int:
            self.input_tokens = value
        if type(value := data.get("output_tokens")) is int:
            self.output_tokens = value
        if type(value := data.get("cache_read_input_tokens")) is int:
            self.cache_read_input_tokens = value
        if type(value := data.get("cache_creation_input_tokens")) is int:
            self.cache_creation_input_tokens = value
        # The 5-minute / 1-hour split of the writes above, when the API reports it.
        split = data.get("cache_creation")
        if type(split) is dict and type(value := split.get("ephemeral_1h_input_tokens")) is int:
            self.cache_creation_1h_input_tokens = value


@dataclass(slots=True)
class StreamObservation:
    usage: Usage = field(default_factory=Usage)
    upstream_message_id: str | None = None
    stop_reason: str | None = None
    first_token_at: float | None = None  # perf_counter() of the first content delta
    saw_message_stop: bool = False
    error_type: str | None = None
    relayed_bytes: int = 0  # of whole events, for an estimate when the final usage never came
    relayed_events: int = 0

    @property
    def complete(self) -> bool:
        return self.saw_message_stop or self.error_type is not None


# Events whose payload the gateway reads, with the two spellings SSE allows for their
# name line. An event ends at a blank line; JSON data cannot contain a raw newline, so
# "event: NAME" at the start of a line is always a real event name, never text from a
# prompt (each candidate found is checked for that).
_OBSERVED_EVENTS = tuple(
    (name, b"event: " + name, b"event:" + name)
    for name in (b"message_start", b"message_delta", b"message_stop", b"error")
)


def last_boundary(data: bytes) -> int:
    """Index just past the last blank line (LF or CRLF line endings), or -1."""
    lf = data.rfind(b"\n\n")
    crlf = data.rfind(b"\n\r\n")
    return max(lf + 2 if lf >= 0 else -1, crlf + 3 if crlf >= 0 else -1)


def _is_whole_line(data: bytes, start: int, end: int) -> bool:
    """Does ``data[start:end]`` fill a line of its own?"""
    if end < len(data) and data[end] not in (10, 13):  # "\n", "\r"
        return False
    return start == 0 or data[start - 1] == 10


def _event_data(block: bytes) -> bytes:
    """The joined ``data:`` lines of one event block."""
    lines = [line.rstrip(b"\r") for line in block.split(b"\n")]
    return b"\n".join(line[5:].removeprefix(b" ") for line in lines if line.startswith(b"data:"))


class WholeEventObserver:
    """Base of the pass-through stream observers: feed it the relayed chunks, read
    :attr:`observation` at any time.

    :meth:`feed` returns the bytes that complete whole events and holds back a partial
    event until its end arrives, so the relay never leaves a client with half an event:
    if the upstream dies mid-event, what follows on the wire is a clean error event.
    Subclasses look at the ready bytes in :meth:`_observe`.
    """

    __slots__ = ("_held", "observation")

    def __init__(self) -> None:
        self._held = b""
        self.observation = StreamObservation()

    @property
    def pending(self) -> int:
        """Bytes of an unfinished event held back."""
        return len(self._held)

    def feed(self, chunk: bytes) -> bytes:
        """Observe ``chunk``; return the bytes now ready to relay (whole events only)."""
        data = self._held + chunk if self._held else chunk
        end = last_boundary(data)
        if end < 0:
            self._held = data
            return b""
        if end == len(data):
            ready, self._held = data, b""
        else:
            ready, self._held = data[:end], data[end:]
        ready = self._observe(ready)
        self.observation.relayed_bytes += len(ready)
        self.observation.relayed_events += ready.count(b"\n\n")
        return ready

    def _observe(self, ready: bytes) -> bytes:
        """Look at whole events; return what to relay of them (normally all)."""
        raise NotImplementedError


class SSEObserver(WholeEventObserver):
    """An Anthropic Messages stream. Finding the events it reads costs a few C-level byte
    searches per chunk; JSON is decoded only for the handful of events that carry usage,
    the stop reason or an error."""

    __slots__ = ()

    def _observe(self, ready: bytes) -> bytes:
        obs = self.observation
        if obs.first_token_at is None and b"content_block_delta" in ready:
            obs.first_token_at = time.perf_counter()
        for name, spaced, bare in _OBSERVED_EVENTS:
            for line in (spaced, bare):
                at = ready.find(line)
                while at >= 0:
                    end = at + len(line)
                    if _is_whole_line(ready, at, end):
                        self._event(name, ready, at, end)
                    at = ready.find(line, end)
        return ready

    def _event(self, name: bytes, ready: bytes, line_at: int, line_end: int) -> None:
        if name == b"message_stop":
            self.observation.saw_message_stop = True
            return
        # Fast path, Anthropic's own layout: the name line, one data line, a blank line.
        if ready.startswith(b"\ndata: ", line_end):
            data_end = ready.find(b"\n", line_end + 7)
            if data_end > 0 and ready.startswith(b"\n", data_end + 1):
                self._record(name, ready[line_end + 7 : data_end])
                return
        start = last_boundary(ready[:line_at])
        stop = ready.find(b"\n\n", line_end)
        stop_crlf = ready.find(b"\n\r\n", line_end)
        if stop < 0 or (0 <= stop_crlf < stop):
            stop = stop_crlf
        block = ready[max(start, 0) : stop if stop >= 0 else len(ready)]
        self._record(name, _event_data(block))

    def _record(self, name: bytes, data: bytes) -> None:
        obs = self.observation
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            if name == b"error":  # an error we cannot read is still an error
                obs.error_type = "api_error"
            return
        if name == b"message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                msg_id = message.get("id")
                obs.upstream_message_id = msg_id if isinstance(msg_id, str) else None
                obs.usage.update(message.get("usage"))
        elif name == b"message_delta":
            obs.usage.update(payload.get("usage"))
            delta = payload.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                obs.stop_reason = delta["stop_reason"]
        else:  # error
            error = payload.get("error")
            kind = error.get("type") if isinstance(error, dict) else None
            obs.error_type = kind if isinstance(kind, str) else "api_error"


class SSEDecoder:
    """Splits an SSE byte stream into ``(event name, data)`` pairs, for translation.

    Unlike :class:`SSEObserver` (pass-through) every event is decoded here, because a
    translated stream is rebuilt event by event. Comments and ``id``/``retry`` fields are
    skipped; multi-line data is joined with newlines, as the SSE specification says.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = b""

    def feed(self, chunk: bytes) -> list[tuple[str, bytes]]:
        data = self._held + chunk if self._held else chunk
        end = last_boundary(data)
        if end < 0:
            self._held = data
            return []
        self._held = data[end:]
        events: list[tuple[str, bytes]] = []
        for block in data[:end].replace(b"\r\n", b"\n").split(b"\n\n"):
            if block:
                event = _decode_block(block)
                if event is not None:
                    events.append(event)
        return events

    @property
    def pending(self) -> bool:
        """Is an unfinished event held back?"""
        return bool(self._held.strip())


def _decode_block(block: bytes) -> tuple[str, bytes] | None:
    name = ""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
    if not data and not name:
        return None
    return name, b"\n".join(data)

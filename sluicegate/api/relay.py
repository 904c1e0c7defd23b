"""Sending an upstream's answer to the client: JSON, relayed errors, and SSE streams.

Streams are relayed as they arrive. Once the first byte went out the status is committed,
so any later failure (transport error, idle timeout, a stream that simply stops, the drain
deadline at shutdown) becomes an SSE ``error`` event in the stream's format, and the stream
ends: never a silent cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from sluicegate.api.asgi import (
    SSE_HEADERS,
    ClientDisconnected,
    HeaderList,
    Message,
    Receive,
    Send,
    send_bytes,
)
from sluicegate.api.sse import SSEObserver, StreamObservation
from sluicegate.errors import GatewayError, sse_error_event
from sluicegate.lifecycle import draining
from sluicegate.providers.base import RELAYED_ERROR_HEADERS, UpstreamResponse

T = TypeVar("T")

INCOMPLETE_STREAM = "The upstream stream ended before the message was complete."
INTERNAL_STREAM_ERROR = "The gateway failed while relaying this stream; see its log."
SHUTTING_DOWN = "The gateway is shutting down; retry the request."
# Anthropic's "busy, try again" type (529 family): the client may retry on another instance.
SHUTDOWN_ERROR_TYPE = "overloaded_error"

log = logging.getLogger("sluicegate.relay")


async def cancel_on_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it (and with it the upstream
    request) and raise :class:`ClientDisconnected`. Call only after the body was read.

    One watcher task per request waits for ``http.disconnect``. The ASGI server also sends
    that message once the response is complete, so the watcher simply ends then (the
    ``finished`` flag tells the two apart): no extra task for the work, no cancellation
    on the normal path.
    """
    task = asyncio.current_task()
    assert task is not None
    state = {"finished": False, "disconnected": False}

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        if not state["finished"]:
            state["disconnected"] = True
            task.cancel()

    asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if state["disconnected"]:
            task.uncancel()
            raise ClientDisconnected from None
        raise
    finally:
        state["finished"] = True


def _content_type(upstream: UpstreamResponse, default: bytes) -> tuple[bytes, bytes]:
    value = upstream.headers.get("content-type")
    return (b"content-type", value.encode("latin-1") if value else default)


async def relay_body(
    send: Send, upstream: UpstreamResponse, body: bytes, headers: HeaderList
) -> None:
    """A complete upstream answer (success or error), status and body unmodified."""
    out = [_content_type(upstream, b"application/json"), *headers]
    if upstream.status >= 400:
        for name in RELAYED_ERROR_HEADERS:
            value = upstream.headers.get(name)
            if value is not None:
                out.append((name.encode(), value.encode("latin-1")))
    await send_bytes(send, upstream.status, body, out)


class StreamObserver(Protocol):
    observation: StreamObservation

    def feed(self, chunk: bytes) -> bytes: ...


ErrorEvent = Callable[[str, str], bytes]


async def relay_stream(
    send: Send,
    upstream: UpstreamResponse,
    headers: HeaderList,
    observer: StreamObserver | None = None,
    error_event: ErrorEvent = sse_error_event,
) -> StreamObservation:
    """Relay an SSE stream chunk by chunk while observing it; end it cleanly whatever
    happens upstream. ``observer`` and ``error_event`` follow the stream's wire format
    (Anthropic by default). Returns what the observer saw."""
    observer = observer or SSEObserver()
    await send(
        {
            "type": "http.response.start",
            "status": upstream.status,
            "headers": [*SSE_HEADERS, *headers],
        }
    )
    observation = observer.observation
    try:
        async for chunk in upstream.iter_chunks():
            ready = observer.feed(chunk)
            if upstream.at_eof():
                # The last chunk came with the end of the body: one send finishes the response.
                await send(last_body(ready + _end_of_stream(observation, error_event)))
                return observation
            if ready:
                await send({"type": "http.response.body", "body": ready, "more_body": True})
    except GatewayError as error:
        upstream.close()
        tail = b""
        if not observation.saw_message_stop:  # a drop after the end loses nothing
            tail = error_event(error.error_type, error.message)
            observation.error_type = error.error_type
        await send(last_body(tail))
        return observation
    except Exception:  # a gateway bug mid-stream: still end the stream with an error event
        log.exception("internal error while relaying a stream")
        upstream.close()
        observation.error_type = "api_error"
        await send(last_body(error_event("api_error", INTERNAL_STREAM_ERROR)))
        return observation
    except asyncio.CancelledError:
        upstream.close()
        if draining():  # cut at the drain deadline (see end_cancelled_stream)
            tail = b""
            if not observation.saw_message_stop:
                observation.error_type = SHUTDOWN_ERROR_TYPE
                tail = error_event(SHUTDOWN_ERROR_TYPE, SHUTTING_DOWN)
            await end_cancelled_stream(send, tail)
        raise
    await send(last_body(_end_of_stream(observation, error_event)))
    return observation


def _end_of_stream(observation: StreamObservation, error_event: ErrorEvent) -> bytes:
    """What follows the upstream's last byte: nothing, or an error if the message is cut."""
    if observation.complete:
        return b""
    observation.error_type = "api_error"
    return error_event("api_error", INCOMPLETE_STREAM)


def last_body(body: bytes) -> Message:
    return {"type": "http.response.body", "body": body, "more_body": False}


async def end_cancelled_stream(send: Send, tail: bytes) -> None:
    """End a stream whose task is being cancelled with ``tail`` (an error event, or nothing
    when the message was complete) rather than a silent cut; the caller then re-raises.

    Only for a cancellation while the process drains: the server cancels the streams still
    running at the drain deadline (``server.shutdown_grace``). Otherwise a cancelled task
    is a client that disconnected, and there is nobody to tell.
    """
    with contextlib.suppress(Exception):  # the client may be gone or the response complete
        await send(last_body(tail))

"""Writing an SSE event sequence with the faults a Behaviour scripts (pace, stall, cut, error)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web
from multidict import CIMultiDict

from sluicegate.fake_upstream.behaviour import Behaviour
from sluicegate.fake_upstream.common import SseEvent


def stream_headers(headers: CIMultiDict[str]) -> CIMultiDict[str]:
    out = CIMultiDict(
        {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
    )
    out.update(headers)
    return out


async def send_stream(
    request: web.Request,
    events: Sequence[SseEvent],
    error: SseEvent,
    behaviour: Behaviour,
    headers: CIMultiDict[str],
) -> web.StreamResponse:
    """Send ``events`` one write each. With ``n`` events already sent, in this order:
    ``stall_after_events == n`` pauses, ``cut_after_events == n`` drops the connection
    without the chunked terminator, ``error_event_after == n`` sends ``error`` and ends.

    A client that goes away is not an error of the fake: the handler just stops.
    """
    response = web.StreamResponse(status=behaviour.status, headers=stream_headers(headers))
    try:
        await response.prepare(request)
        for sent in range(len(events) + 1):
            if sent == behaviour.stall_after_events:
                await asyncio.sleep(behaviour.stall_seconds)
            if sent == behaviour.cut_after_events:
                drop_connection(request)
                return response
            if sent == behaviour.error_event_after:
                await response.write(error.encode())
                break
            if sent == len(events):
                break
            if sent and behaviour.chunk_delay:
                await asyncio.sleep(behaviour.chunk_delay)
            await response.write(events[sent].encode())
        await response.write_eof()
    except ConnectionError:
        pass
    return response


def drop_connection(request: web.Request) -> None:
    """Close the socket mid-body: buffered bytes are flushed, then FIN, no last chunk."""
    transport = request.transport
    if transport is not None:
        transport.close()

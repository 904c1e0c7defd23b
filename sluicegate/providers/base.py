"""What every provider offers the pipeline: send one prepared call, get a response.

A provider knows URLs, headers, auth and transport errors of one upstream family. It
never looks inside bodies beyond what the wire requires, and never imports translate/.
Transport failures are mapped here, once, to typed gateway errors (never by message text).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from sluicegate.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from sluicegate.routing.router import Deployment
from sluicegate.settings import Timeouts

# Upstream response headers a client may act on; everything else stays at the gateway.
RELAYED_ERROR_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry")


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    deployment: Deployment
    path: str  # e.g. "/v1/messages", appended to the deployment's api_base
    body: bytes
    client_headers: Mapping[str, str]
    stream: bool


class UpstreamResponse:
    """An upstream response whose headers have arrived; the body is read or iterated once."""

    __slots__ = ("_body", "_deadline", "_prefetched", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, deadline: float) -> None:
        self._response = response
        self._deadline = deadline  # time.monotonic() by which the exchange must end
        self._body: bytes | None = None
        self._prefetched = b""  # stream bytes read before the relay began (first event)
        self.status = response.status
        self.headers = response.headers

    @property
    def request_id(self) -> str | None:
        return self.headers.get("request-id") or self.headers.get("x-request-id")

    async def read(self) -> bytes:
        """The whole body (kept: a retry decision reads it before the relay does)."""
        if self._body is not None:
            return self._body
        try:
            self._body = await self._response.read()
            return self._body
        except BaseException as exc:
            raise map_transport_error(exc) from exc
        finally:
            self._response.release()

    async def first_event(self, limit: int = 1 << 20) -> bytes:
        """Read a stream until its first complete SSE event (or its end) arrived, and keep
        it for :meth:`iter_chunks`: delivery decides on the first event whether to commit
        to this upstream. Transport failures surface as typed gateway errors."""
        buffer = b""
        try:
            while b"\n\n" not in buffer and b"\r\n\r\n" not in buffer and len(buffer) < limit:
                if time.monotonic() > self._deadline:
                    raise UpstreamTimeout("The upstream exceeded the total time allowed.")
                chunk = await self._response.content.readany()
                if not chunk:
                    break
                buffer += chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_transport_error(exc) from exc
        self._prefetched = buffer
        return buffer

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Chunks as they arrive. Transport failures and the ``total`` deadline (checked
        between chunks; a silent upstream is cut by the idle timeout first) surface as
        typed gateway errors."""
        if self._prefetched:
            # One chunk, so that at_eof() after it is true only when nothing else follows.
            prefetched, self._prefetched = self._prefetched, b""
            yield prefetched
        try:
            async for chunk in self._response.content.iter_any():
                if time.monotonic() > self._deadline:
                    raise UpstreamTimeout("The upstream exceeded the total time allowed.")
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise map_transport_error(exc) from exc

    def at_eof(self) -> bool:
        """Has the whole body arrived (nothing more will come)?"""
        return self._response.content.at_eof()

    def close(self) -> None:
        """Drop the connection (client gone, or the stream was abandoned mid-way)."""
        self._response.close()


def map_transport_error(exc: BaseException) -> BaseException:
    """The one place aiohttp/asyncio failures become gateway errors."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout("The upstream provider did not answer in time.")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamUnavailable("The upstream provider could not be reached.")
    return exc


class Provider(Protocol):
    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        """Send the call; return once status and headers arrived.

        Raises UpstreamUnavailable / UpstreamTimeout when no response could be had.
        """
        ...


@functools.lru_cache(maxsize=512)
def client_timeout(timeouts: Timeouts, stream: bool) -> aiohttp.ClientTimeout:
    """aiohttp timeouts for one deployment (computed once, not per request).

    A non-streamed answer arrives whole after one silence, so its socket-read timeout,
    the time to first byte (capped by ``total``), bounds the whole exchange. A stream's
    socket-read timeout is the idle time between chunks (it also bounds the wait for the
    headers; ``first_byte`` applies on top when shorter), and :meth:`UpstreamResponse.
    iter_chunks` checks ``total`` between chunks. aiohttp's own ``total`` timer is not used:
    it cost more per request than all of the gateway's own logic.
    """
    return aiohttp.ClientTimeout(
        total=None,
        sock_connect=timeouts.connect,
        sock_read=timeouts.idle if stream else min(timeouts.first_byte, timeouts.total),
    )


async def open_response(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    deployment: Deployment,
    stream: bool,
) -> UpstreamResponse:
    """POST and return once the response headers arrived, within the deployment's timeouts."""
    t = deployment.timeouts
    started = time.monotonic()
    # Never follow redirects: a redirect to another host would carry the provider key.
    request = session.post(
        url, data=body, headers=headers, timeout=client_timeout(t, stream), allow_redirects=False
    )
    headers_within = min(t.first_byte, t.total)
    try:
        if stream and headers_within < t.idle:
            async with asyncio.timeout(headers_within):
                response = await request
        else:
            response = await request
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise map_transport_error(exc) from exc
    return UpstreamResponse(response, deadline=started + t.total)

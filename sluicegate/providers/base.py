"""What every provider offers the pipeline: send one prepared call, get a response.

A provider knows URLs, headers, auth and transport errors of one upstream family. It
never looks inside bodies beyond what the wire requires, and never imports translate/.
Transport failures are mapped here, once, to typed gateway errors (never by message text).
"""

from __future__ import annotations

import asyncio
import functools
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

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.headers

    @property
    def request_id(self) -> str | None:
        return self.headers.get("request-id") or self.headers.get("x-request-id")

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except BaseException as exc:
            raise map_transport_error(exc) from exc
        finally:
            self._response.release()

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Chunks as they arrive. Transport failures surface as typed gateway errors."""
        try:
            async for chunk in self._response.content.iter_any():
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

    A non-streamed answer arrives whole after one silence, so the socket-read timeout is
    the time to first byte. A stream's socket-read timeout is the idle time between chunks
    (which also bounds the wait for its headers; ``first_byte`` is applied on top when it
    is the shorter of the two).
    """
    return aiohttp.ClientTimeout(
        total=timeouts.total,
        sock_connect=timeouts.connect,
        sock_read=timeouts.idle if stream else timeouts.first_byte,
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
    # Never follow redirects: a redirect to another host would carry the provider key.
    request = session.post(
        url, data=body, headers=headers, timeout=client_timeout(t, stream), allow_redirects=False
    )
    try:
        if stream and t.first_byte < t.idle:
            async with asyncio.timeout(t.first_byte):
                response = await request
        else:
            response = await request
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise map_transport_error(exc) from exc
    return UpstreamResponse(response)

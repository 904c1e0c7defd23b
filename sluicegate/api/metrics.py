"""``GET /metrics``: Prometheus exposition, on the API port or a port of its own.

With ``metrics.auth: admin_token`` a scrape must carry the admin token (Bearer or
x-api-key, compared in constant time), as Prometheus' ``authorization`` scrape option sends
it. On its own port (``metrics.port``) every worker listens with SO_REUSEPORT: whichever
answers merges all workers' series (see :mod:`sluicegate.observe.metrics_export`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from sluicegate.api.admin.base import Gate
from sluicegate.api.asgi import JSON_CONTENT, Receive, Request, Send, request_id_header, send_bytes
from sluicegate.errors import GatewayError, render_anthropic
from sluicegate.observe.metrics_export import MetricsExporter

Handler = Callable[[Request, Receive, Send], Awaitable[None]]
# The classic text format: every Prometheus release and scraping agent reads it (our names
# need none of the newer format's escaping).
_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4.encode()


def metrics_handler(exporter: MetricsExporter, gate: Gate | None) -> Handler:
    """``gate``: the admin token check, or None when scrapes need no token."""

    async def handler(request: Request, receive: Receive, send: Send) -> None:
        if gate is not None:
            try:
                gate.check(request)
            except GatewayError as error:
                status, body, extra = render_anthropic(error)
                await send_bytes(send, status, body, [JSON_CONTENT, request_id_header(), *extra])
                return
        await send_bytes(send, 200, exporter.render(), [(b"content-type", _CONTENT_TYPE)])

    return handler


class MetricsServer:
    """``/metrics`` on a port apart from the API (so it can stay off the public listener)."""

    def __init__(
        self, exporter: MetricsExporter, gate: Gate | None, host: str, port: int, path: str
    ) -> None:
        self._exporter = exporter
        self._gate = gate
        self._host, self._port, self._path = host, port, path
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(self._path, self._scrape)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_port=True)
        await site.start()

    async def close(self) -> None:
        if self._runner is not None:
            await asyncio.wait_for(self._runner.cleanup(), timeout=5)

    async def _scrape(self, request: web.Request) -> web.Response:
        if self._gate is not None:
            try:
                self._gate.check(_HeaderView(request))
            except GatewayError as error:
                status, body, _ = render_anthropic(error)
                return web.Response(status=status, body=body, content_type="application/json")
        return web.Response(
            body=self._exporter.render(), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )


class _HeaderView:
    """What :class:`Gate` reads of a request (its headers), for an aiohttp request."""

    def __init__(self, request: web.Request) -> None:
        self._headers = request.headers

    def header(self, name: str) -> str | None:
        return self._headers.get(name)

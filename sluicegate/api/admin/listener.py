"""The admin API on a listener of its own (``admin.port``), in the gateway's process and
event loop, so it can stay off the public interface.

A second :class:`uvicorn.Server` serves a small router over the admin handlers, with the
gateway's HTTP protocol (the same limits on the request head) and no lifespan (the gateway
already started everything). Its socket is bound with SO_REUSEPORT, so each ``--workers``
process listens on the same port and the kernel spreads connections among them, as for
``metrics.port``. Signals stay with the main server: this one is stopped by the gateway's
shutdown, after the API port has drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator, Mapping

import uvicorn

from sluicegate.api.admin.base import Handler, send_error
from sluicegate.api.asgi import Receive, Request, Scope, Send
from sluicegate.api.http_protocol import GatewayHttpProtocol
from sluicegate.errors import GatewayError, MethodNotAllowed, NotFound

__all__ = ["AdminListener", "AdminRouter"]

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0


class AdminRouter:
    """ASGI app: the admin routes and nothing else (404 / 405 in Anthropic's shape)."""

    def __init__(self, routes: Mapping[tuple[str, str], Handler]) -> None:
        self._routes = dict(routes)
        self._paths = {path for _, path in self._routes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            path = path.rstrip("/")
        handler = self._routes.get((scope["method"], path))
        if handler is not None:
            await handler(Request(scope), receive, send)
            return
        error: GatewayError
        if path in self._paths:
            error = MethodNotAllowed("Method not allowed.")
        else:
            error = NotFound(f"No route for {path[:200]}.")
        await send_error(send, error)


class _EmbeddedServer(uvicorn.Server):
    """A server that leaves signal handling to the main one (it runs inside its loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"admin.port: cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class AdminListener:
    def __init__(
        self, routes: Mapping[tuple[str, str], Handler], host: str, port: int, grace: float
    ) -> None:
        self._app = AdminRouter(routes)
        self._host, self._port, self._grace = host, port, grace
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sock = _listening_socket(self._host, self._port)
        config = uvicorn.Config(
            self._app,
            http=GatewayHttpProtocol,
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=round(self._grace),
        )
        server = _EmbeddedServer(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        deadline = asyncio.get_running_loop().time() + _START_TIMEOUT
        while not server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("admin listener stopped while starting")
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError("admin listener did not start in time")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            try:
                await asyncio.wait_for(self._task, timeout=self._grace + _STOP_TIMEOUT)
            except TimeoutError:
                self._task.cancel()
        self._server = self._task = None

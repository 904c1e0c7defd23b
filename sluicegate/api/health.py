"""Unauthenticated health probes. They answer from memory: no database query per probe."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sluicegate.api.asgi import Receive, Request, Send, request_id_header, send_json

Handler = Callable[[Request, Receive, Send], Awaitable[None]]


def liveliness() -> Handler:
    async def handler(request: Request, receive: Receive, send: Send) -> None:
        await send_json(send, 200, {"status": "alive"}, [request_id_header()])

    return handler


def readiness(is_ready: Callable[[], tuple[bool, dict[str, str]]]) -> Handler:
    async def handler(request: Request, receive: Receive, send: Send) -> None:
        ready, checks = is_ready()
        await send_json(
            send,
            200 if ready else 503,
            {"status": "ready" if ready else "not ready", "checks": checks},
            [request_id_header()],
        )

    return handler

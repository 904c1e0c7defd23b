"""The fake provider's aiohttp app, its control API, ``FakeUpstream`` and the CLI entry."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from sluicegate.fake_upstream.behaviour import Behaviour
from sluicegate.fake_upstream.handlers import STATE_KEY, dispatch
from sluicegate.fake_upstream.state import FakeState, RecordedCall

# Large prompts (long contexts, images) must not hit aiohttp's 1 MiB default.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
# In-flight (e.g. stalled) streams get this long to finish when the fake stops.
SHUTDOWN_TIMEOUT = 0.5


def _control_error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


async def _control_script(request: web.Request) -> web.Response:
    try:
        data: Any = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return _control_error(f"body is not JSON: {exc}")
    items = data if isinstance(data, list) else [data]
    try:
        behaviours = [Behaviour.from_dict(item) for item in items]
    except (TypeError, ValueError) as exc:
        return _control_error(str(exc))
    state = request.app[STATE_KEY]
    state.script(behaviours)
    return web.json_response({"queued": len(behaviours), "pending": state.pending()})


async def _control_calls(request: web.Request) -> web.Response:
    route = request.query.get("route")
    calls = [c for c in request.app[STATE_KEY].calls() if route is None or c.route == route]
    body = {"count": len(calls), "calls": [c.summary() for c in calls]}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _control_reset(request: web.Request) -> web.Response:
    request.app[STATE_KEY].reset()
    return web.json_response({"ok": True})


def build_app(state: FakeState) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[STATE_KEY] = state
    app.router.add_post("/_fake/script", _control_script)
    app.router.add_get("/_fake/calls", _control_calls)
    app.router.add_post("/_fake/reset", _control_reset)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    return app


class FakeUpstream:
    """A scriptable Anthropic + OpenAI provider on a real socket (``port=0``: ephemeral)."""

    def __init__(self, api_key: str | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.state = FakeState(api_key)
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def api_key(self) -> str | None:
        return self.state.api_key

    @property
    def models(self) -> list[str]:
        """Model ids that ``GET /v1/models`` lists; mutable."""
        return self.state.models

    @property
    def url(self) -> str:
        if self._runner is None:
            raise RuntimeError("FakeUpstream is not started")
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Listen on the running loop; raises OSError when the port is busy."""
        if self._runner is not None:
            raise RuntimeError("FakeUpstream is already started")
        runner = web.AppRunner(build_app(self.state), shutdown_timeout=SHUTDOWN_TIMEOUT)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self.port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours; each request takes the first one that matches its route."""
        self.state.script(behaviours)

    def reset(self) -> None:
        """Forget the script and the recorded calls."""
        self.state.reset()

    @property
    def calls(self) -> list[RecordedCall]:
        return self.state.calls()

    def call_count(self, route: str | None = None) -> int:
        return sum(1 for c in self.state.calls() if route is None or c.route == route)

    def start_in_thread(self) -> None:
        """Run on a private loop in a daemon thread (for sync tests); returns once listening."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            # Handlers still stalled or streaming when the loop stopped: end them quietly.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        thread = threading.Thread(target=run, name="sluicegate-fake-upstream", daemon=True)
        thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        self._loop, self._thread = loop, thread

    def stop_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None


async def _serve(host: str, port: int, api_key: str | None) -> None:
    fake = FakeUpstream(api_key=api_key, host=host, port=port)
    await fake.start()
    print(f"fake upstream listening on {fake.url}", file=sys.stderr, flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Not on every platform / only in the main thread; Ctrl-C raises there anyway.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stopping.set)
    try:
        await stopping.wait()
    finally:
        await fake.stop()


def run_fake_upstream(host: str, port: int, api_key: str | None) -> None:
    """Serve until SIGINT/SIGTERM (blocking). A busy port raises OSError before serving."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(host, port, api_key))

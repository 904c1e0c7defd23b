"""Reference pass-through proxy: the bar a gateway is compared with in the benchmark.

Plain aiohttp on uvloop, one shared ClientSession: check a static client key, forward the
body to the upstream with the upstream key, relay status and body (streams chunk by chunk).

    python bench/reference_proxy.py --port 18002 --upstream http://127.0.0.1:18001 \
        --client-key sk-bench-client --upstream-key sk-bench-upstream
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp
import uvloop
from aiohttp import web

PASS_HEADERS = ("anthropic-version", "anthropic-beta", "content-type")


async def serve(args: argparse.Namespace) -> None:
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        auto_decompress=False, skip_auto_headers=("User-Agent", "Accept-Encoding"))
    url = args.upstream.rstrip("/") + "/v1/messages"

    async def messages(request: web.Request) -> web.StreamResponse:
        if request.headers.get("x-api-key") != args.client_key:
            return web.json_response({"type": "error", "error": {
                "type": "authentication_error", "message": "invalid x-api-key"}}, status=401)
        headers = {h: request.headers[h] for h in PASS_HEADERS if h in request.headers}
        headers["x-api-key"] = args.upstream_key
        body = await request.read()
        async with session.post(url, data=body, headers=headers) as upstream:
            ctype = upstream.headers.get("content-type", "application/json")
            if not ctype.startswith("text/event-stream"):
                return web.Response(status=upstream.status, body=await upstream.read(),
                                    headers={"content-type": ctype})
            resp = web.StreamResponse(status=upstream.status, headers={
                "content-type": ctype, "cache-control": "no-cache"})
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, args.host, args.port, backlog=4096).start()
    try:
        await asyncio.Event().wait()  # until SIGTERM/SIGINT cancels the main task
    finally:
        await runner.cleanup()
        await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18002)
    parser.add_argument("--upstream", default="http://127.0.0.1:18001")
    parser.add_argument("--client-key", default="sk-bench-client")
    parser.add_argument("--upstream-key", default="sk-bench-upstream")
    uvloop.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()

"""A bug inside the gateway still answers in the wire contract: an Anthropic-shaped 500
before any byte went out, an SSE error event once a stream started."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from sluicegate.api.asgi import Request
from sluicegate.api.relay import relay_stream
from sluicegate.delivery.setup import build_deliverer
from sluicegate.observe.hub import Observability
from sluicegate.observe.logging import RequestLog
from sluicegate.pipeline import Pipeline
from sluicegate.policy.auth import KeyCache
from sluicegate.policy.key_admin import create_key
from sluicegate.policy.setup import build_governor
from sluicegate.providers.base import UpstreamCall
from sluicegate.routing.router import Router
from sluicegate.settings import Timeouts, settings_from_mapping
from sluicegate.state.memory import MemoryBackend
from sluicegate.store.db import create_engine
from sluicegate.store.keys import KeyStore
from sluicegate.store.migrate import upgrade
from sluicegate.store.partners import PartnerStore

BODY = b'{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'


class BrokenProvider:
    async def send(self, call: UpstreamCall) -> Any:
        raise RuntimeError("simulated bug")


async def test_bug_before_any_byte_is_an_anthropic_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path}/t.db"
    await upgrade(url)
    engine = create_engine(url)
    try:
        store = KeyStore(engine)
        _, key = await create_key(store, b"pepper", name="t")
        keys = KeyCache(store, b"pepper", 60, PartnerStore(engine))
        await keys.reload()
        settings = settings_from_mapping(
            {
                "model_list": [
                    {"model_name": "m", "provider": "anthropic", "api_base": "http://127.0.0.1:9"}
                ]
            }
        )
        router = Router(settings.model_list, Timeouts())
        pipeline = Pipeline(
            keys,
            router,
            {"anthropic": BrokenProvider()},
            1 << 20,
            RequestLog(False),
            build_governor(settings, MemoryBackend()),
            None,
            build_deliverer(settings, router),
            Observability(settings),
        )
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/messages",
            "query_string": b"",
            "headers": [(b"x-api-key", key.encode())],
            "client": ("127.0.0.1", 1),
        }
        sent: list[dict[str, Any]] = []
        inbox = [{"type": "http.request", "body": BODY, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if inbox:
                return inbox.pop(0)
            await asyncio.sleep(3600)
            return {}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        with caplog.at_level(logging.ERROR):
            await pipeline.messages(Request(scope), receive, send)  # type: ignore[arg-type]
    finally:
        await engine.dispose()
    assert sent[0]["status"] == 500
    assert orjson.loads(sent[1]["body"]) == {
        "type": "error",
        "error": {
            "type": "api_error",
            "message": "The gateway failed to handle this request; see its log.",
        },
    }
    assert "simulated bug" in caplog.text  # the operator gets the traceback


class BrokenStream:
    def __init__(self) -> None:
        self.status = 200
        self.headers: dict[str, str] = {}
        self.closed = False

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        yield b'event: message_start\ndata: {"type":"message_start","message":{"id":"m"}}\n\n'
        raise RuntimeError("simulated bug mid-stream")

    def at_eof(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


async def test_bug_mid_stream_ends_with_an_error_event() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    upstream = BrokenStream()
    observation = await relay_stream(send, upstream, [])  # type: ignore[arg-type]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert body.startswith(b"event: message_start")
    assert body.endswith(b"\n\n") and b"event: error\ndata: " in body
    assert sent[-1]["more_body"] is False
    assert observation.error_type == "api_error" and upstream.closed

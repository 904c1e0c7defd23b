"""Exchanges where the client's wire format differs from the upstream's.

The translators in ``translate/`` are pure; this module does the I/O around them: it builds
the upstream body, then turns the upstream's answer, JSON or stream, into the client's
format. Upstream errors are translated into the client's error shape with their status.
Once the first byte went out, failures (cut, timeout, upstream error event) are reported
inside the translated stream, and the stream always ends the way its format requires.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Generic, Protocol, TypeVar

import orjson

from sluicegate.api.anthropic import ParsedRequest
from sluicegate.api.asgi import SSE_HEADERS, HeaderList, Send, send_bytes
from sluicegate.api.json_body import dumps_forwarded
from sluicegate.api.openai import include_usage
from sluicegate.api.relay import (
    SHUTDOWN_ERROR_TYPE,
    SHUTTING_DOWN,
    end_cancelled_stream,
    last_body,
)
from sluicegate.api.sse import SSEDecoder, Usage
from sluicegate.api.sse_openai import usage_from_openai
from sluicegate.errors import GatewayError, InvalidRequest, UpstreamUnavailable
from sluicegate.lifecycle import draining
from sluicegate.providers.base import UpstreamResponse
from sluicegate.record import RequestRecord
from sluicegate.routing.router import Route
from sluicegate.translate.a2o_request import anthropic_to_openai_request
from sluicegate.translate.a2o_response import anthropic_to_openai_response
from sluicegate.translate.error_shapes import anthropic_error_to_openai, openai_error_to_anthropic
from sluicegate.translate.errors import TranslationError
from sluicegate.translate.o2a_request import openai_to_anthropic_request, required_betas
from sluicegate.translate.o2a_response import UpstreamFormatError, openai_to_anthropic_response
from sluicegate.translate.stream_a2o import AnthropicToOpenAIStream
from sluicegate.translate.stream_o2a import OpenAIToAnthropicStream

JSON = (b"content-type", b"application/json")
BAD_UPSTREAM_JSON = "The upstream answered with a body that is not valid JSON."


class Translation(Protocol):
    def request(self, parsed: ParsedRequest, route: Route) -> tuple[bytes, dict[str, str]]:
        """The upstream body and any headers the translated body needs."""
        ...

    async def deliver(
        self,
        send: Send,
        upstream: UpstreamResponse,
        headers: HeaderList,
        record: RequestRecord,
        parsed: ParsedRequest,
    ) -> None:
        """Send the upstream's answer to the client in the client's format."""
        ...


def translation_for(surface: str, provider: str, endpoint: str) -> Translation | None:
    """None when the client and the upstream speak the same format (pass-through)."""
    if surface == provider or endpoint == "count_tokens":
        return None
    if surface == "openai":
        return OPENAI_CLIENT_ANTHROPIC_UPSTREAM
    return ANTHROPIC_CLIENT_OPENAI_UPSTREAM


def _translated(build: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return build(*args, **kwargs)
    except TranslationError as exc:
        raise InvalidRequest(exc.message, param=exc.param) from None


async def _read_json(upstream: UpstreamResponse) -> tuple[bytes, dict[str, Any] | None]:
    body = await upstream.read()
    if upstream.status >= 300:
        return body, None
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UpstreamUnavailable(BAD_UPSTREAM_JSON) from None
    if not isinstance(payload, dict):
        raise UpstreamUnavailable(BAD_UPSTREAM_JSON)
    return body, payload


async def _start_stream(send: Send, headers: HeaderList) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEADERS, *headers]})


class _StreamMachine(Protocol):
    def finish(self) -> list[bytes]: ...

    def fail(self, error_type: str, message: str) -> list[bytes]: ...


M = TypeVar("M", bound=_StreamMachine)


class _TranslatedExchange(Generic[M]):
    """The I/O both directions share; subclasses supply the direction's translators."""

    # How the stream machine's in-stream error output starts (to log a reported cut).
    error_marker: bytes = b""

    def upstream_error(self, status: int, body: bytes) -> bytes:
        raise NotImplementedError

    def answer(
        self, payload: dict[str, Any], parsed: ParsedRequest, record: RequestRecord
    ) -> bytes:
        raise NotImplementedError

    def machine(self, parsed: ParsedRequest) -> M:
        raise NotImplementedError

    def step(
        self, machine: M, name: str, event: dict[str, Any], record: RequestRecord
    ) -> list[bytes]:
        raise NotImplementedError

    async def deliver(
        self,
        send: Send,
        upstream: UpstreamResponse,
        headers: HeaderList,
        record: RequestRecord,
        parsed: ParsedRequest,
    ) -> None:
        if not parsed.stream or upstream.status >= 300:
            body, payload = await _read_json(upstream)
            if payload is None:
                status, answer = upstream.status, self.upstream_error(upstream.status, body)
            else:
                status, answer = 200, self.answer(payload, parsed, record)
            record.committed = True
            await send_bytes(send, status, answer, [JSON, *headers])
            return
        await self._stream(send, upstream, headers, record, self.machine(parsed))

    async def _stream(
        self,
        send: Send,
        upstream: UpstreamResponse,
        headers: HeaderList,
        record: RequestRecord,
        machine: M,
    ) -> None:
        record.committed = True
        await _start_stream(send, headers)
        decoder = SSEDecoder()
        try:
            async for chunk in upstream.iter_chunks():
                out: list[bytes] = []
                for name, data in decoder.feed(chunk):
                    event = _json_object(data)  # also skips OpenAI's closing "[DONE]"
                    if event is not None:
                        out.extend(self.step(machine, name, event, record))
                if out:
                    await send(
                        {"type": "http.response.body", "body": b"".join(out), "more_body": True}
                    )
            tail = machine.finish()
            if any(part.startswith(self.error_marker) for part in tail):  # a cut, reported
                record.error_type = record.error_type or "api_error"
        except GatewayError as error:
            upstream.close()
            record.error_type = error.error_type
            tail = machine.fail(error.error_type, error.message)
        except asyncio.CancelledError:
            upstream.close()
            if draining():  # cut at the drain deadline: say so in the client's format
                tail = machine.fail(SHUTDOWN_ERROR_TYPE, SHUTTING_DOWN)
                if tail:  # empty when the message had already ended
                    record.error_type = SHUTDOWN_ERROR_TYPE
                await end_cancelled_stream(send, b"".join(tail))
            raise
        await send(last_body(b"".join(tail)))


class _OpenAIClientAnthropicUpstream(_TranslatedExchange[AnthropicToOpenAIStream]):
    """An OpenAI Chat Completions client served by an Anthropic upstream."""

    error_marker = b'data: {"error"'

    def request(self, parsed: ParsedRequest, route: Route) -> tuple[bytes, dict[str, str]]:
        body: dict[str, Any] = _translated(
            openai_to_anthropic_request,
            parsed.payload,
            upstream_model=route.upstream_model,
            default_max_tokens=route.deployment.default_max_tokens,
        )
        betas = required_betas(body)
        # dumps_forwarded: tool call arguments are JSON in strings, parsed here, so they
        # escape the body's depth limit.
        return dumps_forwarded(body), {"anthropic-beta": ",".join(betas)} if betas else {}

    def upstream_error(self, status: int, body: bytes) -> bytes:
        return anthropic_error_to_openai(status, body)

    def answer(
        self, payload: dict[str, Any], parsed: ParsedRequest, record: RequestRecord
    ) -> bytes:
        record.usage = Usage()
        record.usage.update(payload.get("usage"))
        created = int(time.time())
        return orjson.dumps(
            anthropic_to_openai_response(payload, model=parsed.model, created=created)
        )

    def machine(self, parsed: ParsedRequest) -> AnthropicToOpenAIStream:
        return AnthropicToOpenAIStream(
            model=parsed.model,
            created=int(time.time()),
            include_usage=include_usage(parsed.payload),
        )

    def step(
        self,
        machine: AnthropicToOpenAIStream,
        name: str,
        event: dict[str, Any],
        record: RequestRecord,
    ) -> list[bytes]:
        if name in ("message_start", "message_delta"):
            if record.usage is None:
                record.usage = Usage()
            record.usage.update((event.get("message") or event).get("usage"))
        elif name == "error":
            record.error_type = _error_type(event)
        elif name == "content_block_delta" and record.first_token_at is None:
            record.first_token_at = time.perf_counter()
        return machine.feed(name, event)


class _AnthropicClientOpenAIUpstream(_TranslatedExchange[OpenAIToAnthropicStream]):
    """An Anthropic Messages client (SDK, Claude Code) served by an OpenAI(-compatible) upstream."""

    error_marker = b"event: error"

    def request(self, parsed: ParsedRequest, route: Route) -> tuple[bytes, dict[str, str]]:
        body: dict[str, Any] = _translated(
            anthropic_to_openai_request,
            parsed.payload,
            upstream_model=route.upstream_model,
            quirks=route.deployment.quirks,
        )
        return dumps_forwarded(body), {}

    def upstream_error(self, status: int, body: bytes) -> bytes:
        return openai_error_to_anthropic(status, body)

    def answer(
        self, payload: dict[str, Any], parsed: ParsedRequest, record: RequestRecord
    ) -> bytes:
        if isinstance(payload.get("usage"), dict):
            record.usage = usage_from_openai(payload["usage"])
        try:
            translated = openai_to_anthropic_response(payload, model=parsed.model)
        except UpstreamFormatError as exc:  # a completion we cannot read: upstream's fault
            raise UpstreamUnavailable(str(exc)) from None
        return orjson.dumps(translated)

    def machine(self, parsed: ParsedRequest) -> OpenAIToAnthropicStream:
        return OpenAIToAnthropicStream(model=parsed.model)

    def step(
        self,
        machine: OpenAIToAnthropicStream,
        name: str,
        event: dict[str, Any],
        record: RequestRecord,
    ) -> list[bytes]:
        if isinstance(event.get("usage"), dict):
            record.usage = usage_from_openai(event["usage"])
        if "error" in event:
            record.error_type = _error_type(event)
        if record.first_token_at is None and event.get("choices"):
            record.first_token_at = time.perf_counter()
        return machine.feed(event)


def _error_type(event: dict[str, Any]) -> str:
    error = event.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else "api_error"


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


OPENAI_CLIENT_ANTHROPIC_UPSTREAM = _OpenAIClientAnthropicUpstream()
ANTHROPIC_CLIENT_OPENAI_UPSTREAM = _AnthropicClientOpenAIUpstream()

"""Exchanges where the client's wire format differs from the upstream's.

The translators in ``translate/`` are pure; this module does the I/O around them: it builds
the upstream body, then turns the upstream's answer, JSON or stream, into the client's
format. Upstream errors are translated into the client's error shape with their status.
Once the first byte went out, failures (cut, timeout, upstream error event) are reported
inside the translated stream, and the stream always ends the way its format requires.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson

from sluicegate.api.anthropic import ParsedRequest
from sluicegate.api.asgi import SSE_HEADERS, HeaderList, Send, send_bytes
from sluicegate.api.openai import include_usage
from sluicegate.api.relay import last_body
from sluicegate.api.sse import SSEDecoder, Usage
from sluicegate.api.sse_openai import usage_from_openai
from sluicegate.errors import GatewayError, InvalidRequest, UpstreamUnavailable
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


class _OpenAIClientAnthropicUpstream:
    """An OpenAI Chat Completions client served by an Anthropic upstream."""

    def request(self, parsed: ParsedRequest, route: Route) -> tuple[bytes, dict[str, str]]:
        body: dict[str, Any] = _translated(
            openai_to_anthropic_request,
            parsed.payload,
            upstream_model=route.upstream_model,
            default_max_tokens=route.deployment.default_max_tokens,
        )
        betas = required_betas(body)
        return orjson.dumps(body), {"anthropic-beta": ",".join(betas)} if betas else {}

    async def deliver(
        self,
        send: Send,
        upstream: UpstreamResponse,
        headers: HeaderList,
        record: RequestRecord,
        parsed: ParsedRequest,
    ) -> None:
        if not parsed.stream or upstream.status >= 300:
            body, message = await _read_json(upstream)
            if message is None:
                answer = anthropic_error_to_openai(upstream.status, body)
                record.committed = True
                await send_bytes(send, upstream.status, answer, [JSON, *headers])
                return
            record.usage = Usage()
            record.usage.update(message.get("usage"))
            answer = orjson.dumps(
                anthropic_to_openai_response(message, model=parsed.model, created=int(time.time()))
            )
            record.committed = True
            await send_bytes(send, 200, answer, [JSON, *headers])
            return
        machine = AnthropicToOpenAIStream(
            model=parsed.model,
            created=int(time.time()),
            include_usage=include_usage(parsed.payload),
        )
        record.committed = True
        await _start_stream(send, headers)
        decoder, usage = SSEDecoder(), Usage()
        record.usage = usage
        try:
            async for chunk in upstream.iter_chunks():
                out: list[bytes] = []
                for name, data in decoder.feed(chunk):
                    event = _json_object(data)
                    if event is None:
                        continue
                    if name in ("message_start", "message_delta"):
                        usage.update((event.get("message") or event).get("usage"))
                    elif name == "error":
                        record.error_type = _error_type(event)
                    elif name == "content_block_delta" and record.first_token_at is None:
                        record.first_token_at = time.perf_counter()
                    out.extend(machine.feed(name, event))
                if out:
                    await send(
                        {"type": "http.response.body", "body": b"".join(out), "more_body": True}
                    )
            tail = machine.finish()
            if any(part.startswith(b'data: {"error"') for part in tail):  # a cut, reported
                record.error_type = record.error_type or "api_error"
        except GatewayError as error:
            upstream.close()
            record.error_type = error.error_type
            tail = machine.fail(error.error_type, error.message)
        await send(last_body(b"".join(tail)))


class _AnthropicClientOpenAIUpstream:
    """An Anthropic Messages client (SDK, Claude Code) served by an OpenAI(-compatible) upstream."""

    def request(self, parsed: ParsedRequest, route: Route) -> tuple[bytes, dict[str, str]]:
        body: dict[str, Any] = _translated(
            anthropic_to_openai_request,
            parsed.payload,
            upstream_model=route.upstream_model,
            quirks=route.deployment.quirks,
        )
        return orjson.dumps(body), {}

    async def deliver(
        self,
        send: Send,
        upstream: UpstreamResponse,
        headers: HeaderList,
        record: RequestRecord,
        parsed: ParsedRequest,
    ) -> None:
        if not parsed.stream or upstream.status >= 300:
            body, completion = await _read_json(upstream)
            if completion is None:
                answer = openai_error_to_anthropic(upstream.status, body)
                record.committed = True
                await send_bytes(send, upstream.status, answer, [JSON, *headers])
                return
            if isinstance(completion.get("usage"), dict):
                record.usage = usage_from_openai(completion["usage"])
            try:
                translated = openai_to_anthropic_response(completion, model=parsed.model)
            except UpstreamFormatError as exc:  # a completion we cannot read: upstream's fault
                raise UpstreamUnavailable(str(exc)) from None
            answer = orjson.dumps(translated)
            record.committed = True
            await send_bytes(send, 200, answer, [JSON, *headers])
            return
        machine = OpenAIToAnthropicStream(model=parsed.model)
        record.committed = True
        await _start_stream(send, headers)
        decoder = SSEDecoder()
        try:
            async for chunk in upstream.iter_chunks():
                out: list[bytes] = []
                for _, data in decoder.feed(chunk):
                    if data == b"[DONE]":
                        continue
                    event = _json_object(data)
                    if event is None:
                        continue
                    if isinstance(event.get("usage"), dict):
                        record.usage = usage_from_openai(event["usage"])
                    if "error" in event:
                        record.error_type = _error_type(event)
                    if record.first_token_at is None and event.get("choices"):
                        record.first_token_at = time.perf_counter()
                    out.extend(machine.feed(event))
                if out:
                    await send(
                        {"type": "http.response.body", "body": b"".join(out), "more_body": True}
                    )
            tail = machine.finish()
            if any(part.startswith(b"event: error") for part in tail):  # a cut, reported
                record.error_type = record.error_type or "api_error"
        except GatewayError as error:
            upstream.close()
            record.error_type = error.error_type
            tail = machine.fail(error.error_type, error.message)
        await send(last_body(b"".join(tail)))


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

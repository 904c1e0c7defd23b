"""Anthropic SSE events -> OpenAI ``chat.completion.chunk`` stream, one machine per request.

Shape of the output, as OpenAI streams it:

* a first chunk ``delta: {"role": "assistant", "content": ""}``;
* ``content`` deltas for text, ``reasoning_content`` deltas for thinking, ``tool_calls``
  deltas keyed by the OpenAI tool index (0, 1, ... over tool calls only; never the
  Anthropic content-block index): the opening one carries id, type, name and
  ``arguments: ""``, the following ones argument fragments;
* on ``message_stop``: one chunk with ``delta: {}`` and the finish_reason, then, when the
  client asked ``stream_options.include_usage``, a usage chunk with ``choices: []``
  (every earlier chunk then carries ``"usage": null``, as OpenAI's do), then
  ``data: [DONE]``. :meth:`finish` has nothing left to send after that.

A failure (an upstream ``error`` event, a stream cut before ``message_stop``, or
:meth:`fail` from the gateway) ends the stream with ``data: {"error": {...}}`` and **no**
``[DONE]``: the openai SDK raises ``APIError`` on that chunk, and a client that ignores
the error key still sees a stream without its ``[DONE]`` terminator, never a clean end.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluicegate.translate.a2o_response import (
    completion_id,
    finish_reason,
    openai_usage,
    refusal_text,
)
from sluicegate.translate.error_shapes import (
    as_openai_type,
    openai_error_object,
    openai_type_and_code,
)

DONE = b"data: [DONE]\n\n"


class AnthropicToOpenAIStream:
    """Per-request state machine: Anthropic SSE events in, OpenAI chunk bytes out."""

    def __init__(self, *, model: str, created: int, include_usage: bool) -> None:
        self.model = model
        self.created = created
        self.include_usage = include_usage
        self._id = completion_id(None)  # replaced by message_start's id
        self._started = False  # the role chunk has been sent
        self._done = False  # a terminal chunk ([DONE] or an error) has been sent
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool index
        self._silent_tools: set[int] = set()  # tool blocks that streamed no arguments yet
        self._usage: dict[str, Any] = {}  # Anthropic usage, merged as it arrives
        self._stop_reason: str | None = None
        self._refusal: str | None = None

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: str, data: dict[str, Any]) -> list[bytes]:
        """One parsed upstream event -> zero or more encoded ``data: ...`` chunks."""
        if self._done:
            return []
        kind = event or str(data.get("type", ""))
        if kind == "message_start":
            return self._message_start(data.get("message") or {})
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "content_block_stop":
            return self._block_stop(data)
        if kind == "message_delta":
            self._message_delta(data)
            return []
        if kind == "message_stop":
            return self._message_stop()
        if kind == "error":
            return self._upstream_error(data.get("error"))
        return []  # ping and unknown events carry nothing for OpenAI

    def finish(self) -> list[bytes]:
        """The upstream ended. After ``message_stop`` all was sent; otherwise it was cut."""
        if self._done:
            return []
        return self._error("The upstream stream ended before the response was complete.")

    def fail(self, error_type: str, message: str, *, code: str | None = None) -> list[bytes]:
        """The gateway detected a failure mid-stream: an error chunk, then the end.

        ``error_type`` may be the gateway's Anthropic-side type (``timeout_error`` becomes
        OpenAI's ``timeout``, ``api_error`` ``server_error``...) or an OpenAI type (kept).
        """
        if self._done:
            return []
        type_, mapped_code = as_openai_type(error_type)
        return self._error(message, type_, code or mapped_code)

    # --- events ----------------------------------------------------------------------

    def _message_start(self, message: dict[str, Any]) -> list[bytes]:
        self._id = completion_id(message.get("id"))
        self._merge_usage(message.get("usage"))
        return self._start()

    def _block_start(self, data: dict[str, Any]) -> list[bytes]:
        block = data.get("content_block") or {}
        kind = block.get("type")
        if kind == "tool_use":
            index = len(self._tool_index)
            self._tool_index[_int(data.get("index"))] = index
            self._silent_tools.add(_int(data.get("index")))
            call = {
                "index": index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return self._delta({"tool_calls": [call]})
        # Text and thinking blocks normally open empty; any opening text is still sent.
        if kind == "text" and block.get("text"):
            return self._delta({"content": block["text"]})
        if kind == "thinking" and block.get("thinking"):
            return self._delta({"reasoning_content": block["thinking"]})
        return self._start()

    def _block_delta(self, data: dict[str, Any]) -> list[bytes]:
        delta = data.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return self._delta({"content": delta["text"]})
        if kind == "thinking_delta" and delta.get("thinking"):
            return self._delta({"reasoning_content": delta["thinking"]})
        if kind == "input_json_delta" and delta.get("partial_json"):
            index = self._tool_index.get(_int(data.get("index")))
            if index is not None:
                self._silent_tools.discard(_int(data.get("index")))
                fragment = {"index": index, "function": {"arguments": delta["partial_json"]}}
                return self._delta({"tool_calls": [fragment]})
        # signature_delta and citations_delta have no OpenAI field; empty deltas say nothing.
        return []

    def _block_stop(self, data: dict[str, Any]) -> list[bytes]:
        # A call without parameters streams no fragment (only an empty partial_json), but
        # its arguments must still parse: OpenAI clients json.loads them. Send "{}".
        block = _int(data.get("index"))
        if block not in self._silent_tools:
            return []
        self._silent_tools.discard(block)
        fragment = {"index": self._tool_index[block], "function": {"arguments": "{}"}}
        return self._delta({"tool_calls": [fragment]})

    def _message_delta(self, data: dict[str, Any]) -> None:
        delta = data.get("delta") or {}
        if isinstance(delta.get("stop_reason"), str):
            self._stop_reason = delta["stop_reason"]
        self._refusal = refusal_text(delta.get("stop_details")) or self._refusal
        self._merge_usage(data.get("usage"))

    def _message_stop(self) -> list[bytes]:
        out = self._start()
        if self._refusal is not None:
            out += self._delta({"refusal": self._refusal})
        out.append(self._chunk({}, finish_reason(self._stop_reason)))
        if self.include_usage:
            out.append(self._encode(self._envelope([], openai_usage(self._usage))))
        out.append(DONE)
        self._done = True
        return out

    def _upstream_error(self, error: Any) -> list[bytes]:
        error = error if isinstance(error, dict) else {}
        # A mid-stream error has no HTTP status of its own; unknown types count as 500.
        type_, code = openai_type_and_code(error.get("type"), 500)
        message = error.get("message") or "The upstream stream reported an error."
        return self._error(message, type_, code)

    # --- output ----------------------------------------------------------------------

    def _merge_usage(self, usage: Any) -> None:
        # message_delta counts are cumulative, so a later value replaces an earlier one.
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})

    def _start(self) -> list[bytes]:
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _delta(self, delta: dict[str, Any]) -> list[bytes]:
        return [*self._start(), self._chunk(delta)]

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return self._encode(self._envelope([choice], None))

    def _envelope(self, choices: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }
        if self.include_usage:
            chunk["usage"] = usage
        return chunk

    def _error(self, message: str, type_: str = "server_error", code: Any = None) -> list[bytes]:
        self._done = True
        code = code if isinstance(code, str) else None
        return [self._encode({"error": openai_error_object(message, type_, code=code)})]

    @staticmethod
    def _encode(payload: dict[str, Any]) -> bytes:
        return b"data: " + orjson.dumps(payload) + b"\n\n"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1

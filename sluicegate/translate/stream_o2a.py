"""OpenAI chat.completion.chunk stream -> Anthropic SSE events (Anthropic client).

One :class:`OpenAIToAnthropicStream` per request. Anthropic content blocks are strictly
sequential (start, deltas, stop; indexes 0, 1, 2 ...), OpenAI deltas are not: reasoning,
text and tool calls arrive as fields of one delta, and a few servers interleave the argument
fragments of parallel tool calls. The machine keeps one block open and:

* reasoning -> a ``thinking`` block (``thinking_delta``; a ``signature_delta`` with an empty
  signature before its stop, as Anthropic orders them; see ``o2a_response.thinking_block``);
* content and refusal text -> a ``text`` block;
* a tool call (keyed by its OpenAI ``index``) -> a ``tool_use`` block once its name is known,
  arguments as ``input_json_delta`` fragments (empty fragments skipped). A second tool call
  starts when the open one's arguments form complete JSON (OpenAI's sequential order costs
  one parse per switch); until then its fragments are buffered, and sent as one delta when
  its block starts. Text arriving mid tool calls closes them all first.

``message_delta`` (stop reason, usage) and ``message_stop`` wait for :meth:`finish`, because
with ``include_usage`` the usage chunk comes after the finish_reason chunk. A stream that ends
without a finish_reason was cut: it ends with an ``error`` event, never as a success.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

from sluicegate.translate.error_shapes import openai_error_to_anthropic
from sluicegate.translate.o2a_response import (
    anthropic_usage,
    message_id,
    reasoning_text,
    stop_reason_for,
    tool_id_fallback,
)

_Kind = Literal["text", "thinking", "tool"]
_CUT = "The upstream stream ended before the response was complete."


@dataclass(slots=True)
class _ToolCall:
    key: int  # creation order; the OpenAI index may be reused by buggy servers
    id: str | None = None
    name: str | None = None
    arguments: str = ""  # every fragment received, for the completeness check
    unsent: str = ""  # fragments received before the block could start
    closed: bool = False


class _Fault(Exception):
    """The upstream stream cannot be translated further; becomes an ``error`` event."""


class OpenAIToAnthropicStream:
    """Per-request state machine: OpenAI chunks in, Anthropic SSE event bytes out."""

    def __init__(self, *, model: str) -> None:
        self._model: str = model
        self._started: bool = False  # message_start sent
        self._message_id: str = ""  # from the first chunk's id
        self._next_block: int = 0  # index of the next content block
        self._open_kind: _Kind | None = None
        self._open_tool: _ToolCall | None = None  # set when the open block is a tool_use
        self._by_index: dict[int, _ToolCall] = {}  # OpenAI index -> its latest tool call
        self._tool_count: int = 0
        self._pending: list[_ToolCall] = []  # seen, waiting for their block to start
        self._finish_reason: str | None = None
        self._matched_stop: Any = None  # vLLM's stop_reason: the stop string that matched
        self._refused: bool = False
        self._usage: dict[str, Any] | None = None  # the last usage object seen (cumulative)
        self._done: bool = False
        self._error_type: str | None = None

    @property
    def done(self) -> bool:
        """True once the stream ended (message_stop or error); later calls return nothing."""
        return self._done

    @property
    def error_type(self) -> str | None:
        """The Anthropic error type the stream ended with, if it ended with one."""
        return self._error_type

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        """One parsed upstream ``data:`` chunk -> encoded Anthropic events."""
        if self._done:
            return []
        if chunk.get("error") is not None:
            return self._upstream_error(chunk)
        out: list[bytes] = []
        if not self._started:
            out.append(self._message_start(chunk))
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        try:
            for choice in choices if isinstance(choices, list) else []:
                if isinstance(choice, dict) and choice.get("index", 0) == 0:
                    self._choice(choice, out)
        except _Fault as fault:
            out.append(self._error("api_error", str(fault)))
        return out

    def finish(self) -> list[bytes]:
        """The upstream ended ([DONE] or end of body): close the message, or report a cut."""
        if self._done:
            return []
        if self._finish_reason is None:
            return [self._error("api_error", _CUT)]
        out: list[bytes] = []
        try:
            self._close_all(out)
        except _Fault as fault:
            return [*out, self._error("api_error", str(fault))]
        stop_reason, stop_sequence = stop_reason_for(
            self._finish_reason,
            tool_calls=self._tool_count > 0,
            refusal=self._refused,
            matched_stop=self._matched_stop,
        )
        delta = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
        usage = anthropic_usage(self._usage)
        out.append(
            _event(b"message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        )
        out.append(_event(b"message_stop", {"type": "message_stop"}))
        self._done = True
        return out

    def fail(self, error_type: str, message: str) -> list[bytes]:
        """A failure the gateway detected mid-stream (timeout, cut) -> an ``error`` event."""
        if self._done:
            return []
        return [self._error(error_type, message)]

    # --- chunk contents -------------------------------------------------------------------

    def _message_start(self, chunk: dict[str, Any]) -> bytes:
        self._started = True
        self._message_id = message_id(chunk.get("id"))
        message: dict[str, Any] = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            # Usually 0 here: OpenAI reports usage at the end; message_delta carries it all.
            "usage": anthropic_usage(chunk.get("usage")),
        }
        return _event(b"message_start", {"type": "message_start", "message": message})

    def _choice(self, choice: dict[str, Any], out: list[bytes]) -> None:
        delta = choice.get("delta")
        if isinstance(delta, dict):
            # Within one delta, reasoning precedes the text it led to, and tool calls follow.
            reasoning = reasoning_text(delta)
            if reasoning:
                self._append("thinking", reasoning, out)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._append("text", content, out)
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._refused = True
                self._append("text", refusal, out)
            calls = delta.get("tool_calls")
            for call in calls if isinstance(calls, list) else []:
                if isinstance(call, dict):
                    self._tool_fragment(call, out)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish and self._finish_reason is None:
            self._finish_reason = finish
            self._matched_stop = choice.get("stop_reason")

    def _append(self, kind: _Kind, text: str, out: list[bytes]) -> None:
        if self._open_kind != kind:
            self._close_all(out)
            empty: dict[str, Any] = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": "", "signature": ""}
            )
            self._start(kind, empty, out)
        field = "text" if kind == "text" else "thinking"
        self._delta({"type": f"{field}_delta", field: text}, out)

    def _tool_fragment(self, call: dict[str, Any], out: list[bytes]) -> None:
        tool = self._tool_for(call)
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        # Some servers repeat id and name in every fragment: the first ones win.
        if tool.id is None and isinstance(call.get("id"), str) and call["id"]:
            tool.id = call["id"]
        if tool.name is None and isinstance(function.get("name"), str) and function["name"]:
            tool.name = function["name"]
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # a server that sends the object, not its JSON
            arguments = orjson.dumps(arguments).decode()
        fragment = arguments if isinstance(arguments, str) else ""
        if tool.closed:
            if fragment.strip():
                raise _Fault("The upstream sent tool-call arguments after the call was complete.")
            return
        tool.arguments += fragment
        if tool is self._open_tool:
            if fragment:
                self._delta({"type": "input_json_delta", "partial_json": fragment}, out)
        else:
            tool.unsent += fragment
            if tool not in self._pending:
                self._pending.append(tool)
        self._advance(out)

    def _tool_for(self, call: dict[str, Any]) -> _ToolCall:
        """The tool call a fragment belongs to: by OpenAI index; a new id at a known index is
        a new call (servers that number every call 0); no index: by id, else the latest."""
        index, call_id = call.get("index"), call.get("id")
        if not isinstance(index, int) or isinstance(index, bool):
            known = [i for i, t in self._by_index.items() if call_id and t.id == call_id]
            if known:
                index = known[0]
            elif call_id or not self._by_index:
                index = max(self._by_index, default=-1) + 1
            else:
                index = max(self._by_index)
        tool = self._by_index.get(index)
        if tool is None or (
            isinstance(call_id, str) and call_id and tool.id not in (None, call_id)
        ):
            tool = _ToolCall(key=self._tool_count)
            self._tool_count += 1
            self._by_index[index] = tool
        return tool

    # --- blocks ---------------------------------------------------------------------------

    def _advance(self, out: list[bytes]) -> None:
        """Start waiting tool calls in order, as far as the open tool call is complete."""
        while self._pending:
            head = self._pending[0]
            if head.name is None:
                return
            if self._open_tool is not None and not _complete_json(self._open_tool.arguments):
                return
            self._close_open(out)
            self._pending.pop(0)
            self._start_tool(head, out)

    def _close_all(self, out: list[bytes]) -> None:
        """Close the open block and emit every waiting tool call whole (text follows them,
        or the message ends)."""
        self._close_open(out)
        for tool in self._pending:
            if tool.name is None:
                raise _Fault("The upstream sent a tool call without a function name.")
            self._start_tool(tool, out)
            self._close_open(out)
        self._pending.clear()

    def _start_tool(self, tool: _ToolCall, out: list[bytes]) -> None:
        block: dict[str, Any] = {
            "type": "tool_use",
            "id": tool.id or tool_id_fallback(self._message_id.removeprefix("msg_"), tool.key),
            "name": tool.name,
            "input": {},
        }
        self._start("tool", block, out)
        self._open_tool = tool
        if tool.unsent:
            self._delta({"type": "input_json_delta", "partial_json": tool.unsent}, out)
            tool.unsent = ""

    def _start(self, kind: _Kind, block: dict[str, Any], out: list[bytes]) -> None:
        event = {"type": "content_block_start", "index": self._next_block, "content_block": block}
        out.append(_event(b"content_block_start", event))
        self._open_kind = kind

    def _delta(self, delta: dict[str, Any], out: list[bytes]) -> None:
        event = {"type": "content_block_delta", "index": self._next_block, "delta": delta}
        out.append(_event(b"content_block_delta", event))

    def _close_open(self, out: list[bytes]) -> None:
        if self._open_kind is None:
            return
        if self._open_kind == "thinking":
            self._delta({"type": "signature_delta", "signature": ""}, out)
        stop = {"type": "content_block_stop", "index": self._next_block}
        out.append(_event(b"content_block_stop", stop))
        if self._open_tool is not None:
            self._open_tool.closed = True
            self._open_tool = None
        self._open_kind = None
        self._next_block += 1

    # --- errors ---------------------------------------------------------------------------

    def _upstream_error(self, chunk: dict[str, Any]) -> list[bytes]:
        """An ``{"error": ...}`` chunk, as OpenAI-compatible servers send mid-stream. Its
        ``code`` is the HTTP status when numeric (vLLM); otherwise the failure is the
        server's (500). The body shape is error_shapes' like for any upstream error."""
        error = chunk.get("error")
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and 400 <= code <= 599 else 500
        body = orjson.loads(openai_error_to_anthropic(status, orjson.dumps(chunk)))
        self._done = True
        self._error_type = body["error"]["type"]
        return [_event(b"error", body)]

    def _error(self, error_type: str, message: str) -> bytes:
        self._done = True
        self._error_type = error_type
        body = {"type": "error", "error": {"type": error_type, "message": message}}
        return _event(b"error", body)


def _complete_json(text: str) -> bool:
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True


def _event(name: bytes, data: dict[str, Any]) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"

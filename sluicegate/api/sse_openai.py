"""Observer of an OpenAI Chat Completions stream relayed as is (OpenAI client, OpenAI upstream).

Same contract as :class:`sluicegate.api.sse.SSEObserver`: bytes pass unchanged, whole
events only (a partial event is held back so a failure can be reported cleanly), and only
the chunks that carry usage or an error are decoded.
"""

from __future__ import annotations

import time

import orjson

from sluicegate.api.sse import Usage, WholeEventObserver
from sluicegate.translate.error_shapes import openai_error_body

DONE = b"data: [DONE]"


def openai_stream_error(error_type: str, message: str) -> bytes:
    """How a failure is reported inside an OpenAI stream: an ``error`` chunk, as OpenAI's
    SDKs recognise it (they raise an APIError)."""
    return b"data: " + openai_error_body(message, error_type) + b"\n\n"


class OpenAIStreamObserver(WholeEventObserver):
    __slots__ = ()

    def _observe(self, ready: bytes) -> None:
        obs = self.observation
        if obs.first_token_at is None and b'"content":"' in ready:
            obs.first_token_at = time.perf_counter()
        if DONE in ready:
            obs.saw_message_stop = True
        if b'"usage"' not in ready and b'"error"' not in ready:
            return
        for block in ready.replace(b"\r\n", b"\n").split(b"\n\n"):
            if block.startswith(b"data: {") and (b'"usage"' in block or b'"error"' in block):
                self._record(block[6:])

    def _record(self, data: bytes) -> None:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(chunk, dict):
            return
        error = chunk.get("error")
        if isinstance(error, dict):
            kind = error.get("type")
            self.observation.error_type = kind if isinstance(kind, str) else "api_error"
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.observation.usage = usage_from_openai(usage)


def usage_from_openai(usage: dict[str, object]) -> Usage:
    """OpenAI usage in Anthropic's terms: cached prompt tokens are counted apart."""
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    cached = cached if type(cached) is int else 0
    result = Usage()
    if type(prompt) is int:
        result.input_tokens = max(prompt - cached, 0)
        result.cache_read_input_tokens = cached
    if type(completion) is int:
        result.output_tokens = completion
    return result

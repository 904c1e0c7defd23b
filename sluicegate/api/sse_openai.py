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
    """An OpenAI Chat Completions stream. ``hide_usage``: the gateway asked the upstream for
    ``stream_options.include_usage`` on the client's behalf (to charge the request), so the
    usage-only chunk (``choices: []``) is observed but not relayed."""

    __slots__ = ("hide_usage",)

    def __init__(self, hide_usage: bool = False) -> None:
        super().__init__()
        self.hide_usage = hide_usage

    def _observe(self, ready: bytes) -> bytes:
        obs = self.observation
        if self.hide_usage:  # what include_usage adds to every chunk, as OpenAI writes it
            ready = ready.replace(b',"usage":null', b"")
        if obs.first_token_at is None and b'"content":"' in ready:
            obs.first_token_at = time.perf_counter()
        if DONE in ready:
            obs.saw_message_stop = True
        if b'"usage"' not in ready and b'"error"' not in ready:
            return ready
        kept: list[bytes] = []
        dropped = False
        for block in ready.replace(b"\r\n", b"\n").split(b"\n\n"):
            if (
                block.startswith(b"data: {")
                and (b'"usage"' in block or b'"error"' in block)
                and self._record(block[6:])
                and self.hide_usage
            ):
                dropped = True
                continue
            kept.append(block)
        return b"\n\n".join(kept) if dropped else ready

    def _record(self, data: bytes) -> bool:
        """Take usage or an error from one chunk; True for a usage-only chunk."""
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(chunk, dict):
            return False
        error = chunk.get("error")
        if isinstance(error, dict):
            kind = error.get("type")
            self.observation.error_type = kind if isinstance(kind, str) else "api_error"
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.observation.usage = usage_from_openai(usage)
            return chunk.get("choices") == []
        return False


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

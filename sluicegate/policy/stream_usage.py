"""What a relayed stream is charged when its final usage never arrived.

Anthropic reports output tokens at the end of a stream (``message_delta``) and OpenAI in its
last chunk, so a stream that the client abandoned, or that the upstream cut, would otherwise
be charged almost nothing for what was generated and relayed. Such a stream is charged at
least what its relayed bytes suggest: about four bytes of content per token once each
event's framing is set aside. A client cannot dodge its budget by disconnecting just before
the end.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sluicegate.api.sse import StreamObservation, Usage
from sluicegate.policy.estimate import BYTES_PER_TOKEN, estimate_input_tokens

if TYPE_CHECKING:
    from sluicegate.api.anthropic import ParsedRequest

EVENT_FRAMING_BYTES = 100  # "event: content_block_delta\ndata: {...,"delta":{"type":...}}"


def charged_stream_usage(seen: StreamObservation, parsed: ParsedRequest) -> Usage:
    usage = seen.usage if seen.usage is not None else Usage()
    complete = seen.saw_message_stop and usage.output_tokens > 0
    if complete or seen.relayed_bytes == 0:
        return usage
    content = seen.relayed_bytes - EVENT_FRAMING_BYTES * seen.relayed_events
    estimated_output = max(content, 0) // BYTES_PER_TOKEN
    if estimated_output > usage.output_tokens:
        usage.output_tokens = estimated_output
    if usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens == 0:
        usage.input_tokens = estimate_input_tokens(parsed.raw, parsed.payload)
    return usage

"""What the fake says to one request, independent of wire format (built from a Behaviour)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sluicegate.fake_upstream.behaviour import Behaviour
from sluicegate.fake_upstream.common import (
    estimate_input_tokens,
    estimate_output_tokens,
    last_user_text,
    random_id,
)

DEFAULT_GREETING = "Hello from the sluicegate fake upstream. You said: "
# Usage keys that belong to OpenAI's shape; every other override key is Anthropic's.
OPENAI_USAGE_KEYS = frozenset(
    {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "prompt_tokens_details",
        "completion_tokens_details",
    }
)


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful answer: Anthropic-style content blocks plus the numbers around them."""

    model: str
    content: list[dict[str, Any]]
    stop_reason: str
    input_tokens: int
    output_tokens: int
    usage_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "".join(str(b.get("text", "")) for b in self.content if b.get("type") == "text")

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        return [b for b in self.content if b.get("type") == "tool_use"]


def default_text(request: dict[str, Any]) -> str:
    return DEFAULT_GREETING + last_user_text(request.get("messages"))[:200]


def normalise_block(block: dict[str, Any], tool_id_prefix: str = "toolu_") -> dict[str, Any]:
    """Fill in what a real provider always sends (ids, signatures) and fix key order."""
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": str(block.get("text", ""))}
    if kind == "tool_use":
        raw_input = block.get("input")
        return {
            "type": "tool_use",
            "id": str(block.get("id") or random_id(tool_id_prefix)),
            "name": str(block.get("name", "tool")),
            "input": raw_input if isinstance(raw_input, dict) else {},
        }
    if kind == "thinking":
        return {
            "type": "thinking",
            "thinking": str(block.get("thinking", "")),
            "signature": str(block.get("signature") or random_id("sig_", 48)),
        }
    return dict(block)


def plan_reply(
    behaviour: Behaviour, request: dict[str, Any], tool_id_prefix: str = "toolu_"
) -> Reply:
    """Decide the reply; tool_use blocks without an id get ``tool_id_prefix`` + random."""
    if behaviour.content is not None:
        content = [normalise_block(b, tool_id_prefix) for b in behaviour.content]
    else:
        text = behaviour.text if behaviour.text is not None else default_text(request)
        content = [{"type": "text", "text": text}]
    has_tool_use = any(b.get("type") == "tool_use" for b in content)
    stop_reason = behaviour.stop_reason or ("tool_use" if has_tool_use else "end_turn")
    model = request.get("model")
    return Reply(
        model=model if isinstance(model, str) else "unknown",
        content=content,
        stop_reason=stop_reason,
        input_tokens=estimate_input_tokens(request),
        output_tokens=estimate_output_tokens(content),
        usage_overrides=dict(behaviour.usage or {}),
    )

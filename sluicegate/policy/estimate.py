"""Estimate a request's input tokens before the call, without a tokenizer.

The estimate is a reservation, settled with the provider's reported usage afterwards, so it
only has to be cheap and rarely low: about four bytes of JSON per token (JSON punctuation and
keys make that an over-estimate for text). Base64 media would dominate the byte count while
costing few tokens, so images count a flat amount and documents (PDFs) a share of their
decoded size.
"""

from __future__ import annotations

from typing import Any

BYTES_PER_TOKEN = 4
IMAGE_TOKENS = 1600  # Anthropic's ceiling for one image at its default resolution
DOCUMENT_BYTES_PER_TOKEN = 16  # decoded PDF bytes per token: ~2,500 tokens for a 40 kB page


def estimate_input_tokens(raw: bytes, payload: dict[str, Any]) -> int:
    """Input tokens a request will cost, approximately (never below 1)."""
    media_chars = 0
    media_tokens = 0
    messages = payload.get("messages")
    if isinstance(messages, list):
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):
                chars, tokens = _media_in(content, 0)
                media_chars += chars
                media_tokens += tokens
    text_bytes = len(raw) - media_chars
    tokens = (text_bytes if text_bytes > 0 else 0) // BYTES_PER_TOKEN + media_tokens
    return tokens if tokens > 1 else 1


def _media_in(blocks: list[Any], depth: int) -> tuple[int, int]:
    """(characters of base64 media, their token estimate) in content blocks; tool results
    nest blocks one level down."""
    chars = tokens = 0
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        data = _base64_data(block)
        if data is not None:
            chars += len(data)
            if kind == "document":
                tokens += len(data) * 3 // 4 // DOCUMENT_BYTES_PER_TOKEN
            else:
                tokens += IMAGE_TOKENS
        elif kind == "tool_result" and depth == 0 and isinstance(block.get("content"), list):
            inner_chars, inner_tokens = _media_in(block["content"], 1)
            chars += inner_chars
            tokens += inner_tokens
    return chars, tokens


def _base64_data(block: dict[str, Any]) -> str | None:
    source = block.get("source")  # Anthropic: {"type": "base64", "data": ...}
    if isinstance(source, dict) and source.get("type") == "base64":
        data = source.get("data")
        return data if isinstance(data, str) else None
    image_url = block.get("image_url")  # OpenAI: {"url": "data:image/png;base64,..."}
    if isinstance(image_url, dict):
        url = image_url.get("url")
        if isinstance(url, str) and url.startswith("data:"):
            return url
    return None

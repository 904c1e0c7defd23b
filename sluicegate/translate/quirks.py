"""Settings of an OpenAI-compatible upstream that change what a translated request may hold.

Filled from the model's config entry by the gateway; plain data so translators stay pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class OpenAIQuirks:
    # Whether the server accepts stream_options.include_usage (vLLM, OpenAI: yes; some
    # llama.cpp/Ollama builds: no). Without it a translated stream reports usage as 0.
    stream_options: bool = True
    # Which field carries the output limit: OpenAI's newer models refuse max_tokens.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"

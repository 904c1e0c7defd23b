"""The shipped price table, as plain data: USD per million tokens.

Checked 2026-12-04 against the providers' own pricing pages: Anthropic's pricing page and
per-model overview pages (platform.claude.com), and OpenAI's pricing page and model pages
(developers.openai.com). Standard (non-batch, non-priority, global) rates only.

Each row is ``(input, output, cache_write, cache_read, cache_write_1h)``, the field order
of :class:`sluicegate.observe.cost.Price`:

* Anthropic: ``cache_write`` is the 5-minute write, ``cache_write_1h`` the 1-hour write,
  ``cache_read`` the cache hit. Usually 1.25x, 2x and 0.1x input, but not always (Opus 5.5,
  Sonnet 5.5 and Haiku 5.5 read at 0.05x-0.1x; Haiku 3 is rounded), so every rate is
  written out as published.
* OpenAI: ``cache_read`` is the cached-input rate. The gateway only sees prompt and cached
  tokens in OpenAI usage, so no write surcharge is modelled: both write rates equal input.

Some models bill a whole request at higher rates once its prompt (input + cache reads +
cache writes) passes a size; those are in :data:`LONG_PROMPT`.

Update this file, and only this file, when a provider changes its prices; operators can
override any row with ``prices:`` in the config.
"""

from __future__ import annotations

from typing import Final

Rates = tuple[float, float, float, float, float]


def _claude(input: float, output: float, write_5m: float, read: float, write_1h: float) -> Rates:
    return (input, output, write_5m, read, write_1h)


def _openai(input: float, cached: float, output: float) -> Rates:
    return (input, output, input, cached, input)


_OPUS_4_5 = _claude(5.00, 25.00, 6.25, 0.50, 10.00)  # Opus 4.5 to 5
_OPUS_4 = _claude(15.00, 75.00, 18.75, 1.50, 30.00)  # Opus 4 and 4.1
_SONNET_3 = _claude(3.00, 15.00, 3.75, 0.30, 6.00)  # Sonnet 3.7 to 4.6

ANTHROPIC: Final[dict[str, Rates]] = {
    "claude-opus-5-5": _claude(4.00, 20.00, 5.00, 0.20, 8.00),
    # Sonnet 5.5 cache hits were cut from $0.20 to $0.10 on 2026-10-07.
    "claude-sonnet-5-5": _claude(2.00, 10.00, 2.50, 0.10, 4.00),
    # Prompts up to 100K tokens; longer ones are in LONG_PROMPT.
    "claude-haiku-5-5": _claude(0.10, 0.50, 0.125, 0.01, 0.20),
    "claude-opus-5": _OPUS_4_5,
    "claude-sonnet-5": _claude(2.00, 10.00, 2.50, 0.20, 4.00),
    "claude-opus-4-8": _OPUS_4_5,
    "claude-opus-4-7": _OPUS_4_5,
    "claude-opus-4-6": _OPUS_4_5,
    "claude-opus-4-5": _OPUS_4_5,
    "claude-sonnet-4-6": _SONNET_3,
    "claude-sonnet-4-5": _SONNET_3,
    "claude-haiku-4-5": _claude(1.00, 5.00, 1.25, 0.10, 2.00),
    # Older ids still served (some only on partner clouds).
    "claude-opus-4-1": _OPUS_4,
    "claude-opus-4": _OPUS_4,
    "claude-opus-4-0": _OPUS_4,
    "claude-sonnet-4": _SONNET_3,
    "claude-sonnet-4-0": _SONNET_3,
    "claude-3-7-sonnet": _SONNET_3,
    "claude-3-7-sonnet-latest": _SONNET_3,
    "claude-3-5-haiku": _claude(0.80, 4.00, 1.00, 0.08, 1.60),
    "claude-3-5-haiku-latest": _claude(0.80, 4.00, 1.00, 0.08, 1.60),
    "claude-3-haiku": _claude(0.25, 1.25, 0.30, 0.03, 0.50),
}

OPENAI: Final[dict[str, Rates]] = {
    # (input, cached input, output)
    "gpt-6.2-astra": _openai(8.00, 0.40, 40.00),
    "gpt-6.2-sol": _openai(2.00, 0.10, 10.00),
    "gpt-6.1-sol": _openai(2.00, 0.10, 10.00),
    "gpt-6.1-terra": _openai(1.00, 0.05, 5.00),
    "gpt-6-astra": _openai(10.00, 1.00, 50.00),
    "gpt-6-sol": _openai(2.00, 0.20, 10.00),
    "gpt-6-luna": _openai(0.10, 0.01, 0.50),
    "gpt-5.4": _openai(2.50, 0.25, 15.00),
    "gpt-5.4-mini": _openai(0.75, 0.075, 4.50),
    "gpt-5.4-nano": _openai(0.20, 0.02, 1.25),
    "gpt-5.2": _openai(1.75, 0.175, 14.00),
    "gpt-5.1": _openai(1.25, 0.125, 10.00),
    "gpt-5": _openai(1.25, 0.125, 10.00),
    "gpt-5-mini": _openai(0.25, 0.025, 2.00),
    "gpt-5-nano": _openai(0.05, 0.005, 0.40),
    "gpt-4.1": _openai(2.00, 0.50, 8.00),
    "gpt-4.1-mini": _openai(0.40, 0.10, 1.60),
    "gpt-4.1-nano": _openai(0.10, 0.025, 0.40),
    "gpt-4o": _openai(2.50, 1.25, 10.00),
    "gpt-4o-mini": _openai(0.15, 0.075, 0.60),
    "o3": _openai(2.00, 0.50, 8.00),
    "o3-mini": _openai(1.10, 0.55, 4.40),
    "o4-mini": _openai(1.10, 0.275, 4.40),
    "o1": _openai(15.00, 7.50, 60.00),
}

# model -> (prompt size above which the whole request is billed at these rates, rates).
_SONNET_3_LONG = (200_000, _claude(6.00, 22.50, 7.50, 0.60, 12.00))  # 1M-context beta
LONG_PROMPT: Final[dict[str, tuple[int, Rates]]] = {
    "claude-haiku-5-5": (100_000, _claude(0.50, 2.50, 0.625, 0.05, 1.00)),
    "claude-sonnet-4-5": _SONNET_3_LONG,
    "claude-sonnet-4": _SONNET_3_LONG,
    "claude-sonnet-4-0": _SONNET_3_LONG,
    # OpenAI, above 272K input tokens: 2x input and cached input, 1.5x output. Published
    # for GPT-5.4 and the GPT-6 models; GPT-6.2 is assumed to follow the same rule.
    "gpt-6.2-astra": (272_000, _openai(16.00, 0.80, 60.00)),
    "gpt-6.2-sol": (272_000, _openai(4.00, 0.20, 15.00)),
    "gpt-6.1-sol": (272_000, _openai(4.00, 0.20, 15.00)),
    "gpt-6.1-terra": (272_000, _openai(2.00, 0.10, 7.50)),
    "gpt-6-astra": (272_000, _openai(20.00, 2.00, 75.00)),
    "gpt-6-sol": (272_000, _openai(4.00, 0.40, 15.00)),
    "gpt-6-luna": (272_000, _openai(0.20, 0.02, 0.75)),
    "gpt-5.4": (272_000, _openai(5.00, 0.50, 22.50)),
}

# Claude ids not listed above (future versions) are priced like the newest model of their
# family whose price was verified; these map a pattern to that model's row.
FAMILY_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("claude-opus-*", "claude-opus-5-5"),
    ("claude-sonnet-*", "claude-sonnet-5-5"),
    ("claude-haiku-*", "claude-haiku-5-5"),
)

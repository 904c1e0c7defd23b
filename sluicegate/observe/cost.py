"""What a request cost, from the usage the provider reported.

Prices are USD per million tokens (:class:`Price`); the shipped table is
:mod:`sluicegate.observe.prices`, and operators override it with exact model names or
``fnmatch`` patterns. Money is counted in integer nano-USD (:data:`NANO_PER_USD`), rounded
up, so ledgers add up exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from sluicegate.api.sse import Usage
from sluicegate.observe import prices

NANO_PER_USD = 10**9
MEMO_LIMIT = 4096

# "-20250929" or "-2025-04-14" at the end of a model id.
_DATE_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2})$")


def _micro(rate: float) -> int:
    """A rate in micro-USD per million tokens, i.e. pico-USD per token, as an integer."""
    return round(rate * 1_000_000)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. ``cache_write`` is Anthropic's 5-minute cache write,
    ``cache_write_1h`` the 1-hour one; ``cache_read`` is a cache hit (OpenAI: cached input).

    ``long_prompt``, when set, replaces every rate for a request whose prompt (input +
    cache reads + cache writes) is over ``long_prompt_threshold`` tokens.
    """

    input: float
    output: float
    cache_write: float
    cache_read: float
    cache_write_1h: float
    long_prompt_threshold: int = 0
    long_prompt: Price | None = None
    # Rates in pico-USD per token as integers (input, output, cache read, 5-minute write,
    # 1-hour write, dearest input): derived once, read on every request.
    micro: tuple[int, int, int, int, int, int] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        rates = (self.input, self.output, self.cache_read, self.cache_write, self.cache_write_1h)
        inp, out, read, write, write_1h = (_micro(rate) for rate in rates)
        object.__setattr__(
            self, "micro", (inp, out, read, write, write_1h, max(inp, write, write_1h))
        )

    @classmethod
    def of(
        cls,
        input: float,
        output: float,
        cache_write: float | None = None,
        cache_read: float | None = None,
        cache_write_1h: float | None = None,
    ) -> Price:
        """A price with Anthropic's usual cache ratios where a rate is not given:
        5-minute write 1.25x input, 1-hour write 2x, read 0.1x."""
        return cls(
            input,
            output,
            input * 1.25 if cache_write is None else cache_write,
            input * 0.1 if cache_read is None else cache_read,
            input * 2 if cache_write_1h is None else cache_write_1h,
        )

    def for_prompt(self, prompt_tokens: int) -> Price:
        """The rates that apply to a request with a prompt of this many tokens."""
        long = self.long_prompt
        if long is not None and prompt_tokens > self.long_prompt_threshold:
            return long
        return self


ZERO = Price(0, 0, 0, 0, 0)


def strip_date(model: str) -> str:
    """``claude-sonnet-4-5-20250929`` -> ``claude-sonnet-4-5``; ``gpt-4.1-2025-04-14`` ->
    ``gpt-4.1``. Other ids are returned unchanged."""
    return _DATE_SUFFIX.sub("", model)


def _shipped_table() -> tuple[dict[str, Price], tuple[tuple[str, Price], ...]]:
    table: dict[str, Price] = {}
    for name, rates in (prices.ANTHROPIC | prices.OPENAI).items():
        price = Price(*rates)
        if name in prices.LONG_PROMPT:
            threshold, long_rates = prices.LONG_PROMPT[name]
            price = Price(*rates, long_prompt_threshold=threshold, long_prompt=Price(*long_rates))
        table[name] = price
    patterns = tuple((pattern, table[model]) for pattern, model in prices.FAMILY_PATTERNS)
    return table, patterns


SHIPPED, SHIPPED_PATTERNS = _shipped_table()


class PriceBook:
    """Finds the price of a request from its alias (the name the client asked for) and the
    upstream model id, and turns reported usage into money."""

    __slots__ = ("_memo", "_override_exact", "_override_patterns")

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        exact: dict[str, Price] = {}
        patterns: list[tuple[str, Price]] = []
        for key, price in (overrides or {}).items():
            if any(ch in key for ch in "*?["):
                patterns.append((key, price))
            else:
                exact[key] = price
        self._override_exact = exact
        self._override_patterns = tuple(patterns)  # config order
        self._memo: dict[tuple[str | None, str | None], Price | None] = {}

    def price_for(self, alias: str | None, upstream_model: str | None) -> Price | None:
        """The price for a request, or None for a model nobody priced. First match wins:
        override for the alias (exact, then pattern), override for the upstream model
        (exact, then pattern), shipped upstream model (exact, then without a date suffix),
        shipped alias (same), shipped family pattern (upstream, then alias)."""
        key = (alias, upstream_model)
        try:
            return self._memo[key]
        except KeyError:
            pass
        found = self._resolve(alias, upstream_model)
        if len(self._memo) >= MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = found
        return found

    def _resolve(self, alias: str | None, upstream: str | None) -> Price | None:
        names = [name for name in (alias, upstream) if name]
        for name in names:
            price = self._override(name)
            if price is not None:
                return price
        for name in reversed(names):  # upstream first, then the alias
            price = SHIPPED.get(name) or SHIPPED.get(strip_date(name))
            if price is not None:
                return price
        for name in reversed(names):
            for pattern, price in SHIPPED_PATTERNS:
                if fnmatchcase(name, pattern):
                    return price
        return None

    def _override(self, name: str) -> Price | None:
        price = self._override_exact.get(name)
        if price is not None:
            return price
        for pattern, price in self._override_patterns:
            if fnmatchcase(name, pattern):
                return price
        return None

    @staticmethod
    def cost_nano(price: Price, usage: Usage) -> int:
        """What ``usage`` cost at ``price``, in nano-USD rounded up. Rates are taken to
        1e-6 USD per million tokens and summed in integers, so no float error creeps in."""
        inp, out, read = usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens
        if not usage.cache_creation_input_tokens and inp >= 0 and out >= 0 and read >= 0:
            # The common case (no cache writes, counts as reported), without _counts.
            long = price.long_prompt
            if long is not None and inp + read > price.long_prompt_threshold:
                price = long
            rate = price.micro
            pico = inp * rate[0] + out * rate[1] + read * rate[2]
        else:
            inp, out, read, write, write_1h = _counts(usage)
            rate = price.for_prompt(inp + read + write + write_1h).micro
            pico = inp * rate[0] + out * rate[1] + read * rate[2]
            pico += write * rate[3] + write_1h * rate[4]
        return -(-pico // 1000)

    @staticmethod
    def worst_case_nano(price: Price, input_tokens: int, max_output_tokens: int) -> int:
        """The most a request can cost before it runs: every input token at the dearest
        input rate (plain or a cache write), every allowed output token at the output rate."""
        inp = input_tokens if input_tokens > 0 else 0
        out = max_output_tokens if max_output_tokens > 0 else 0
        long = price.long_prompt
        if long is not None and inp > price.long_prompt_threshold:
            price = long
        rate = price.micro
        return -(-(inp * rate[5] + out * rate[1]) // 1000)


def _counts(usage: Usage) -> tuple[int, int, int, int, int]:
    """Input, output, cache reads, 5-minute writes, 1-hour writes (never negative).
    Anthropic reports all writes in ``cache_creation_input_tokens`` and the 1-hour part
    separately."""
    inp, out = usage.input_tokens, usage.output_tokens
    if not usage.cache_creation_input_tokens and inp >= 0 and out >= 0:
        # The common case: no cache writes, counts as reported.
        return inp, out, max(usage.cache_read_input_tokens, 0), 0, 0
    writes = max(usage.cache_creation_input_tokens, 0)
    write_1h = min(max(usage.cache_creation_1h_input_tokens, 0), writes)
    return (
        max(usage.input_tokens, 0),
        max(usage.output_tokens, 0),
        max(usage.cache_read_input_tokens, 0),
        writes - write_1h,
        write_1h,
    )

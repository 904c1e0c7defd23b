"""Price lookup and cost arithmetic. Expected amounts are worked out by hand, not with the
code's own formula."""

from __future__ import annotations

import pytest

from sluicegate.api.sse import Usage
from sluicegate.api.sse_openai import usage_from_openai
from sluicegate.catalog import ANTHROPIC_MODELS
from sluicegate.observe.cost import (
    MEMO_LIMIT,
    NANO_PER_USD,
    SHIPPED,
    ZERO,
    Price,
    PriceBook,
    strip_date,
)

BOOK = PriceBook()


def anthropic_usage(**fields: object) -> Usage:
    usage = Usage()
    usage.update(fields)
    return usage


def price(alias: str | None, upstream: str | None, book: PriceBook = BOOK) -> Price:
    found = book.price_for(alias, upstream)
    assert found is not None, (alias, upstream)
    return found


# --- usage -----------------------------------------------------------------------------


def test_usage_reads_the_one_hour_write_split() -> None:
    usage = anthropic_usage(
        input_tokens=10,
        cache_creation_input_tokens=300,
        cache_creation={"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 100},
    )
    assert (usage.cache_creation_input_tokens, usage.cache_creation_1h_input_tokens) == (300, 100)
    usage.update({"output_tokens": 5})  # a message_delta without the split keeps it
    assert usage.cache_creation_1h_input_tokens == 100
    assert anthropic_usage(cache_creation_input_tokens=7).cache_creation_1h_input_tokens == 0
    malformed = anthropic_usage(cache_creation={"ephemeral_1h_input_tokens": "x"})
    assert malformed.cache_creation_1h_input_tokens == 0


# --- golden costs ----------------------------------------------------------------------


def test_sonnet_with_cache_reads_and_both_write_lifetimes() -> None:
    usage = anthropic_usage(
        input_tokens=1000,
        output_tokens=500,
        cache_read_input_tokens=20_000,
        cache_creation_input_tokens=3000,
        cache_creation={"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 1000},
    )
    p = price("sonnet", "claude-sonnet-4-5-20250929")
    # 1000*3 + 500*15 + 20000*0.30 + 2000*3.75 + 1000*6 = 30000 micro-USD
    assert BOOK.cost_nano(p, usage) == 30_000_000


def test_sonnet_5_5_cheap_cache_reads() -> None:
    usage = anthropic_usage(input_tokens=1234, output_tokens=567, cache_read_input_tokens=10_000)
    p = price(None, "claude-sonnet-5-5")
    # 1234*2 + 567*10 + 10000*0.10 = 9138
    assert BOOK.cost_nano(p, usage) == 9_138_000


def test_haiku() -> None:
    usage = anthropic_usage(input_tokens=2000, output_tokens=300)
    assert BOOK.cost_nano(price(None, "claude-haiku-4-5-20251001"), usage) == 3_500_000


def test_haiku_5_5_long_prompt_rates_apply_to_the_whole_request() -> None:
    p = price(None, "claude-haiku-5-5")
    short = anthropic_usage(input_tokens=60_000, cache_read_input_tokens=40_000, output_tokens=1000)
    # exactly 100,000 prompt tokens: 60000*0.10 + 40000*0.01 + 1000*0.50 = 6900
    assert BOOK.cost_nano(p, short) == 6_900_000
    long = anthropic_usage(input_tokens=60_000, cache_read_input_tokens=40_001, output_tokens=1000)
    # 100,001: 60000*0.50 + 40001*0.05 + 1000*2.50 = 34500.05
    assert BOOK.cost_nano(p, long) == 34_500_050


def test_opus() -> None:
    usage = anthropic_usage(
        input_tokens=100,
        output_tokens=200,
        cache_read_input_tokens=1000,
        cache_creation_input_tokens=400,  # no split reported: all 5-minute writes
    )
    p = price(None, "claude-opus-4-1-20250805")
    # 100*15 + 200*75 + 1000*1.50 + 400*18.75 = 25500
    assert BOOK.cost_nano(p, usage) == 25_500_000
    current = anthropic_usage(input_tokens=10_000, output_tokens=2000)
    assert BOOK.cost_nano(price(None, "claude-opus-4-8"), current) == 100_000_000  # 50k + 50k


def test_openai_cached_tokens_from_usage_conversion() -> None:
    usage = usage_from_openai(
        {
            "prompt_tokens": 5000,
            "completion_tokens": 800,
            "prompt_tokens_details": {"cached_tokens": 3000},
        }
    )
    p = price("gpt-4.1", "gpt-4.1-2025-04-14")
    # 2000*2.00 + 3000*0.50 + 800*8.00 = 11900
    assert BOOK.cost_nano(p, usage) == 11_900_000
    o4 = usage_from_openai(
        {
            "prompt_tokens": 10_000,
            "completion_tokens": 1000,
            "prompt_tokens_details": {"cached_tokens": 4000},
        }
    )
    # 6000*1.10 + 4000*0.275 + 1000*4.40 = 12100
    assert BOOK.cost_nano(price(None, "o4-mini"), o4) == 12_100_000


def test_openai_long_context_rates() -> None:
    usage = usage_from_openai(
        {
            "prompt_tokens": 300_000,
            "completion_tokens": 10_000,
            "prompt_tokens_details": {"cached_tokens": 100_000},
        }
    )
    # over 272K: 200000*4.00 + 100000*0.40 + 10000*15.00 = 990000
    assert BOOK.cost_nano(price(None, "gpt-6-sol"), usage) == 990_000_000


def test_nano_cost_is_rounded_up_and_exact() -> None:
    p = Price.of(0.0015, 0.0)  # 1.5 nano-USD per input token
    assert PriceBook.cost_nano(p, anthropic_usage(input_tokens=3)) == 5  # 4.5 -> 5
    # 0.1 + 0.2 style float noise must not add a nano-dollar
    assert (
        PriceBook.cost_nano(Price.of(0.1, 0.2), anthropic_usage(input_tokens=10, output_tokens=10))
        == 3000
    )
    assert NANO_PER_USD == 1_000_000_000


def test_one_hour_split_larger_than_total_is_capped() -> None:
    usage = Usage(cache_creation_input_tokens=100, cache_creation_1h_input_tokens=500)
    p = Price.of(1.0, 5.0)  # 5m write 1.25, 1h write 2.0
    assert PriceBook.cost_nano(p, usage) == 200_000  # 100 * 2.0 micro-USD


# --- lookup ----------------------------------------------------------------------------


def test_catalog_models_are_priced_exactly() -> None:
    for model in ANTHROPIC_MODELS:
        assert model in SHIPPED, model


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("claude-opus-4-1", "claude-opus-4-1"),
        ("gpt-5", "gpt-5"),
    ],
)
def test_strip_date(model: str, expected: str) -> None:
    assert strip_date(model) == expected


def test_dated_ids_resolve() -> None:
    assert price(None, "claude-3-5-haiku-20241022") == Price(0.80, 4.00, 1.00, 0.08, 1.60)
    assert price(None, "claude-3-haiku-20240307") == Price(0.25, 1.25, 0.30, 0.03, 0.50)
    assert price(None, "gpt-4o-mini-2024-07-18") == Price(0.15, 0.60, 0.15, 0.075, 0.15)


def test_family_fallback_for_unlisted_claude_versions() -> None:
    assert price(None, "claude-opus-6") == Price(4.00, 20.00, 5.00, 0.20, 8.00)
    assert price(None, "claude-sonnet-7-20270101") == Price(2.00, 10.00, 2.50, 0.10, 4.00)
    haiku = price(None, "claude-haiku-9")
    assert (haiku.input, haiku.output, haiku.long_prompt_threshold) == (0.10, 0.50, 100_000)


def test_upstream_beats_alias_and_alias_is_a_fallback() -> None:
    assert price("gpt-4o", "claude-haiku-4-5").input == 1.00
    assert price("claude-sonnet-4-5", "my-private-deployment").input == 3.00
    assert price("claude-opus-latest-ish", "vendor-model").input == 4.00  # alias family


def test_override_precedence() -> None:
    p1, p2, p3, p4 = (Price.of(n, n) for n in (1.0, 2.0, 3.0, 4.0))
    book = PriceBook({"team-fast": p1, "team-*": p2, "claude-haiku-4-5": p3, "claude-*": p4})
    assert book.price_for("team-fast", "claude-haiku-4-5") is p1  # alias exact
    assert book.price_for("team-slow", "claude-haiku-4-5") is p2  # alias pattern > upstream exact
    assert book.price_for("other", "claude-haiku-4-5") is p3  # upstream exact
    assert book.price_for("other", "claude-opus-4-8") is p4  # upstream pattern > shipped
    assert book.price_for("other", "gpt-4o") == Price(2.50, 10.00, 2.50, 1.25, 2.50)  # shipped


def test_override_patterns_in_config_order_and_exact_first() -> None:
    a, b, c = Price.of(1.0, 1.0), Price.of(2.0, 2.0), Price.of(3.0, 3.0)
    assert PriceBook({"claude-opus-*": a, "claude-*": b}).price_for(None, "claude-opus-4-8") is a
    assert PriceBook({"claude-*": b, "claude-opus-*": a}).price_for(None, "claude-opus-4-8") is b
    assert PriceBook({"claude-*": b, "claude-opus-4-8": c}).price_for(None, "claude-opus-4-8") is c


def test_zero_priced_override() -> None:
    book = PriceBook({"free-*": ZERO})
    p = price("free-tier", "claude-opus-4-8", book)
    usage = anthropic_usage(input_tokens=10_000, output_tokens=500, cache_creation_input_tokens=99)
    assert book.cost_nano(p, usage) == 0
    assert book.worst_case_nano(p, 100_000, 8192) == 0


def test_unknown_model() -> None:
    assert BOOK.price_for("mystery", "llama-3-70b") is None
    assert BOOK.price_for(None, None) is None
    assert BOOK.price_for("", "") is None


# --- worst case ------------------------------------------------------------------------


def test_worst_case() -> None:
    # Sonnet 4.6: dearest input rate is the 1h write, 6.00; 10000*6 + 4096*15 = 121440
    assert BOOK.worst_case_nano(price(None, "claude-sonnet-4-6"), 10_000, 4096) == 121_440_000
    # OpenAI: no write surcharge, so plain input; 1000*2.50 + 1000*10 = 12500
    assert BOOK.worst_case_nano(price(None, "gpt-4o"), 1000, 1000) == 12_500_000
    # Haiku 5.5 over 100K: 200000*1.00 (1h write, long rates) + 10000*2.50 = 225000
    assert BOOK.worst_case_nano(price(None, "claude-haiku-5-5"), 200_000, 10_000) == 225_000_000
    assert BOOK.worst_case_nano(price(None, "claude-haiku-5-5"), -5, -5) == 0
    assert BOOK.worst_case_nano(Price.of(0.0015, 0.0), 3, 0) == 9  # 3*3.0 (1h write = 2x)


# --- price construction and memo -------------------------------------------------------


def test_price_of_defaults_to_anthropic_ratios() -> None:
    p = Price.of(4.0, 20.0)
    assert (p.input, p.output) == (4.0, 20.0)
    assert (p.cache_write, p.cache_read, p.cache_write_1h) == pytest.approx((5.0, 0.4, 8.0))
    q = Price.of(2.0, 8.0, cache_write=2.0, cache_read=0.5, cache_write_1h=2.0)
    assert q == Price(2.0, 8.0, 2.0, 0.5, 2.0)


def test_memo_is_bounded_and_consistent() -> None:
    book = PriceBook()
    for i in range(MEMO_LIMIT + 10):
        assert book.price_for(f"alias-{i}", None) is None
        assert len(book._memo) <= MEMO_LIMIT
    first = book.price_for(None, "claude-sonnet-4-6")
    assert book.price_for(None, "claude-sonnet-4-6") is first


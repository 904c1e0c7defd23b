import orjson
import pytest

from sluicegate.api.anthropic import model_page, parse_count_tokens, parse_messages
from sluicegate.catalog import display_name
from sluicegate.errors import InvalidRequest
from sluicegate.routing.router import Router
from sluicegate.settings import Secret, Timeouts, settings_from_mapping


def router(*entries: dict[str, object]) -> Router:
    settings = settings_from_mapping({"model_list": list(entries)})
    return Router(settings.model_list, Timeouts(), ("http://127.0.0.1:1", Secret("k")))


def entry(name: str, **extra: object) -> dict[str, object]:
    return {"model_name": name, "provider": "anthropic", "api_base": "https://u", **extra}


def test_exact_beats_wildcard_and_wildcards_keep_config_order() -> None:
    r = router(
        entry("claude-*", api_base="https://wild"),
        entry("claude-sonnet-4-6"),
        entry("claude-s*", api_base="https://later"),
    )
    assert r.resolve("claude-sonnet-4-6")[0].deployment.api_base == "https://u"
    assert r.resolve("claude-sonnet-9")[0].deployment.api_base == "https://wild"
    assert r.resolve("gpt-4o") == []


def test_alias_rewrites_upstream_model_and_wildcard_keeps_it() -> None:
    r = router(entry("fast", model="claude-haiku-4-5"), entry("claude-*"))
    assert r.resolve("fast")[0].upstream_model == "claude-haiku-4-5"
    assert r.resolve("claude-opus-4-7")[0].upstream_model == "claude-opus-4-7"


def test_builtin_fake_gets_its_url_and_key() -> None:
    r = router(entry("demo", api_base="builtin:fake"))
    deployment = r.resolve("demo")[0].deployment
    assert deployment.api_base == "http://127.0.0.1:1"
    assert deployment.api_key == Secret("k")


def test_listed_models_expand_wildcards_from_catalog() -> None:
    listed = router(entry("demo"), entry("claude-sonnet-*")).listed_models()
    assert listed[0] == "demo"
    assert "claude-sonnet-4-6" in listed and all(
        m == "demo" or m.startswith("claude-sonnet-") for m in listed
    )


def test_memo_stays_bounded() -> None:
    r = router(entry("claude-*"))
    for i in range(10_000):
        r.resolve(f"nope-{i}")
    assert len(r.table.memo) <= 4096


def test_body_passes_through_byte_identical_unless_model_changes() -> None:
    raw = (
        b'{"z":1,"model":"m","max_tokens":5,"messages":[],'
        b'"system":[{"type":"text","text":"\\u00e9"}]}'
    )
    parsed = parse_messages(raw)
    assert parsed.body_for("m") is raw
    rewritten = orjson.loads(parsed.body_for("upstream-m"))
    assert list(rewritten) == ["z", "model", "max_tokens", "messages", "system"]
    assert rewritten["model"] == "upstream-m" and rewritten["system"][0]["text"] == "é"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"{", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"max_tokens":1,"messages":[]}', "model: Field required"),
        (b'{"model":"m","messages":[]}', "max_tokens: Field required"),
        (b'{"model":"m","max_tokens":1}', "messages: Field required"),
        (b'{"model":"m","max_tokens":"1","messages":[]}', "max_tokens"),
        (b'{"model":"m","max_tokens":true,"messages":[]}', "max_tokens"),
        (b'{"model":"m","max_tokens":0,"messages":[]}', "max_tokens"),
        (b'{"model":5,"max_tokens":1,"messages":[]}', "model"),
        (b'{"model":"m","max_tokens":1,"messages":{}}', "messages"),
        (b'{"model":"m","max_tokens":1,"messages":[],"stream":"yes"}', "stream"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_bad_messages_bodies(body: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        parse_messages(body)


def test_count_tokens_needs_no_max_tokens() -> None:
    parsed = parse_count_tokens(b'{"model":"m","messages":[]}')
    assert parsed.model == "m" and not parsed.stream


def test_model_page_shape_and_pagination() -> None:
    ids = [f"claude-x-{i}" for i in range(5)]
    page = model_page(ids, b"limit=2")
    assert [m["id"] for m in page["data"]] == ids[:2]
    assert page["has_more"] and page["first_id"] == ids[0] and page["last_id"] == ids[1]
    assert page["data"][0]["type"] == "model" and "created_at" in page["data"][0]
    nxt = model_page(ids, b"limit=2&after_id=claude-x-1")
    assert [m["id"] for m in nxt["data"]] == ids[2:4]
    before = model_page(ids, b"limit=2&before_id=claude-x-4")
    assert [m["id"] for m in before["data"]] == ids[2:4]
    assert model_page(ids, b"limit=1000")["has_more"] is False
    with pytest.raises(InvalidRequest):
        model_page(ids, b"limit=abc")


def test_display_names() -> None:
    assert display_name("claude-sonnet-4-6") == "Claude Sonnet 4.6"
    assert display_name("claude-opus-5") == "Claude Opus 5"
    assert display_name("team-alias") == "team-alias"

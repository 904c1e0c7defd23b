import orjson
import pytest

from sluicegate.api.openai import include_usage, openai_model_list, parse_chat
from sluicegate.api.sse import SSEDecoder
from sluicegate.api.sse_openai import OpenAIStreamObserver, openai_stream_error, usage_from_openai
from sluicegate.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    UpstreamTimeout,
    render_openai,
)
from sluicegate.providers.base import UpstreamCall
from sluicegate.providers.openai import OpenAIProvider
from sluicegate.routing.router import Router
from sluicegate.settings import Secret, Timeouts, settings_from_mapping

OPENAI_STREAM = (
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
    b'{"role":"assistant","content":""}}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":'
    b'{"content":"Hi \\"there\\" \\ud83d\\ude00"}}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},'
    b'"finish_reason":"stop"}]}\n\n'
    b'data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":'
    b'20,"completion_tokens":5,"total_tokens":25,"prompt_tokens_details":{"cached_tokens":8}}}'
    b"\n\n"
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize("size", [1, 5, 33, len(OPENAI_STREAM)])
def test_openai_observer_relays_bytes_and_reads_usage(size: int) -> None:
    observer = OpenAIStreamObserver()
    chunks = [OPENAI_STREAM[i : i + size] for i in range(0, len(OPENAI_STREAM), size)]
    assert b"".join(observer.feed(c) for c in chunks) == OPENAI_STREAM
    obs = observer.observation
    assert obs.complete and obs.error_type is None and obs.first_token_at is not None
    assert (obs.usage.input_tokens, obs.usage.cache_read_input_tokens) == (12, 8)
    assert obs.usage.output_tokens == 5


def test_openai_observer_sees_error_chunks_and_cuts() -> None:
    observer = OpenAIStreamObserver()
    observer.feed(b'data: {"error":{"message":"boom","type":"server_error"}}\n\n')
    assert observer.observation.error_type == "server_error"
    cut = OpenAIStreamObserver()
    cut.feed(OPENAI_STREAM[: OPENAI_STREAM.index(b"data: [DONE]")])
    assert not cut.observation.complete


def test_openai_stream_error_is_an_error_chunk() -> None:
    chunk = openai_stream_error("timeout_error", "too slow")
    assert chunk.startswith(b"data: ") and chunk.endswith(b"\n\n")
    assert orjson.loads(chunk[6:]) == {
        "error": {"message": "too slow", "type": "timeout_error", "param": None, "code": None}
    }


def test_usage_from_openai_counts_cached_apart() -> None:
    usage = usage_from_openai(
        {
            "prompt_tokens": 30,
            "completion_tokens": 4,
            "prompt_tokens_details": {"cached_tokens": 10},
        }
    )
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (20, 10, 4)
    assert usage_from_openai({}).input_tokens == 0


def test_sse_decoder_events_across_chunks() -> None:
    decoder = SSEDecoder()
    stream = (
        b'event: message_start\ndata: {"a":1}\n\n: comment\n\n'
        b"event: ping\r\ndata: {}\r\n\r\ndata: [DONE]\n\ndata: line1\ndata: line2\n\n"
    )
    events = [e for i in range(0, len(stream), 7) for e in decoder.feed(stream[i : i + 7])]
    assert events == [
        ("message_start", b'{"a":1}'),
        ("ping", b"{}"),
        ("", b"[DONE]"),
        ("", b"line1\nline2"),
    ]
    assert not decoder.pending


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"),
    [
        (AuthenticationFailed("bad key"), 401, "invalid_request_error", "invalid_api_key"),
        (NotFound("no model", param="model"), 404, "invalid_request_error", "not_found"),
        (InvalidRequest("n: unsupported", param="n"), 400, "invalid_request_error", None),
        (UpstreamTimeout("slow"), 504, "timeout", "upstream_timeout"),
    ],
)
def test_render_openai_has_all_four_keys(
    error: Exception, status: int, type_: str, code: str | None
) -> None:
    got_status, body, _headers = render_openai(error)  # type: ignore[arg-type]
    payload = orjson.loads(body)["error"]
    assert got_status == status and set(payload) == {"message", "type", "param", "code"}
    assert (payload["type"], payload["code"]) == (type_, code)
    assert payload["param"] == getattr(error, "param", None)


def test_parse_chat() -> None:
    parsed = parse_chat(
        b'{"model":"m","messages":[],"stream":true,'
        b'"stream_options":{"include_usage":true},"max_completion_tokens":9}'
    )
    assert (parsed.model, parsed.stream, parsed.max_tokens) == ("m", True, 9)
    assert include_usage(parsed.payload)
    for bad, param in [
        (b'{"messages":[]}', "model"),
        (b'{"model":"m"}', "messages"),
        (b'{"model":"m","messages":[],"stream":1}', "stream"),
        (b'{"model":"m","messages":[],"max_tokens":0}', "max_tokens"),
    ]:
        with pytest.raises(InvalidRequest) as info:
            parse_chat(bad)
        assert info.value.param == param


def test_openai_model_list_shape() -> None:
    listed = openai_model_list(["a", "b"])
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == ["a", "b"]
    assert all(m["object"] == "model" for m in listed["data"])


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("bearer", {"authorization": "Bearer sk-up"}),
        ("api-key", {"api-key": "sk-up"}),
        ("none", {}),
    ],
)
def test_openai_provider_auth_styles(style: str, expected: dict[str, str]) -> None:
    settings = settings_from_mapping(
        {
            "model_list": [
                {
                    "model_name": "m",
                    "provider": "openai",
                    "api_base": "http://h/v1",
                    "api_key": "sk-up",
                    "auth_style": style,
                    "extra_headers": {"X-Team": "t"},
                }
            ]
        }
    )
    route = Router(settings.model_list, Timeouts()).resolve("m")[0]
    headers = OpenAIProvider.headers_for(
        UpstreamCall(
            route.deployment, "/chat/completions", b"{}", {"authorization": "Bearer gw"}, False
        )
    )
    auth = {k: v for k, v in headers.items() if k in ("authorization", "api-key")}
    assert auth == expected  # never the client's own credential
    assert headers["x-team"] == "t"
    assert route.deployment.api_key == Secret("sk-up")

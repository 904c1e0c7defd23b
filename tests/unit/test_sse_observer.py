"""The relay's SSE observer: bytes pass through unchanged, whatever the chunking."""

from pathlib import Path

import pytest

from sluicegate.api.sse import SSEObserver

STREAM = (Path(__file__).parent.parent / "fixtures" / "anthropic_tool_stream.sse").read_bytes()


def feed_all(chunks: list[bytes]) -> tuple[bytes, SSEObserver]:
    observer = SSEObserver()
    out = b"".join(observer.feed(chunk) for chunk in chunks)
    return out, observer


@pytest.mark.parametrize("size", [1, 2, 7, 64, 1000, len(STREAM)])
def test_relayed_bytes_identical_for_any_chunking(size: int) -> None:
    chunks = [STREAM[i : i + size] for i in range(0, len(STREAM), size)]
    out, observer = feed_all(chunks)
    assert out == STREAM
    assert observer.pending == 0
    obs = observer.observation
    assert obs.upstream_message_id == "msg_01ABC"
    assert obs.stop_reason == "tool_use"
    assert (obs.usage.input_tokens, obs.usage.output_tokens) == (472, 89)
    assert obs.usage.cache_read_input_tokens == 2048
    assert obs.usage.cache_creation_input_tokens == 10
    assert obs.saw_message_stop and obs.complete and obs.error_type is None
    assert obs.first_token_at is not None


def test_partial_event_is_held_back() -> None:
    observer = SSEObserver()
    first, _rest = STREAM.split(b"event: ping", 1)
    assert observer.feed(first + b'event: ping\ndata: {"ty') == first
    assert observer.pending > 0
    assert observer.feed(b'pe": "ping"}\n\n') == b'event: ping\ndata: {"type": "ping"}\n\n'
    assert observer.pending == 0


def test_crlf_line_endings() -> None:
    crlf = STREAM.replace(b"\n", b"\r\n")
    out, observer = feed_all([crlf[i : i + 5] for i in range(0, len(crlf), 5)])
    assert out == crlf
    assert observer.observation.stop_reason == "tool_use"


def test_error_event_is_observed() -> None:
    _out, observer = feed_all(
        [
            b'event: message_start\ndata: {"type":"message_start","message":{"id":"m"}}\n\n',
            b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error",'
            b'"message":"Overloaded"}}\n\n',
        ]
    )
    assert observer.observation.error_type == "overloaded_error"
    assert observer.observation.complete and not observer.observation.saw_message_stop


def test_truncated_stream_is_not_complete() -> None:
    cut = STREAM[: STREAM.index(b"event: message_delta")]
    _, observer = feed_all([cut])
    assert not observer.observation.complete


def test_garbage_data_does_not_raise() -> None:
    _, observer = feed_all(
        [
            b"event: message_start\ndata: {not json\n\n",
            b": comment\n\n",
            b"data: [1,2]\n\n",
            b"event: error\ndata: 5\n\n",
        ]
    )
    assert observer.observation.upstream_message_id is None


def test_event_names_inside_text_are_not_events() -> None:
    text = (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        b'"delta":{"type":"text_delta","text":"event: message_stop\\n\\nevent: error"}}\n\n'
    )
    out, observer = feed_all([text])
    assert out == text
    assert not observer.observation.saw_message_stop
    assert observer.observation.error_type is None


def test_unreadable_error_event_still_counts_as_error() -> None:
    _, observer = feed_all([b"event: error\ndata: not json\n\n"])
    assert observer.observation.error_type == "api_error"


def test_multiline_data_is_joined() -> None:
    _, observer = feed_all(
        [
            b'event: message_delta\ndata: {"type":"message_delta",\ndata: "delta":'
            b'{"stop_reason":"max_tokens"},"usage":{"output_tokens":7}}\n\n'
        ]
    )
    assert observer.observation.stop_reason == "max_tokens"
    assert observer.observation.usage.output_tokens == 7

import asyncio
import io
import re

import orjson

from sluicegate.observe.logging import RequestLog


async def test_lines_are_buffered_then_flushed_whole() -> None:
    stream = io.BytesIO()
    log = RequestLog(True, stream, flush_interval=0.05)
    log.write({"request_id": "req_1", "status": 200})
    log.write({"request_id": "req_2", "status": 401, "key_name": None})
    assert stream.getvalue() == b""  # not one write per request
    await asyncio.sleep(0.1)
    lines = stream.getvalue().splitlines()
    assert [orjson.loads(line)["request_id"] for line in lines] == ["req_1", "req_2"]
    entry = orjson.loads(lines[1])
    assert entry["event"] == "request" and entry["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", entry["timestamp"])


def test_flush_without_a_loop_writes_at_once() -> None:
    stream = io.BytesIO()
    RequestLog(True, stream).write({"request_id": "req_3"})
    assert b"req_3" in stream.getvalue()


def test_a_broken_stream_never_raises() -> None:
    stream = io.BytesIO()
    stream.close()
    log = RequestLog(True, stream)
    log.write({"request_id": "req_4"})  # no exception
    log.flush()

"""Decoding request bodies with a nesting limit, and re-encoding what the gateway forwards.

orjson parses up to 1,024 levels of nesting but serialises only 254, and Python code that
walks a value recursively stops near 1,000. Without a limit of its own the gateway would
accept a body it then fails to forward (a model alias rewrites the body, translation builds
a new one): a 500 for what is the client's mistake. So every JSON body the gateway reads
(both surfaces, the admin API) is refused with a 400 past :data:`MAX_JSON_DEPTH` levels,
far deeper than any real request (messages -> content -> block -> tool input nests about
ten levels before the tool's own data) and well inside what orjson and the translators
handle.
"""

from __future__ import annotations

import codecs
from typing import Any

import orjson

from sluicegate.errors import InvalidRequest

MAX_JSON_DEPTH = 128
_ORJSON_PARSE_DEPTH = 1024  # orjson's own parse limit (it refuses the 1,025th level)
_ORJSON_DUMP_DEPTH = 254  # the deepest value orjson.dumps serialises
_SLICE = 64 * 1024

TOO_DEEP = f"The request body nests JSON deeper than {MAX_JSON_DEPTH} levels."
NOT_JSON = "The request body is not valid JSON."
NOT_UTF8 = "The request body is not valid JSON: it is not valid UTF-8."


def loads_limited(raw: bytes, *, check_depth: bool = True) -> Any:
    """``raw`` decoded; :class:`InvalidRequest` naming the problem when it is not valid
    UTF-8 JSON or nests deeper than :data:`MAX_JSON_DEPTH` levels. ``check_depth=False``
    leaves the depth to the caller (:func:`require_depth` where it matters)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(_decode_problem(raw, exc.pos)) from None
    if not check_depth:
        return value
    # Each level takes two bytes at least, so a short body (the common small request)
    # cannot be too deep and skips the walk. The walk costs about 1 µs per kB of JSON,
    # some 70% of orjson's parse of the same body.
    if len(raw) > 2 * MAX_JSON_DEPTH and too_deep(value, MAX_JSON_DEPTH):
        raise InvalidRequest(TOO_DEEP)
    return value


def require_depth(raw: bytes, value: Any) -> None:
    """:class:`InvalidRequest` when ``value`` (parsed from ``raw``) nests deeper than
    :data:`MAX_JSON_DEPTH` levels."""
    if len(raw) > 2 * MAX_JSON_DEPTH and too_deep(value, MAX_JSON_DEPTH):
        raise InvalidRequest(TOO_DEEP)


def too_deep(value: Any, limit: int) -> bool:
    """Does ``value`` nest lists and objects more than ``limit`` levels deep?

    Breadth-first, one list comprehension per level: no recursion, and only containers
    are kept from one level to the next.
    """
    level = [value] if type(value) is dict or type(value) is list else []
    for _ in range(limit):
        if not level:
            return False
        level = [
            child
            for node in level
            for child in (node.values() if type(node) is dict else node)
            if type(child) is dict or type(child) is list
        ]
    return bool(level)


def dumps_forwarded(value: Any) -> bytes:
    """``value`` (built from a parsed request) as JSON for the upstream.

    A request within :data:`MAX_JSON_DEPTH` can still carry deeper JSON inside a string
    that translation parses (an OpenAI tool call's ``arguments``): past orjson's
    serialisation limit that is the client's 400, not the gateway's fault.
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        if too_deep(value, _ORJSON_DUMP_DEPTH):
            raise InvalidRequest(
                f"The request nests JSON too deeply to forward (JSON inside strings, such "
                f"as tool call arguments, counts too; at most {MAX_JSON_DEPTH} levels)."
            ) from None
        raise


def _decode_problem(raw: bytes, pos: int) -> str:
    """Which message a body orjson refused deserves (on the error path only)."""
    # orjson checks the encoding before parsing and reports a bad one at position 0.
    if pos == 0 and not _is_utf8(raw):
        return NOT_UTF8
    # orjson stops right after the opening bracket one level past its limit; ``pos``
    # counts characters. Counting the brackets before that point (those inside strings
    # too) tells that case from a syntax error well enough to choose the message; the
    # status is 400 either way.
    text = raw.decode("utf-8", "replace")
    before = text[:pos]
    opened = before.count("[") + before.count("{") - before.count("]") - before.count("}")
    if opened > _ORJSON_PARSE_DEPTH and before[-1:] in ("[", "{"):
        return TOO_DEEP
    return NOT_JSON


def _is_utf8(raw: bytes) -> bool:
    """Decoded in slices, so a large body is checked without a copy of it as text."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        for start in range(0, len(raw), _SLICE):
            decoder.decode(raw[start : start + _SLICE])
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True

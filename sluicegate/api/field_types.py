"""JSON types of the well-known request fields the gateway does not otherwise read.

The gateway forwards bodies as they are, but a request whose well-known top-level fields,
or whose messages, have the wrong JSON type cannot succeed anywhere. Refusing it here
answers at once in the surface's shape, spends nothing of the caller's limits, and treats a
pass-through request like a translated one (the translators refuse such types too).
Unknown fields, and what is inside these fields, are left to the upstream; ``null`` is
accepted everywhere (as absent) and left to the upstream too.

A check costs a dict lookup per top-level field and a type test per message.
"""

from __future__ import annotations

from typing import Any

from sluicegate.errors import InvalidRequest

# field -> (accepted Python types after orjson, how the message names them). bool is a
# subclass of int in Python; it is accepted only where listed.
Rules = dict[str, tuple[tuple[type, ...], str]]

_NUMBER = ((int, float), "a number")
_INTEGER = ((int,), "an integer")
_OBJECT = ((dict,), "an object")
_LIST = ((list,), "a list")
_STRING = ((str,), "a string")
_BOOLEAN = ((bool,), "a boolean")

ANTHROPIC_FIELDS: Rules = {
    "system": ((str, list), "a string or a list of content blocks"),
    "metadata": _OBJECT,
    "stop_sequences": ((list,), "a list of strings"),
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "top_k": _INTEGER,
    "tools": _LIST,
    "tool_choice": _OBJECT,
    "thinking": _OBJECT,
}

OPENAI_FIELDS: Rules = {
    "temperature": _NUMBER,
    "top_p": _NUMBER,
    "presence_penalty": _NUMBER,
    "frequency_penalty": _NUMBER,
    "n": _INTEGER,
    "seed": _INTEGER,
    "top_logprobs": _INTEGER,
    "stop": ((str, list), "a string or a list of strings"),
    "tools": _LIST,
    "tool_choice": ((str, dict), "a string or an object"),
    "response_format": _OBJECT,
    "user": _STRING,
    "metadata": _OBJECT,
    "logit_bias": _OBJECT,
    "logprobs": _BOOLEAN,
    "parallel_tool_calls": _BOOLEAN,
    "store": _BOOLEAN,
}

# A message's content: text or a list of blocks/parts; absent or null is left upstream.
_CONTENT_TYPES = frozenset({str, list, type(None)})


def check_fields(payload: dict[str, Any], rules: Rules) -> None:
    """Refuse (400, naming the field) a known top-level field of the wrong JSON type."""
    for name, value in payload.items():
        rule = rules.get(name)
        if rule is None or value is None:
            continue
        kinds, described = rule
        if not isinstance(value, kinds) or (type(value) is bool and bool not in kinds):
            raise InvalidRequest(f"{name}: must be {described}", param=name)


def check_messages(messages: list[Any]) -> None:
    """Refuse a message that is not an object, or whose content is neither text nor a list."""
    for index, message in enumerate(messages):
        if type(message) is dict and type(message.get("content")) in _CONTENT_TYPES:
            continue
        where = f"messages[{index}]"
        if type(message) is not dict:
            raise InvalidRequest(f"{where}: must be an object", param=where)
        raise InvalidRequest(
            f"{where}.content: must be a string or a list of content blocks",
            param=f"{where}.content",
        )

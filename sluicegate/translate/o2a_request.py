"""OpenAI Chat Completions request -> Anthropic Messages request.

Every field is either mapped, dropped because dropping cannot change the answer, or
refused with a :class:`TranslationError` naming it: a request is never silently
answered as if a feature were honoured when it was not. The field-by-field table is
``docs/translation-openai-client.md``; comments here say why a rule is what it is.
"""

from __future__ import annotations

from typing import Any

import orjson

from sluicegate.translate.errors import TranslationError

Block = dict[str, Any]

# Fields consumed here or by the gateway, or dropped because they cannot change the answer.
_DROPPED = frozenset(
    {
        "model",  # routed by the gateway; replaced by the upstream model
        "stream_options",  # consumed by the stream translator (include_usage)
        "seed",  # best effort even at OpenAI; determinism is never guaranteed
        "store",  # OpenAI-side storage for evals/distillation; nothing is stored
        "metadata",  # OpenAI's metadata only tags stored completions
        "prompt_cache_key",  # OpenAI cache routing; Anthropic caches by prefix
        "prompt_cache_retention",  # cache tuning only
        "prompt_cache_options",  # cache tuning only
        "verbosity",  # a length hint with no Anthropic equivalent
    }
)
# Fields whose "off" values are accepted and whose other values are refused.
_OFF_VALUES: dict[str, tuple[Any, ...]] = {
    **dict.fromkeys(("audio", "prediction", "web_search_options", "moderation"), (None,)),
    **dict.fromkeys(("functions", "function_call"), (None,)),  # legacy: use tools
    **dict.fromkeys(("presence_penalty", "frequency_penalty", "top_logprobs"), (None, 0)),
    "n": (None, 1),
    "logit_bias": (None, {}),
    "logprobs": (None, False),
    "modalities": (None, ["text"]),
    "service_tier": (None, "auto", "default"),  # flex/priority/...: a promise not kept
}
# Fields translated below. `thinking` is Anthropic's own, accepted (verbatim) as Anthropic's
# OpenAI-SDK compatibility layer accepts it.
_MAPPED = frozenset(
    {"messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p"}
    | {"stop", "tools", "tool_choice", "parallel_tool_calls", "response_format"}
    | {"reasoning_effort", "user", "safety_identifier", "thinking"}
)
# OpenAI reasoning_effort -> Anthropic output_config.effort ("minimal": the nearest, low).
_EFFORT = {**{e: e for e in ("low", "medium", "high", "xhigh", "max")}, "minimal": "low"}
# Content part types each role may carry (input_audio and file have no equivalent).
_TEXT = frozenset({"text"})
_USER = frozenset({"text", "image_url"})
_ASSISTANT = frozenset({"text", "refusal"})
_RF = "response_format"
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_MESSAGE_KEYS = {
    "system": {"role", "content", "name"},
    "developer": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    # annotations / reasoning_content: output-only fields clients echo back verbatim.
    "assistant": {"role", "content", "name", "tool_calls", "refusal", "annotations"}
    | {"reasoning_content", "audio", "function_call"},
    "tool": {"role", "content", "tool_call_id"},
}


def openai_to_anthropic_request(
    body: dict[str, Any], *, upstream_model: str, default_max_tokens: int
) -> dict[str, Any]:
    """The Anthropic ``/v1/messages`` body for a parsed ``chat.completions`` request."""
    _check_fields(body)
    system, messages = _messages(body.get("messages"))
    max_tokens = _max_tokens(body)
    out: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens or default_max_tokens}
    if system:
        out["system"] = system
    out["messages"] = messages
    _sampling(body, out)
    _tools(body, out)
    _output_config(body, out, messages)
    user = _user_id(body)
    if user is not None:
        out["metadata"] = {"user_id": user}
    if body.get("stream") is not None:
        out["stream"] = _bool(body["stream"], "stream")
    return out


def required_betas(anthropic_body: dict[str, Any]) -> list[str]:
    """``anthropic-beta`` values the gateway must send with a body built here.

    None today: ``output_config`` (format and effort), adaptive thinking and strict tools
    are generally available. Only the retired top-level ``output_format`` needed
    ``structured-outputs-2025-11-13``, and this translator never emits it.
    """
    return ["structured-outputs-2025-11-13"] if "output_format" in anthropic_body else []


def _check_fields(body: dict[str, Any]) -> None:
    for key, value in body.items():
        if key in _MAPPED or key in _DROPPED:
            continue
        off = _OFF_VALUES.get(key)
        if off is None:
            raise TranslationError(f"Unsupported parameter: '{key}'.", key)
        if not any(_same(value, o) for o in off):
            hint = " (deprecated: use 'tools')" if key.startswith("function") else ""
            raise TranslationError(f"'{key}' is not supported for this model{hint}.", key)


def _same(value: Any, off: Any) -> bool:
    # Type-aware equality: True must not pass for n=1, nor False for a penalty of 0.
    if value is None or off is None:
        return value is off
    return isinstance(value, bool) is isinstance(off, bool) and bool(value == off)


def _max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):  # the newer field wins
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TranslationError(f"'{key}' must be a positive integer.", key)
            return value
    return None


def _sampling(body: dict[str, Any], out: dict[str, Any]) -> None:
    temperature = _number(body.get("temperature"), "temperature")
    if temperature is not None and temperature > 1:
        # OpenAI's range is 0..2, Anthropic's 0..1: rescaling would change the sampling.
        raise TranslationError("'temperature' above 1 is not supported here.", "temperature")
    # 1 is both APIs' default, so sending it changes nothing, while newer Claude models
    # refuse the field outright and others refuse temperature and top_p together.
    if temperature is not None and temperature != 1:
        out["temperature"] = temperature
    top_p = _number(body.get("top_p"), "top_p")
    if top_p is not None and top_p > 1:
        raise TranslationError("'top_p' must be between 0 and 1.", "top_p")
    if top_p is not None and top_p != 1:
        out["top_p"] = top_p
    stop = [body["stop"]] if isinstance(body.get("stop"), str) else body.get("stop")
    if stop is not None and not (isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise TranslationError("'stop' must be a string or a list of strings.", "stop")
    if stop:
        out["stop_sequences"] = stop


def _user_id(body: dict[str, Any]) -> str | None:
    # safety_identifier replaced `user` for abuse detection: the purpose of user_id.
    for key in ("safety_identifier", "user"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise TranslationError(f"'{key}' must be a string.", key)
            return value
    return None


def _number(value: Any, param: str) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise TranslationError(f"'{param}' must be a non-negative number.", param)
    return value


def _bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise TranslationError(f"'{param}' must be a boolean.", param)
    return value


# --- messages ----------------------------------------------------------------------


def _messages(raw: Any) -> tuple[list[Block], list[Block]]:
    """Anthropic ``system`` blocks and alternating turns from OpenAI messages.

    System and developer messages are hoisted into ``system`` in order, wherever they
    stand (mid-conversation system turns exist only on some Claude models). Consecutive
    turns of one role merge, so tool results and a following user message form one turn.
    """
    if not isinstance(raw, list) or not raw:
        raise TranslationError("'messages' must be a non-empty array.", "messages")
    system: list[Block] = []
    turns: list[Block] = []
    for i, message in enumerate(raw):
        at = f"messages[{i}]"
        role = message.get("role") if isinstance(message, dict) else None
        if not isinstance(role, str) or role not in _MESSAGE_KEYS:
            raise TranslationError(f"Unsupported role {role!r} at {at}.", f"{at}.role")
        _check_message_keys(message, role, at)
        if role in ("system", "developer"):
            system.extend(_blocks(message.get("content"), f"{at}.content", _TEXT))
        elif role == "user":
            _append(turns, "user", _blocks(message.get("content"), f"{at}.content", _USER))
        elif role == "assistant":
            _append(turns, "assistant", _assistant_blocks(message, at))
        else:
            _append(turns, "user", [_tool_result(message, at)])
    return system, turns


def _check_message_keys(message: dict[str, Any], role: str, at: str) -> None:
    for key, value in message.items():
        if value is None and key != "content":
            continue  # SDK dumps of a response carry e.g. "audio": null
        if key not in _MESSAGE_KEYS[role] or key in ("audio", "function_call"):
            raise TranslationError(f"'{key}' is not supported on {role} messages.", f"{at}.{key}")


def _append(turns: list[Block], role: str, blocks: list[Block]) -> None:
    # Empty turns are skipped (Anthropic refuses empty content); same-role turns merge.
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _parts(content: Any, at: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        return content
    raise TranslationError(f"'{at}' must be a string or an array of content parts.", at)


def _blocks(content: Any, at: str, allowed: frozenset[str]) -> list[Block]:
    blocks: list[Block] = []
    for j, part in enumerate(_parts(content, at)):
        block = _part(part, f"{at}[{j}]", allowed)
        if block is not None:
            blocks.append(_with_cache(part, block))
    return blocks


def _part(part: dict[str, Any], at: str, allowed: frozenset[str]) -> Block | None:
    kind = part.get("type")
    if not isinstance(kind, str) or kind not in allowed:
        raise TranslationError(f"Content part type {kind!r} is not supported here.", f"{at}.type")
    if kind == "image_url":
        return _image(part.get("image_url"), f"{at}.image_url")
    text = part.get(kind)  # a text part's "text", a refusal part's "refusal"
    if not isinstance(text, str):
        raise TranslationError(f"'{at}.{kind}' must be a string.", f"{at}.{kind}")
    # Anthropic refuses empty text blocks; they carry nothing.
    return {"type": "text", "text": text} if text else None


def _image(image_url: Any, at: str) -> Block:
    url = image_url.get("url") if isinstance(image_url, dict) else None
    if not isinstance(url, str):
        raise TranslationError(f"'{at}.url' must be a string.", f"{at}.url")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or media_type not in _IMAGE_TYPES:
            raise TranslationError("Data URLs: base64 JPEG, PNG, GIF or WebP.", f"{at}.url")
        source = {"type": "base64", "media_type": media_type, "data": data}
    elif url.startswith(("https://", "http://")):
        source = {"type": "url", "url": url}
    else:
        raise TranslationError("Image URLs must be http(s) or base64 data URLs.", f"{at}.url")
    return {"type": "image", "source": source}  # `detail` has no equivalent: dropped


def _with_cache(part: dict[str, Any], block: Block) -> Block:
    # A prompt-cache breakpoint marks a reusable prefix: Anthropic's cache_control does too.
    if part.get("prompt_cache_breakpoint") is not None:
        block["cache_control"] = {"type": "ephemeral"}
    return block


def _assistant_blocks(message: dict[str, Any], at: str) -> list[Block]:
    blocks: list[Block] = []
    if message.get("content") is not None:
        blocks = _blocks(message["content"], f"{at}.content", _ASSISTANT)
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal and not blocks:
        blocks.append({"type": "text", "text": refusal})  # what the assistant said
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TranslationError(f"'{at}.tool_calls' must be an array.", f"{at}.tool_calls")
    for j, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{at}.tool_calls[{j}]"))
    return blocks


def _tool_use(call: Any, at: str) -> Block:
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        raise TranslationError("Only function tool calls are supported.", f"{at}.type")
    function = call.get("function")
    call_id = call.get("id")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise TranslationError("A tool call needs a string 'id' and 'function.name'.", at)
    arguments = function.get("arguments") if isinstance(function, dict) else None
    return {"type": "tool_use", "id": call_id, "name": name, "input": _arguments(arguments, at)}


def _arguments(arguments: Any, at: str) -> dict[str, Any]:
    param = f"{at}.function.arguments"
    if not isinstance(arguments, str):
        raise TranslationError("Tool call arguments must be a JSON string.", param)
    if not arguments.strip():
        return {}  # some agents send "" for a call without parameters
    try:
        parsed = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        raise TranslationError("Tool call arguments are not valid JSON.", param) from None
    if not isinstance(parsed, dict):
        raise TranslationError("Tool call arguments must be a JSON object.", param)
    return parsed


def _tool_result(message: dict[str, Any], at: str) -> Block:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise TranslationError("'tool_call_id' must be a string.", f"{at}.tool_call_id")
    block: Block = {"type": "tool_result", "tool_use_id": call_id}
    content = message.get("content")
    result = content if isinstance(content, str) else _blocks(content, f"{at}.content", _TEXT)
    if result:  # an empty result is sent as no content
        block["content"] = result
    return block


# --- tools, output config ----------------------------------------------------------


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    raw = body.get("tools")
    if raw is not None and not isinstance(raw, list):
        raise TranslationError("'tools' must be an array.", "tools")
    tools = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(raw or [])]
    choice = _tool_choice(body.get("tool_choice"), bool(tools))
    parallel = body.get("parallel_tool_calls")
    if parallel is not None and not _bool(parallel, "parallel_tool_calls") and tools:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if tools:
        out["tools"] = tools
    if choice is not None:
        out["tool_choice"] = choice


def _tool(tool: Any, at: str) -> Block:
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(tool, dict) or tool.get("type") != "function":
        raise TranslationError("Only function tools are supported.", f"{at}.type")
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(function, dict) or not isinstance(name, str):
        raise TranslationError("A function tool needs 'function.name'.", f"{at}.function.name")
    out: Block = {"name": name}
    if function.get("description") is not None:
        out["description"] = function["description"]
    # OpenAI: "Omitting parameters defines a function with an empty parameter list."
    out["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    if function.get("strict") is True:
        out["strict"] = True
    return out


def _tool_choice(choice: Any, has_tools: bool) -> Block | None:
    if choice is None or (not has_tools and choice in ("none", "auto")):
        return None  # without tools these ask for nothing
    simple = {"auto": "auto", "none": "none", "required": "any"}
    if not has_tools:
        raise TranslationError("'tool_choice' requires 'tools'.", "tool_choice")
    if isinstance(choice, str) and choice in simple:
        return {"type": simple[choice]}
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(name, str):
        return {"type": "tool", "name": name}
    raise TranslationError("Only 'auto', 'none', 'required' or a named function.", "tool_choice")


def _output_config(body: dict[str, Any], out: dict[str, Any], messages: list[Block]) -> None:
    config: dict[str, Any] = {}
    fmt = _response_format(body.get("response_format"))
    if fmt is not None:
        config["format"] = fmt
    effort = body.get("reasoning_effort")
    if effort is not None and effort != "none":
        if not isinstance(effort, str) or effort not in _EFFORT:
            raise TranslationError(f"Unsupported reasoning_effort {effort!r}.", "reasoning_effort")
        config["effort"] = _EFFORT[effort]
        # Adaptive thinking: effort steers how much Claude thinks. Not in a tool loop:
        # Anthropic then demands the previous turn's signed thinking blocks, which an
        # OpenAI client cannot send back (the turn runs without thinking, at that effort).
        if not _in_tool_loop(messages):
            out["thinking"] = {"type": "adaptive"}
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict):
            raise TranslationError("'thinking' must be an object.", "thinking")
        out["thinking"] = thinking  # explicit Anthropic config wins, verbatim
    if config:
        out["output_config"] = config


def _in_tool_loop(messages: list[Block]) -> bool:
    last_assistant = next((m for m in reversed(messages) if m["role"] == "assistant"), None)
    return last_assistant is not None and any(
        block["type"] == "tool_use" for block in last_assistant["content"]
    )


def _response_format(fmt: Any) -> Block | None:
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise TranslationError("A JSON schema is required.", f"{_RF}.json_schema.schema")
        return {"type": "json_schema", "schema": schema}
    if kind == "json_object":
        # No schema-free JSON mode upstream, and dropping it would lose the guarantee.
        raise TranslationError("'json_object' is not supported; use 'json_schema'.", f"{_RF}.type")
    raise TranslationError(f"Unsupported response_format type {kind!r}.", f"{_RF}.type")

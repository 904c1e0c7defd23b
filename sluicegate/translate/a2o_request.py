"""Anthropic Messages request -> OpenAI Chat Completions request (Anthropic client).

Every Anthropic field has one documented fate (``TOP_LEVEL_FIELDS``, ``TOOL_FIELDS`` and the
block handlers below; docs/translation-anthropic-client.md is the same table in prose):
mapped, dropped because losing it cannot make the answer wrong, or refused with a
:class:`TranslationError` naming its path. Nothing Anthropic-only is forwarded, since OpenAI
rejects unknown fields and OpenAI-compatible servers may misread them. Malformed input is
refused with its path too, so a bad body is a 400, never a crash.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson

from sluicegate.translate.errors import TranslationError
from sluicegate.translate.quirks import OpenAIQuirks

Action = Literal["map", "drop", "refuse"]

# Top-level request fields. A field absent from this table is refused (an unknown field may
# change the meaning of the request). A null value counts as absent.
TOP_LEVEL_FIELDS: dict[str, tuple[Action, str]] = {
    "model": ("map", "replaced by the route's upstream model"),
    "messages": ("map", "-> messages (tool results become role 'tool' messages)"),
    "system": ("map", "-> one leading system message, text blocks joined by a blank line"),
    "max_tokens": ("map", "-> the upstream's max_tokens field (quirk max_tokens_field)"),
    "stream": ("map", "-> stream, plus stream_options.include_usage when the upstream allows"),
    "stop_sequences": ("map", "-> stop"),
    "temperature": ("map", "passed as is"),
    "top_p": ("map", "passed as is"),
    "tools": ("map", "custom tools -> function tools; server tools refused"),
    "tool_choice": ("map", "auto/any/tool/none -> auto/required/function/none"),
    "metadata": ("map", "user_id -> user"),
    "output_config": ("map", "format -> response_format (strict); effort dropped"),
    "output_format": ("map", "-> response_format (strict)"),
    "top_k": ("drop", "sampling hint; OpenAI rejects the field and no quirk says who accepts it"),
    "thinking": ("drop", "reasoning_effort would be a 400 on non-reasoning models (see doc)"),
    "cache_control": ("drop", "prompt-caching hint; OpenAI-side caching is automatic"),
    "service_tier": ("drop", "Anthropic capacity preference; no equivalent meaning upstream"),
    "speed": ("drop", "Anthropic fast-mode preference; the answer is the same, only slower"),
    "diagnostics": ("drop", "asks Anthropic to explain cache misses; nothing to report here"),
    "context_management": ("drop", "server-side context clearing; upstream sees all history"),
    "user_profile_id": ("drop", "Anthropic attribution label"),
    "workspace_id": ("drop", "selects an Anthropic workspace; meaningless upstream"),
    "fallbacks": ("drop", "Anthropic's retry on another model after a policy decline"),
    "fallback_credit_token": ("drop", "Anthropic cache-billing credit for such a retry"),
    "container": ("refuse", "server-side code-execution container; the upstream has none"),
    "mcp_servers": ("refuse", "Anthropic-run MCP connector; its tools would silently vanish"),
    "thread": ("refuse", "server-held conversation state; the upstream would miss the history"),
    "compaction": ("refuse", "asks for an Anthropic compaction block instead of an answer"),
    "billing_policy": ("refuse", "a billing arrangement with Anthropic this route cannot honour"),
    "inference_geo": ("refuse", "a data-residency request this route cannot honour"),
}

# Keys of a custom tool definition; unknown keys are refused.
TOOL_FIELDS: dict[str, tuple[Action, str]] = {
    "type": ("map", "null or 'custom'; any other type is a server tool and refused"),
    "name": ("map", "-> function.name"),
    "description": ("map", "-> function.description"),
    "input_schema": ("map", "-> function.parameters"),
    "strict": ("map", "-> function.strict"),
    "cache_control": ("drop", "prompt-caching hint"),
    "defer_loading": ("drop", "tool-search hint; the tool is simply always visible"),
    "eager_input_streaming": ("drop", "streaming-granularity hint"),
    "input_examples": ("drop", "no OpenAI field; the schema still constrains the input"),
    "allowed_callers": ("drop", "only meaningful with Anthropic code execution (refused)"),
}

_TOOL_CHOICES: dict[str, str] = {"auto": "auto", "any": "required", "none": "none"}
# OpenAI requires a name for a json_schema response format; the client never sees it.
_SCHEMA_NAME = "structured_output"


def anthropic_to_openai_request(
    body: dict[str, Any], *, upstream_model: str, quirks: OpenAIQuirks
) -> dict[str, Any]:
    """The OpenAI chat.completions body for an Anthropic /v1/messages request body."""
    fields = {key: value for key, value in body.items() if value is not None}
    for key in fields:
        action = TOP_LEVEL_FIELDS.get(key)
        if action is None:
            raise TranslationError(
                f"{key}: unknown field; it cannot be translated for an OpenAI-compatible upstream",
                key,
            )
        if action[0] == "refuse":
            raise TranslationError(
                f"{key}: not supported with an OpenAI-compatible upstream ({action[1]})", key
            )
    out: dict[str, Any] = {"model": upstream_model, "messages": _conversation(fields)}
    out[quirks.max_tokens_field] = _max_tokens(fields.get("max_tokens"))
    if fields.get("stream") is True:
        out["stream"] = True
        if quirks.stream_options:
            out["stream_options"] = {"include_usage": True}
    for key in ("temperature", "top_p"):
        if key in fields:
            out[key] = fields[key]
    stop = _list(fields.get("stop_sequences", []), "stop_sequences")
    if stop:
        out["stop"] = [_string(item, f"stop_sequences[{i}]") for i, item in enumerate(stop)]
    out.update(_tool_fields(fields))
    response_format = _response_format(fields)
    if response_format is not None:
        out["response_format"] = response_format
    user = _user(fields.get("metadata"))
    if user is not None:
        out["user"] = user
    return out


# --- messages -------------------------------------------------------------------------------


def _conversation(fields: dict[str, Any]) -> list[dict[str, Any]]:
    messages = fields.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages: a non-empty list of messages is required", "messages")
    out: list[dict[str, Any]] = []
    system = _system_text(fields.get("system"), "system")
    if system:
        out.append({"role": "system", "content": system})
    for i, message in enumerate(messages):
        path = f"messages[{i}]"
        message = _object(message, path)
        role, content = message.get("role"), message.get("content")
        if role == "user":
            out.extend(_user_turn(content, path))
        elif role == "assistant":
            out.append(_assistant_turn(content, path))
        elif role == "system":
            out.append({"role": "system", "content": _system_text(content, f"{path}.content")})
        else:
            raise TranslationError(
                f"{path}.role: must be user, assistant or system", f"{path}.role"
            )
    if messages[-1].get("role") == "assistant":
        # Anthropic continues a trailing assistant turn (prefill); Chat Completions starts a
        # new message after it, so the answer would silently change shape.
        last = f"messages[{len(messages) - 1}].role"
        raise TranslationError(
            f"{last}: a final assistant turn (prefill) cannot be continued by an "
            "OpenAI-compatible upstream",
            last,
        )
    return out


def _system_text(system: Any, path: str) -> str:
    """Text blocks joined in order by a blank line; cache_control markers are dropped."""
    if system is None:
        return ""
    if isinstance(system, str):
        return system
    texts = []
    for i, block in enumerate(_list(system, path)):
        block = _object(block, f"{path}[{i}]")
        if block.get("type") != "text":
            raise TranslationError(
                f"{path}[{i}].type: only text blocks can form a system prompt", f"{path}[{i}].type"
            )
        texts.append(_string(block.get("text"), f"{path}[{i}].text"))
    return "\n\n".join(texts)


def _user_turn(content: Any, path: str) -> list[dict[str, Any]]:
    """Tool results first, as role 'tool' messages, then the turn's other blocks as one user
    message. Images from tool results join that user message, ahead of the rest, because an
    OpenAI tool message holds text only."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    out: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(_list(content, f"{path}.content")):
        block_path = f"{path}.content[{j}]"
        block = _object(block, block_path)
        kind = block.get("type")
        if kind == "tool_result":
            message, result_images = _tool_result(block, block_path)
            out.append(message)
            images.extend(result_images)
        elif kind in ("text", "image"):
            parts.append(_part(block, block_path))
        else:
            raise _unsupported_block(kind, block_path)
    parts = images + parts
    if parts or not out:
        out.append({"role": "user", "content": _parts_content(parts)})
    return out


def _tool_result(block: dict[str, Any], path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A role 'tool' message and the images the result carried. ``is_error`` is dropped:
    OpenAI tool messages have no error flag, and the text says what failed."""
    call_id = _string(block.get("tool_use_id"), f"{path}.tool_use_id")
    content = block.get("content")
    texts: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append({"type": "text", "text": content})
    elif content is not None:
        for k, item in enumerate(_list(content, f"{path}.content")):
            item_path = f"{path}.content[{k}]"
            item = _object(item, item_path)
            if item.get("type") not in ("text", "image"):
                raise _unsupported_block(item.get("type"), item_path)
            (texts if item["type"] == "text" else images).append(_part(item, item_path))
    message = {"role": "tool", "tool_call_id": call_id, "content": _parts_content(texts)}
    return message, images


def _assistant_turn(content: Any, path: str) -> dict[str, Any]:
    """Text blocks concatenated (Anthropic splits one text at citations, so no separator is
    added); tool_use -> tool_calls; thinking blocks dropped: their signatures are Anthropic's
    and Chat Completions has no field to send reasoning back."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(_list(content, f"{path}.content")):
        block_path = f"{path}.content[{j}]"
        block = _object(block, block_path)
        kind = block.get("type")
        if kind == "text":
            texts.append(_string(block.get("text"), f"{block_path}.text"))
        elif kind == "tool_use":
            calls.append(_tool_call(block, block_path))
        elif kind not in ("thinking", "redacted_thinking"):
            raise _unsupported_block(kind, block_path)
    message: dict[str, Any] = {"role": "assistant"}
    message["content"] = "".join(texts) if texts or not calls else None
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(block: dict[str, Any], path: str) -> dict[str, Any]:
    arguments = block.get("input")
    if not isinstance(arguments, dict):
        raise TranslationError(f"{path}.input: must be an object", f"{path}.input")
    return {
        "id": _string(block.get("id"), f"{path}.id"),
        "type": "function",
        "function": {
            "name": _string(block.get("name"), f"{path}.name"),
            "arguments": orjson.dumps(arguments).decode(),
        },
    }


def _part(block: dict[str, Any], path: str) -> dict[str, Any]:
    """A text or image block as an OpenAI content part (cache_control, citations and image
    transformations are dropped: hints and provenance, not content)."""
    if block["type"] == "text":
        return {"type": "text", "text": _string(block.get("text"), f"{path}.text")}
    source = _object(block.get("source"), f"{path}.source")
    kind = source.get("type")
    if kind == "base64":
        media = _string(source.get("media_type"), f"{path}.source.media_type")
        data = _string(source.get("data"), f"{path}.source.data")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url":
        url = _string(source.get("url"), f"{path}.source.url")
        return {"type": "image_url", "image_url": {"url": url}}
    raise TranslationError(
        f"{path}.source.type: image source {kind!r} cannot be sent to an OpenAI-compatible "
        "upstream (use base64 or url)",
        f"{path}.source.type",
    )


def _parts_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """The plain-string form whenever it is exactly equivalent (one text part, or none): it is
    what every OpenAI-compatible server accepts for every role."""
    if not parts:
        return ""
    if len(parts) == 1 and parts[0]["type"] == "text":
        text: str = parts[0]["text"]
        return text
    return parts


def _unsupported_block(kind: Any, path: str) -> TranslationError:
    return TranslationError(
        f"{path}.type: {kind!r} content blocks cannot be translated for an OpenAI-compatible "
        "upstream",
        f"{path}.type",
    )


# --- tools, output format, scalars ----------------------------------------------------------


def _tool_fields(fields: dict[str, Any]) -> dict[str, Any]:
    tools = [
        _tool(tool, f"tools[{i}]") for i, tool in enumerate(_list(fields.get("tools", []), "tools"))
    ]
    out: dict[str, Any] = {"tools": tools} if tools else {}
    choice = fields.get("tool_choice")
    if choice is None:
        return out
    choice = _object(choice, "tool_choice")
    kind = choice.get("type")
    if kind == "tool":
        name = _string(choice.get("name"), "tool_choice.name")
        mapped: Any = {"type": "function", "function": {"name": name}}
    elif isinstance(kind, str) and kind in _TOOL_CHOICES:
        mapped = _TOOL_CHOICES[kind]
    else:
        raise TranslationError(
            "tool_choice.type: must be auto, any, tool or none", "tool_choice.type"
        )
    if not tools:
        # OpenAI rejects tool_choice and parallel_tool_calls without tools; auto and none
        # mean the same as no tools, the others could not be honoured.
        if kind in ("any", "tool"):
            raise TranslationError(f"tool_choice: type {kind!r} requires tools", "tool_choice")
        return out
    out["tool_choice"] = mapped
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return out


def _tool(tool: Any, path: str) -> dict[str, Any]:
    tool = _object(tool, path)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise TranslationError(
            f"{path}: Anthropic server tool {kind!r} cannot run on an OpenAI-compatible upstream",
            f"{path}.type",
        )
    for key in tool:
        if key not in TOOL_FIELDS:
            raise TranslationError(f"{path}.{key}: unknown tool field", f"{path}.{key}")
    function: dict[str, Any] = {"name": _string(tool.get("name"), f"{path}.name")}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    function["parameters"] = _object(tool.get("input_schema"), f"{path}.input_schema")
    if isinstance(tool.get("strict"), bool):
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _response_format(fields: dict[str, Any]) -> dict[str, Any] | None:
    """Structured output. ``strict`` because Anthropic guarantees the schema; an upstream that
    cannot guarantee it says so with a 400 rather than answering off-schema."""
    config = _object(fields.get("output_config", {}), "output_config")
    for key in config:
        if key not in ("format", "effort"):
            raise TranslationError(f"output_config.{key}: unknown field", f"output_config.{key}")
    fmt, path = config.get("format"), "output_config.format"
    if fields.get("output_format") is not None:
        if fmt is not None:
            raise TranslationError(
                "output_format: give the format once (output_config.format)", "output_format"
            )
        fmt, path = fields["output_format"], "output_format"
    if fmt is None:
        return None
    fmt = _object(fmt, path)
    if fmt.get("type") != "json_schema":
        raise TranslationError(f"{path}.type: only json_schema is supported", f"{path}.type")
    schema = _object(fmt.get("schema"), f"{path}.schema")
    return {
        "type": "json_schema",
        "json_schema": {"name": _SCHEMA_NAME, "schema": schema, "strict": True},
    }


def _user(metadata: Any) -> str | None:
    if metadata is None:
        return None
    metadata = _object(metadata, "metadata")
    for key in metadata:
        if key != "user_id":
            raise TranslationError(f"metadata.{key}: unknown field", f"metadata.{key}")
    user_id = metadata.get("user_id")
    if user_id is None or user_id == "":
        return None
    return _string(user_id, "metadata.user_id")


def _max_tokens(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TranslationError("max_tokens: an integer is required", "max_tokens")
    if value < 1:
        # Anthropic's max_tokens 0 only warms the prompt cache; there is no such request here.
        raise TranslationError("max_tokens: must be at least 1 for this model", "max_tokens")
    return value


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TranslationError(f"{path}: must be an object", path)
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise TranslationError(f"{path}: must be a list", path)
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise TranslationError(f"{path}: must be a string", path)
    return value

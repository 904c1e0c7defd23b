"""``Behaviour``: the script of one fake response, and its parsing from JSON (control API)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Route names used for scripting and recording.
ROUTE_MESSAGES = "messages"
ROUTE_COUNT_TOKENS = "count_tokens"
ROUTE_CHAT = "chat_completions"
ROUTE_MODELS = "models"
ROUTES = (ROUTE_MESSAGES, ROUTE_COUNT_TOKENS, ROUTE_CHAT, ROUTE_MODELS)
# A behaviour without ``route`` is consumed by either inference route.
INFERENCE_ROUTES = (ROUTE_MESSAGES, ROUTE_CHAT)


@dataclass(slots=True)
class Behaviour:
    """How the fake answers one request. Every field is optional; the default is success.

    Errors: a non-2xx ``status`` gets an error body in the route's wire shape built from
    ``error_type``/``error_message`` (defaults follow the status), unless ``body`` overrides
    the whole body (a dict is sent as JSON, a str verbatim; ``body`` also works with 2xx).

    Content: ``content`` (Anthropic blocks: text, tool_use, thinking, or any other block that
    is relayed as is) wins over ``text``; without either the fake echoes the last user text.

    Streams: ``chunk_delay`` paces events; after N events ``stall_after_events`` pauses for
    ``stall_seconds``, ``cut_after_events`` drops the TCP connection, ``error_event_after``
    sends an error event (``error_type``/``error_message`` or overloaded) and ends the body.
    """

    status: int = 200
    error_type: str | None = None
    error_message: str | None = None
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_before_headers: float = 0.0
    text: str | None = None
    content: list[dict[str, Any]] | None = None
    stop_reason: str | None = None
    usage: dict[str, Any] | None = None
    chunk_delay: float = 0.0
    cut_after_events: int | None = None
    stall_after_events: int | None = None
    stall_seconds: float = 0.0
    error_event_after: int | None = None
    route: str | None = None

    def __post_init__(self) -> None:
        if self.route is not None and self.route not in ROUTES:
            raise ValueError(
                f"route must be one of {', '.join(ROUTES)} or null, not {self.route!r}"
            )
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, not {self.status}")
        for name in ("cut_after_events", "stall_after_events", "error_event_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")

    @property
    def is_error(self) -> bool:
        return self.status >= 300

    def matches(self, route: str) -> bool:
        if self.route is None:
            return route in INFERENCE_ROUTES
        return self.route == route

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Behaviour:
        """Build from a JSON object with the field names above; unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise ValueError("a behaviour must be a JSON object")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown behaviour field(s): {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            _check_type(name, value)
            kwargs[name] = value
        return cls(**kwargs)


_INTS = {"status"}
_OPTIONAL_INTS = {"cut_after_events", "stall_after_events", "error_event_after"}
_FLOATS = {"delay_before_headers", "chunk_delay", "stall_seconds"}
_OPTIONAL_STRS = {"error_type", "error_message", "text", "stop_reason", "route"}


def _check_type(name: str, value: Any) -> None:
    ok: bool
    if name in _INTS:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif name in _OPTIONAL_INTS:
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
    elif name in _FLOATS:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
    elif name in _OPTIONAL_STRS:
        ok = value is None or isinstance(value, str)
    elif name == "body":
        ok = value is None or isinstance(value, dict | str)
    elif name == "headers":
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    elif name == "usage":
        ok = value is None or isinstance(value, dict)
    elif name == "content":
        ok = value is None or (
            isinstance(value, list) and all(isinstance(b, dict) and "type" in b for b in value)
        )
    else:  # pragma: no cover - every field is listed above
        ok = True
    if not ok:
        raise ValueError(f"behaviour field {name!r} has an invalid value: {value!r}")

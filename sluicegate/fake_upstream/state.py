"""Shared, thread-safe state of one fake: the behaviour script and the recorded calls."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sluicegate.fake_upstream.behaviour import Behaviour

DEFAULT_MODELS = (
    "claude-sonnet-4-6",
    "claude-opus-4-6",
    "claude-haiku-4-5",
    "gpt-4o-mini",
    "sluicegate-fake",
)


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One request to a data route, as received (header names lower-case)."""

    route: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any | None
    at: float

    def summary(self) -> dict[str, Any]:
        """JSON-safe view for the control API (the raw body is left out)."""
        return {
            "route": self.route,
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "json": self.json,
            "at": self.at,
        }


class FakeState:
    """Script queue (FIFO, first behaviour matching the route wins) and call log.

    A lock guards both, so sync tests may script a fake that runs in another thread.
    """

    def __init__(self, api_key: str | None, models: Iterable[str] = DEFAULT_MODELS) -> None:
        self.api_key = api_key
        self.models = list(models)
        self._lock = threading.Lock()
        self._script: list[Behaviour] = []
        self._calls: list[RecordedCall] = []

    def script(self, behaviours: Iterable[Behaviour]) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def take(self, route: str) -> Behaviour | None:
        """Remove and return the first queued behaviour for ``route``, if any."""
        with self._lock:
            for i, behaviour in enumerate(self._script):
                if behaviour.matches(route):
                    return self._script.pop(i)
        return None

    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def record(self, call: RecordedCall) -> None:
        with self._lock:
            self._calls.append(call)

    def calls(self) -> list[RecordedCall]:
        with self._lock:
            return list(self._calls)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._calls.clear()

"""Structured JSON logs: one line per request, application events in the same format.

Only names and numbers are logged: key names (never keys), model names, statuses, token
counts, latencies. Request and response bodies are never logged.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _dumps(data: Any, **_: Any) -> str:
    return orjson.dumps(data, default=str).decode()


def configure_logging(level: str = "info") -> None:
    numeric = _LEVELS.get(level, logging.INFO)
    processors: list[Any] = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(serializer=_dumps),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Library and stdlib loggers (uvicorn, alembic, ours) print through the same format.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StdlibJSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for noisy in ("uvicorn.access", "aiosqlite", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


class _StdlibJSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "event": record.getMessage(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "timestamp": self.formatTime(record),
        }
        if record.exc_info and record.exc_info[0] is not None:
            # The exception's type only: messages of lower layers may carry URLs or values.
            entry["exc_type"] = record.exc_info[0].__name__
        return _dumps(entry)


def request_logger() -> Any:
    return structlog.get_logger("sluicegate.request")

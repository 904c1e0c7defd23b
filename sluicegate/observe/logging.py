"""Structured JSON logs: one line per request, application events in the same format.

Only names and numbers are logged: key names (never keys), model names, statuses, token
counts, latencies. Request and response bodies are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, BinaryIO

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


def logs_requests(level: str) -> bool:
    return _LEVELS.get(level, logging.INFO) <= logging.INFO


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


# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}


class _StdlibJSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "event": record.getMessage(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "timestamp": self.formatTime(record),
        }
        # Fields passed with extra= (alert events: scope, amounts); our own names and
        # numbers only, never request data.
        for name, value in record.__dict__.items():
            if name not in _RECORD_ATTRIBUTES and name not in entry:
                entry[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
            # Only for errors (gateway bugs): the traceback is what an operator needs then.
            # Warnings (e.g. a failed key sync) keep the type only, as lower layers' messages
            # may carry connection details.
            if record.levelno >= logging.ERROR:
                entry["traceback"] = self.formatException(record.exc_info)
        return _dumps(entry)


class RequestLog:
    """One JSON line per request, in the same shape as the application's structlog lines.

    The request path is the gateway's hottest code: lines are serialised with orjson and
    written through a buffer that is flushed at most ``flush_interval`` seconds after the
    first unflushed line (and at shutdown), instead of one flushed write per request. On a
    crash, at most that interval of request lines is lost.
    """

    def __init__(
        self, enabled: bool, stream: BinaryIO | None = None, flush_interval: float = 0.25
    ) -> None:
        self.enabled = enabled
        self._stream = stream if stream is not None else sys.stderr.buffer
        self._flush_interval = flush_interval
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._second = -1
        self._second_text = ""

    def _timestamp(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1_000_000):06d}Z"

    def write(self, fields: dict[str, Any]) -> None:
        fields["event"] = "request"
        fields["level"] = "info"
        fields["timestamp"] = self._timestamp()
        self._pending.append(orjson.dumps(fields, default=str) + b"\n")
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                asyncio.get_running_loop().call_later(self._flush_interval, self.flush)
            except RuntimeError:  # no loop (tests, shutdown): write now
                self.flush()

    def flush(self) -> None:
        self._flush_scheduled = False
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        try:
            self._stream.write(b"".join(lines))
            self._stream.flush()
        except (OSError, ValueError):  # closed or broken log stream: never fail a request
            pass

"""The alert webhook: alert log events, deduplicated and rate-limited, posted as
Slack-compatible JSON.

Why a logging handler: every alert is first an ordinary WARNING log event carrying
``extra={"alert": <kind>, "subject": <who>, <numbers>}`` (budget thresholds, breakers,
anomalies), so the code that notices a problem only logs, the log shows every alert, and
this sink picks the alert events out of the log stream. Nothing else reaches the webhook.

The webhook URL is a secret (whoever has it can post to the channel): it stays a
:class:`~sluicegate.secret.Secret` until the moment of posting and no log line of this
module carries it, nor an exception's text (aiohttp puts URLs in its messages); failures
are logged with the exception's type only. Payloads carry our names and numbers only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from sluicegate.secret import Secret
from sluicegate.settings_observe import AlertSettings

log = logging.getLogger("sluicegate.alerts")

POST_TIMEOUT = 5.0  # seconds per webhook post; a slow chat service must not pile up posts
CLOSE_TIMEOUT = 3.0  # seconds ``aclose`` waits for posts in flight
_RATE_WINDOW = 60.0  # max_per_minute counts posts over this many seconds
_MAX_FIELDS = 10  # Slack's limit on fields in one section block
_MAX_TEXT = 200  # characters kept of a string value
_DEDUP_PRUNE_AT = 10_000  # (kind, subject) pairs remembered before old ones are pruned

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "alert",
    "subject",
}


class AlertSink(logging.Handler):
    """A root-logger handler that posts alert events to a Slack-compatible webhook.

    Records without an ``alert`` attribute are ignored. An alert is dropped when the same
    kind and subject was posted less than ``min_interval`` seconds ago (counted in
    ``deduplicated``), or when ``max_per_minute`` posts went out in the last minute
    (counted in ``dropped``; one ``alerts.dropped`` line reports how many once the minute
    frees up, or at ``aclose``). A dropped alert does not start a dedup interval.

    ``emit`` may run on any thread: the decision is taken at once under the handler's lock,
    the post is handed to the event loop captured by ``start`` (before ``start`` and after
    ``aclose`` alerts are only logged). Posts time out after ``POST_TIMEOUT`` seconds; a
    failed post is logged (without the URL) and never raises.
    """

    def __init__(
        self,
        settings: AlertSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        host: str | None = None,
        post_timeout: float = POST_TIMEOUT,
    ) -> None:
        super().__init__(logging.WARNING)
        if settings.webhook_url is None:
            raise ValueError("an alert sink needs a webhook_url")
        self._url: Secret = settings.webhook_url
        self._min_interval = settings.min_interval
        self._max_per_minute = settings.max_per_minute
        self._clock = clock
        self._host = host if host is not None else socket.gethostname()
        self._timeout = aiohttp.ClientTimeout(total=post_timeout)
        self._last_sent: dict[tuple[str, str], float] = {}
        self._posts: deque[float] = deque(maxlen=settings.max_per_minute)  # recent post times
        self._unreported = 0  # dropped since the last alerts.dropped line
        self._report_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        # Counters, for tests and metrics.
        self.posted = 0  # handed to the loop for posting
        self.deduplicated = 0
        self.dropped = 0  # over max_per_minute
        self.failed = 0  # posts that did not get a 2xx

    async def start(self) -> None:
        """Capture the running loop and open the HTTP session; posting begins."""
        self._loop = asyncio.get_running_loop()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def aclose(self, grace: float = CLOSE_TIMEOUT) -> None:
        """Leave the root logger, wait up to ``grace`` seconds for posts in flight (then
        cancel them), report drops not yet reported, close the session.

        Not ``close``: that is :meth:`logging.Handler.close`, which ``logging.shutdown``
        calls synchronously at exit."""
        logging.getLogger().removeHandler(self)
        self._loop = None  # from here on, alerts are only logged
        pending = set(self._inflight)
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
        self._report_drops()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- deciding (any thread, under the handler lock) -----------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        kind = getattr(record, "alert", None)
        loop = self._loop
        if not isinstance(kind, str) or loop is None:
            return
        try:
            subject = _subject(record)
            now = self._clock()
            key = (kind, subject)
            last = self._last_sent.get(key)
            if last is not None and now - last < self._min_interval:
                self.deduplicated += 1
                return
            posts = self._posts
            if len(posts) == self._max_per_minute and now - posts[0] < _RATE_WINDOW:
                self.dropped += 1
                self._unreported += 1
                if not self._report_scheduled:
                    self._report_scheduled = True
                    delay = posts[0] + _RATE_WINDOW - now
                    loop.call_soon_threadsafe(loop.call_later, delay, self._report_drops)
                return
            posts.append(now)
            self._remember(key, now)
            payload = build_payload(kind, subject, alert_values(record), self._host, record.created)
            self.posted += 1
            loop.call_soon_threadsafe(self._start_post, kind, subject, payload)
        except RuntimeError:  # the loop closed under us (shutdown): nothing to post with
            return
        except Exception:
            self.handleError(record)

    def _remember(self, key: tuple[str, str], now: float) -> None:
        last_sent = self._last_sent
        if len(last_sent) >= _DEDUP_PRUNE_AT:
            # Rare (thousands of distinct subjects alerting): forget pairs whose interval is
            # over; they would be sent again anyway.
            horizon = now - self._min_interval
            for old in [k for k, at in last_sent.items() if at <= horizon]:
                del last_sent[old]
        last_sent[key] = now

    def _report_drops(self) -> None:
        with self._locked():
            dropped, self._unreported = self._unreported, 0
            self._report_scheduled = False
        if dropped:
            # Logged outside the lock and without an ``alert`` field: this line reaches the
            # log but never comes back to the webhook.
            log.warning(
                "alerts.dropped",
                extra={"dropped": dropped, "max_per_minute": self._max_per_minute},
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()

    # -- posting (on the loop) -------------------------------------------------------------

    def _start_post(self, kind: str, subject: str, payload: dict[str, Any]) -> None:
        if self._session is None or self._loop is None:
            return
        task = asyncio.get_running_loop().create_task(self._post(kind, subject, payload))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _post(self, kind: str, subject: str, payload: dict[str, Any]) -> None:
        session = self._session
        if session is None:
            return
        status: int | None = None
        error: str | None = None
        try:
            async with session.post(
                self._url.reveal(),
                data=orjson.dumps(payload),
                headers={"Content-Type": "application/json"},
                allow_redirects=False,  # a redirect could carry the post somewhere else
            ) as response:
                if response.status < 300:
                    return
                status = response.status
        except Exception as exc:  # any failure: logged, never raised into the gateway
            error = type(exc).__name__  # the type only: aiohttp's messages carry URLs
        self.failed += 1
        log.warning(
            "alerts.webhook_failed",
            extra={"alert_kind": kind, "alert_subject": subject, "status": status, "error": error},
        )


def install_alert_sink(settings: AlertSettings) -> AlertSink | None:
    """Add an :class:`AlertSink` to the root logger; None when no webhook is configured.

    Call it after the logging configuration (which replaces the root logger's handlers),
    then ``await sink.start()`` in the running loop.
    """
    url = settings.webhook_url
    if url is None or not url.reveal():  # unset, or not set in this environment
        return None
    sink = AlertSink(settings)
    root = logging.getLogger()
    # Alerts are WARNINGs. With log_level "error" the root logger would discard them before
    # any handler sees them: let warnings through the root and keep the other handlers at
    # the configured level, so the log shows what it did before.
    if root.level > logging.WARNING:
        for handler in root.handlers:
            handler.setLevel(max(handler.level, root.level))
        root.setLevel(logging.WARNING)
    root.addHandler(sink)
    return sink


def _subject(record: logging.LogRecord) -> str:
    for name in ("subject", "scope", "deployment"):
        value = getattr(record, name, None)
        if value is not None:
            return str(value)[:_MAX_TEXT]
    return ""


def alert_values(record: logging.LogRecord) -> dict[str, bool | int | float | str | None]:
    """The alert's numbers and short names, from the record's ``extra`` fields."""
    values: dict[str, bool | int | float | str | None] = {}
    for name, value in record.__dict__.items():
        if name in _RECORD_ATTRIBUTES or name.startswith("_"):
            continue
        if isinstance(value, str):
            values[name] = value[:_MAX_TEXT]
        elif value is None or isinstance(value, bool | int | float):
            values[name] = value
    return values


def build_payload(
    kind: str,
    subject: str,
    values: dict[str, bool | int | float | str | None],
    host: str,
    created: float,
) -> dict[str, Any]:
    """Slack incoming-webhook JSON: ``text`` (the one-line summary, also the notification
    text), ``blocks`` with the values as fields, and the same data machine-readable under
    ``sluicegate`` for receivers that are not Slack (Slack ignores fields it does not know).
    """
    at = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    shown = ", ".join(f"{name}={_show(value)}" for name, value in values.items())
    summary = f"sluicegate alert {kind} for {subject or '-'}" + (f": {shown}" if shown else "")
    fields = [
        {"type": "mrkdwn", "text": f"*{_escape(name)}*\n{_escape(_show(value))}"}
        for name, value in list(values.items())[:_MAX_FIELDS]
    ]
    heading = f":warning: *{_escape(kind)}* for *{_escape(subject or '-')}*"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": heading}}
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": _escape(f"host {host} · {at}")}],
        }
    )
    return {
        "text": _escape(f"{summary} (host {host})"),
        "blocks": blocks,
        "sluicegate": {
            "alert": kind,
            "subject": subject,
            "values": values,
            "host": host,
            "time": at,
        },
    }


def _show(value: bool | int | float | str | None) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


def _escape(text: str) -> str:
    # Slack reads &, < and > as markup (``<!channel>`` pings everyone): names are escaped.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

"""The alert webhook sink against a local receiver: what is posted, deduplication, the rate
limit, and the webhook URL (a secret) never reaching a log line, whatever fails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from sluicegate.delivery.breaker import Breakers, BreakerSettings
from sluicegate.observe import alerts as alerts_module
from sluicegate.observe.alerts import AlertSink, install_alert_sink
from sluicegate.observe.logging import _StdlibJSONFormatter
from sluicegate.policy.budgets import NANO_PER_USD, Budget, SoftThresholdAlerts
from sluicegate.settings_observe import AlertSettings
from sluicegate.state.base import BudgetSpend
from tests.gateway_harness import free_port

SECRET_PATH = "/services/T0CANARY/B0CANARY/xoxCanaryWebhookToken42"
source = logging.getLogger("sluicegate.test_alerts")


@dataclass
class Receiver:
    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0

    async def wait_for(self, count: int) -> None:
        await eventually(lambda: len(self.posts) >= count)
        assert len(self.posts) >= count, self.posts


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``check`` until it holds or ``within`` seconds passed."""
    for _ in range(int(within / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver("")

    async def hook(request: web.Request) -> web.Response:
        if found.delay:
            await asyncio.sleep(found.delay)
        found.posts.append(await request.json())
        return web.Response(status=found.status, text="ok" if found.status < 300 else "no")

    app = web.Application()
    app.router.add_post(SECRET_PATH, hook)
    runner = web.AppRunner(app, access_log=None)  # the receiver's log is not ours to check
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}{SECRET_PATH}"
    yield found
    await runner.cleanup()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(url: str, **overrides: Any) -> AlertSettings:
    return AlertSettings.model_validate({"webhook_url": url, **overrides})


@contextlib.asynccontextmanager
async def sink_for(
    url: str, clock: Callable[[], float] = time.monotonic, **overrides: Any
) -> AsyncIterator[AlertSink]:
    sink = AlertSink(settings(url, **overrides), clock=clock, host="gw-test", post_timeout=0.5)
    logging.getLogger().addHandler(sink)
    await sink.start()
    try:
        yield sink
    finally:
        await sink.aclose()
    assert sink not in logging.getLogger().handlers


def alert(kind: str = "anomaly.error_rate", subject: str = "partner 'acme'", **values: Any) -> None:
    source.warning(kind, extra={"alert": kind, "subject": subject, **values})


@pytest.fixture(autouse=True)
def _all_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # everything, aiohttp's too: the secret must be in none


def assert_secret_not_logged(caplog: pytest.LogCaptureFixture, capfd: Any = None) -> None:
    formatter = _StdlibJSONFormatter()
    for record in caplog.records:
        text = formatter.format(record) + repr(record.args) + repr(record.__dict__)
        assert "Canary" not in text, text
    assert "Canary" not in caplog.text
    if capfd is not None:
        out, err = capfd.readouterr()
        assert "Canary" not in out + err


async def test_an_alert_is_posted_in_a_slack_shape(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    async with sink_for(receiver.url) as sink:
        alert(error_rate=0.85, baseline=0.01, requests=40, window_s=60.0)
        await receiver.wait_for(1)
    (payload,) = receiver.posts
    text = payload["text"]
    assert text.startswith("sluicegate alert anomaly.error_rate for partner 'acme'")
    assert "error_rate=0.85" in text and "requests=40" in text and "gw-test" in text
    assert payload["blocks"][0]["type"] == "section"
    fields = payload["blocks"][1]["fields"]
    assert {"type": "mrkdwn", "text": "*error_rate*\n0.85"} in fields
    assert payload["sluicegate"] == {
        "alert": "anomaly.error_rate",
        "subject": "partner 'acme'",
        "values": {"error_rate": 0.85, "baseline": 0.01, "requests": 40, "window_s": 60.0},
        "host": "gw-test",
        "time": payload["sluicegate"]["time"],
    }
    assert sink.posted == 1 and sink.failed == 0
    assert_secret_not_logged(caplog)


async def test_names_are_escaped_for_slack(receiver: Receiver) -> None:
    async with sink_for(receiver.url):
        alert(subject="partner '<!channel> & co'")
        await receiver.wait_for(1)
    payload = receiver.posts[0]
    assert "<!channel>" not in payload["text"]
    assert "&lt;!channel&gt; &amp; co" in payload["text"]
    assert payload["sluicegate"]["subject"] == "partner '<!channel> & co'"  # data as it is


async def test_records_without_an_alert_are_ignored(receiver: Receiver) -> None:
    async with sink_for(receiver.url) as sink:
        source.warning("breaker.redis_unavailable")
        source.error("something broke", extra={"subject": "x"})
        source.warning("not an alert", extra={"alert": 42})  # a kind is a string
        await asyncio.sleep(0.2)
    assert receiver.posts == [] and sink.posted == 0


async def test_the_same_alert_is_deduplicated_within_min_interval(receiver: Receiver) -> None:
    clock = Clock()
    async with sink_for(receiver.url, clock, min_interval=600) as sink:
        alert()
        alert()  # same kind, same subject: dropped
        alert(subject="partner 'other'")  # another subject
        alert(kind="anomaly.latency")  # another kind
        clock.now += 599
        alert()
        await receiver.wait_for(3)
        await asyncio.sleep(0.1)
        assert len(receiver.posts) == 3 and sink.deduplicated == 2
        clock.now += 1  # the interval is over: sent again
        alert()
        await receiver.wait_for(4)
    subjects = [(p["sluicegate"]["alert"], p["sluicegate"]["subject"]) for p in receiver.posts]
    assert subjects == [
        ("anomaly.error_rate", "partner 'acme'"),
        ("anomaly.error_rate", "partner 'other'"),
        ("anomaly.latency", "partner 'acme'"),
        ("anomaly.error_rate", "partner 'acme'"),
    ]


async def test_posts_are_rate_limited_and_the_drops_counted_once(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alerts_module, "_RATE_WINDOW", 0.5)  # a short "minute"
    async with sink_for(receiver.url, min_interval=0, max_per_minute=3) as sink:
        for i in range(7):
            alert(subject=f"partner-{i}")
        await receiver.wait_for(3)
        assert sink.posted == 3 and sink.dropped == 4
        await asyncio.sleep(0.8)  # the window frees up: one line says how many were lost
        reports = [r for r in caplog.records if r.getMessage() == "alerts.dropped"]
        assert len(reports) == 1
        assert reports[0].dropped == 4  # type: ignore[attr-defined]
        assert not hasattr(reports[0], "alert")  # never posted itself
        alert(subject="partner-late")  # room again
        await receiver.wait_for(4)
    assert len(receiver.posts) == 4
    assert [r.getMessage() for r in caplog.records].count("alerts.dropped") == 1


async def test_drops_not_yet_reported_are_reported_at_close(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    async with sink_for(receiver.url, min_interval=0, max_per_minute=1):
        alert(subject="a")
        alert(subject="b")
        await receiver.wait_for(1)
    reports = [r for r in caplog.records if r.getMessage() == "alerts.dropped"]
    assert [r.dropped for r in reports] == [1]  # type: ignore[attr-defined]


async def test_a_failing_webhook_is_logged_without_its_url(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, capfd: Any
) -> None:
    receiver.status = 500
    async with sink_for(receiver.url) as sink:
        alert()
        await receiver.wait_for(1)
        await asyncio.sleep(0.1)
    assert sink.failed == 1
    (failure,) = [r for r in caplog.records if r.getMessage() == "alerts.webhook_failed"]
    assert failure.status == 500 and failure.levelno == logging.WARNING  # type: ignore[attr-defined]
    assert failure.alert_kind == "anomaly.error_rate"  # type: ignore[attr-defined]
    assert_secret_not_logged(caplog, capfd)


async def test_an_unreachable_webhook_is_logged_without_its_url(
    caplog: pytest.LogCaptureFixture, capfd: Any
) -> None:
    url = f"http://127.0.0.1:{free_port()}{SECRET_PATH}"  # nothing listens there
    async with sink_for(url) as sink:
        alert()
        await eventually(lambda: sink.failed > 0)
    assert sink.failed == 1
    (failure,) = [r for r in caplog.records if r.getMessage() == "alerts.webhook_failed"]
    assert failure.error == "ClientConnectorError"  # type: ignore[attr-defined]
    assert_secret_not_logged(caplog, capfd)


async def test_a_slow_webhook_times_out_and_close_does_not_hang(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, capfd: Any
) -> None:
    receiver.delay = 3.0  # beyond the sink's 0.5 s post timeout
    started = time.monotonic()
    async with sink_for(receiver.url) as sink:
        alert()
        await eventually(lambda: sink.failed > 0)
    assert time.monotonic() - started < 2.5
    (failure,) = [r for r in caplog.records if r.getMessage() == "alerts.webhook_failed"]
    assert failure.error is not None and "Timeout" in failure.error  # type: ignore[attr-defined]
    assert_secret_not_logged(caplog, capfd)


async def test_close_waits_for_posts_in_flight(receiver: Receiver) -> None:
    receiver.delay = 0.3
    async with sink_for(receiver.url):
        alert()
        await asyncio.sleep(0.05)  # the post has started; close must not cut it
    assert len(receiver.posts) == 1


async def test_alerts_from_other_threads_are_posted(receiver: Receiver) -> None:
    async with sink_for(receiver.url, min_interval=0):
        threads = [threading.Thread(target=alert, kwargs={"subject": f"t{i}"}) for i in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        await receiver.wait_for(5)
    assert sorted(p["sluicegate"]["subject"] for p in receiver.posts) == [f"t{i}" for i in range(5)]


async def test_no_loop_no_post_and_no_error(receiver: Receiver) -> None:
    sink = AlertSink(settings(receiver.url), host="gw-test")
    logging.getLogger().addHandler(sink)
    try:
        alert()  # not started: logged only
        await asyncio.sleep(0.1)
    finally:
        await sink.aclose()
    alert()  # closed: logged only
    assert receiver.posts == [] and sink.posted == 0


def test_install_needs_a_webhook() -> None:
    assert install_alert_sink(AlertSettings()) is None


async def test_install_lets_warnings_through_a_quiet_root(receiver: Receiver) -> None:
    root = logging.getLogger()
    level = root.level
    stream = logging.StreamHandler()
    root.addHandler(stream)
    root.setLevel(logging.ERROR)  # log_level: error
    try:
        sink = install_alert_sink(settings(receiver.url))
        assert sink is not None and sink in root.handlers
        # Warnings now reach the sink, while the other handler still prints errors only.
        assert root.level == logging.WARNING and stream.level == logging.ERROR
        await sink.start()
        alert()
        await receiver.wait_for(1)
        await sink.aclose()
    finally:
        root.removeHandler(stream)
        root.setLevel(level)


# -- alert events at their sources ---------------------------------------------------------


def test_a_breaker_alerts_when_it_trips_here_not_when_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    breakers = Breakers(BreakerSettings(consecutive_failures=2, cooldown=5.0), clock=clock)

    def opened() -> list[Any]:
        return [r for r in caplog.records if getattr(r, "alert", None) == "breaker.opened"]

    for _ in range(2):
        assert breakers.allow("claude-east")
        breakers.record("claude-east", False)
    (event,) = opened()
    assert event.subject == "claude-east" and event.levelno == logging.WARNING
    assert event.consecutive_failures == 2 and event.from_state == "closed"
    assert breakers.allow("claude-east") is False  # open: nothing new to say
    clock.now += 5.0  # half-open; the probe fails: opened again, and said again
    assert breakers.allow("claude-east")
    breakers.record("claude-east", False)
    assert [r.from_state for r in opened()] == ["closed", "half_open"]
    # Opened elsewhere (another process, through Redis): that process alerted, not this one.
    breakers.force_open("claude-west", clock.now + 5.0)
    assert len(opened()) == 2


def test_the_budget_threshold_names_its_subject(caplog: pytest.LogCaptureFixture) -> None:
    budget = Budget.of("partner:p1", "partner 'acme'", 10.0, "monthly")
    assert budget is not None
    spend = BudgetSpend("partner:p1", "monthly", 9 * NANO_PER_USD, budget.limit_nano)
    SoftThresholdAlerts(0.8).check([spend], [budget])
    (event,) = [r for r in caplog.records if getattr(r, "alert", None)]
    assert event.subject == "partner 'acme'" == event.scope  # type: ignore[attr-defined]

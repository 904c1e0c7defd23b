"""Upstream URLs come only from admin configuration (issue 7 §5): nothing in a request (model
names with ``@``, ``//``, ``../``, ``http://``, CRLF; ``Host``, ``X-Forwarded-Host``,
``Forwarded`` and similar headers) moves an upstream call to another host or path. A decoy
server's address is planted everywhere; it must never be contacted."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anthropic
import pytest

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import Gateway, model_entry, running_fake, start_gateway
from tests.integration.test_anthropic_support import key_headers, message_body, raw_request

KEY_A = "sk-ant-host-tricks-0b7e4d2a9c1f"


@pytest.fixture(scope="module")
def fake_a() -> Iterator[FakeUpstream]:
    with running_fake(KEY_A) as fake:
        yield fake


TRICK_MODELS = [
    "x@127.0.0.1:{decoy}",
    "//127.0.0.1:{decoy}/v1/messages",
    "../../v1/messages",
    "..%2F..%2Fadmin",
    "http://127.0.0.1:{decoy}/v1/messages",
    "a\r\nHost: 127.0.0.1:{decoy}\r\nX-Injected: 1",
    "a/../../../etc/passwd",
    "?target=http://127.0.0.1:{decoy}",
    "#frag",
]


@pytest.fixture(scope="module")
def decoy() -> Iterator[FakeUpstream]:
    """A server no request may reach: its address is planted in models and headers."""
    with running_fake(None) as fake:  # type: ignore[arg-type]
        yield fake


@pytest.fixture(scope="module")
def trap(
    fake_a: FakeUpstream, decoy: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    models = [
        model_entry("*", fake_a.url + "/base", api_key="os.environ/TEST_KEY_A"),
    ]
    gateway = start_gateway(
        tmp_path_factory.mktemp("db-models-trap"),
        fake_a,
        model_list=models,
        env={"TEST_KEY_A": KEY_A},
    )
    gateway.create_key("full")
    yield gateway
    gateway.stop()


def test_request_data_never_changes_the_upstream_host_or_path(
    trap: Gateway, fake_a: FakeUpstream, decoy: FakeUpstream
) -> None:
    decoy_host = f"127.0.0.1:{decoy.port}"
    hostile_headers = {
        "host": decoy_host,
        "x-forwarded-host": decoy_host,
        "x-forwarded-proto": "http",
        "forwarded": f"host={decoy_host};proto=http",
        "x-original-url": f"http://{decoy_host}/v1/messages",
        "x-rewrite-url": "/../../v1/messages",
        "anthropic-base-url": f"http://{decoy_host}",
    }
    fake_a.reset()
    sent = 0
    for template in TRICK_MODELS:
        model = template.format(decoy=decoy.port)
        # Control characters are refused before routing (400); the rest are plain names.
        wanted = 400 if "\r" in model else 200
        for path, body in [
            ("/v1/messages", message_body(model)),
            ("/v1/messages", message_body(model, stream=True)),
            (
                "/v1/chat/completions",
                {"model": model, "messages": [{"role": "user", "content": "hi"}]},
            ),
        ]:
            response = raw_request(
                trap.url,
                "POST",
                path,
                json.dumps(body).encode(),
                key_headers(trap.keys["full"], **hostile_headers),
            )
            assert response.status == wanted, (model, path, response.body[:300])
            sent += wanted == 200
    # The same through the SDK, with its base URL and a default header pointing elsewhere.
    client = anthropic.Anthropic(
        base_url=trap.url,
        api_key=trap.keys["full"],
        max_retries=0,
        default_headers={"x-forwarded-host": decoy_host},
    )
    client.messages.create(
        model=f"http://{decoy_host}/x", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    sent += 1

    calls = fake_a.calls
    assert len(calls) == sent
    assert {c.path for c in calls} == {"/base/v1/messages"}
    assert {c.headers["host"] for c in calls} == {f"127.0.0.1:{fake_a.port}"}
    for call in calls:
        assert call.headers["x-api-key"] == KEY_A
        assert "x-forwarded-host" not in call.headers and "forwarded" not in call.headers
        assert "x-injected" not in call.headers
    # Model names arrive as data in the body, unchanged.
    models = {(c.json or {})["model"] for c in calls}
    assert {t.format(decoy=decoy.port) for t in TRICK_MODELS if "\r" not in t} <= models
    assert decoy.calls == []

"""Gateway keys on the Anthropic surface: where credentials may arrive, and refusals.

Missing, wrong, revoked and expired keys all get the same 401 (nothing tells an attacker
which case applies), a request id, ``x-should-retry: false``, and never reach the upstream.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Iterator

import anthropic
import pytest

from sluicegate.fake_upstream import FakeUpstream
from sluicegate.policy.key_admin import create_key, key_pepper
from sluicegate.settings import load_settings
from sluicegate.store.db import create_engine
from sluicegate.store.keys import KeyStore
from tests.gateway_harness import Gateway
from tests.integration.test_anthropic_support import (
    JSON_BODY_HEADERS,
    RawResponse,
    assert_gateway_error,
    message_body,
    post_messages,
    raw_request,
    sdk,
)

EXPIRY_SECONDS = 3
# Longer than the gateway's key sync interval and its miss-check spacing (both 0.5 s).
QUIET = 1.1

BODY = json.dumps(message_body(text="auth check")).encode()


def send(gateway: Gateway, credentials: dict[str, str]) -> RawResponse:
    return raw_request(
        gateway.url, "POST", "/v1/messages", BODY, {**JSON_BODY_HEADERS, **credentials}
    )


def assert_unauthenticated(response: RawResponse) -> bytes:
    assert_gateway_error(response, 401, "authentication_error")
    assert response.headers.get("x-should-retry") == "false"
    return response.body


@pytest.fixture(scope="module")
def expiring_key(gateway: Gateway) -> Iterator[tuple[str, float]]:
    """A key valid for a few seconds, created when the module starts so that the wait for
    its expiry overlaps the other tests."""
    created = time.monotonic()
    key = gateway.create_key(f"expiring-{uuid.uuid4().hex[:8]}", "--expires", f"{EXPIRY_SECONDS}s")
    yield key, created


def test_expiring_key_works_before_expiry(
    gateway: Gateway, fake: FakeUpstream, expiring_key: tuple[str, float]
) -> None:
    key, created = expiring_key
    response = send(gateway, {"x-api-key": key})

    assert time.monotonic() < created + EXPIRY_SECONDS
    assert response.status == 200, response.body
    assert fake.call_count() == 1


@pytest.mark.parametrize(
    "scheme",
    ["x-api-key", "bearer", "both", "garbage x-api-key + bearer", "x-api-key + garbage bearer"],
)
def test_credentials_accepted(gateway: Gateway, fake: FakeUpstream, scheme: str) -> None:
    key = gateway.keys["full"]
    garbage = "sk-sg-" + secrets.token_urlsafe(32)
    credentials = {
        "x-api-key": {"x-api-key": key},
        "bearer": {"authorization": f"Bearer {key}"},
        "both": {"x-api-key": key, "authorization": f"Bearer {key}"},
        "garbage x-api-key + bearer": {"x-api-key": garbage, "authorization": f"Bearer {key}"},
        "x-api-key + garbage bearer": {"x-api-key": key, "authorization": f"Bearer {garbage}"},
    }[scheme]
    response = send(gateway, credentials)

    assert response.status == 200, response.body
    assert response.json()["type"] == "message"
    assert response.request_id.startswith("req_")
    assert fake.call_count() == 1


def test_sdk_uses_bearer_and_is_accepted(gateway: Gateway, fake: FakeUpstream) -> None:
    message = sdk(gateway).messages.create(
        model="claude-sonnet-4-6", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.role == "assistant"
    assert fake.call_count() == 1


def test_refusals_are_identical_and_never_reach_upstream(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    wrong = "sk-sg-" + secrets.token_urlsafe(32)
    cases = {
        "missing": {},
        "wrong x-api-key": {"x-api-key": wrong},
        "wrong bearer": {"authorization": f"Bearer {wrong}"},
        "both wrong": {"x-api-key": wrong, "authorization": f"Bearer {wrong}z"},
        "empty x-api-key": {"x-api-key": ""},
        "bearer without token": {"authorization": "Bearer "},
        "basic scheme with a valid key": {"authorization": f"Basic {gateway.keys['full']}"},
        "valid key with a suffix": {"x-api-key": gateway.keys["full"] + "x"},
    }
    bodies = {name: assert_unauthenticated(send(gateway, creds)) for name, creds in cases.items()}

    assert len(set(bodies.values())) == 1, bodies
    assert fake.call_count() == 0


def test_sdk_raises_authentication_error(gateway: Gateway, fake: FakeUpstream) -> None:
    client = sdk(gateway, key="sk-sg-" + secrets.token_urlsafe(32))
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(
            model="claude-sonnet-4-6", max_tokens=16, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert caught.value.response.headers["request-id"].startswith("req_")
    assert fake.call_count() == 0


def test_key_created_by_cli_while_running_works_immediately(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    key = gateway.create_key(f"fresh-{uuid.uuid4().hex[:8]}")
    assert key.startswith("sk-sg-")

    response = send(gateway, {"x-api-key": key})

    assert response.status == 200, response.body
    assert fake.call_count() == 1


async def test_key_created_right_after_a_reload(
    gateway: Gateway, fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race made deterministic: an unknown key makes the gateway check its key table; a
    key stored (as `keys create` does) right after that check must still work at once."""
    for name, value in gateway.env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(gateway.config)
    engine = create_engine(settings.database_url)
    statuses = []
    try:
        store = KeyStore(engine)
        pepper = await key_pepper(settings, store)
        for _ in range(2):
            await asyncio.sleep(QUIET)
            assert_unauthenticated(send(gateway, {"x-api-key": "sk-sg-" + secrets.token_hex(20)}))
            _, key = await create_key(store, pepper, name=f"racy-{uuid.uuid4().hex[:8]}")
            statuses.append(send(gateway, {"x-api-key": key}).status)
    finally:
        await engine.dispose()

    assert statuses == [200, 200]


def test_revoked_key_is_refused_like_a_wrong_one(gateway: Gateway, fake: FakeUpstream) -> None:
    name = f"to-revoke-{uuid.uuid4().hex[:8]}"
    key = gateway.create_key(name)
    assert send(gateway, {"x-api-key": key}).status == 200
    reference = assert_unauthenticated(send(gateway, {"x-api-key": "sk-sg-nope"}))

    gateway.cli("keys", "revoke", name, "--config", str(gateway.config))
    deadline = time.monotonic() + 5
    while True:
        calls_before = fake.call_count()
        response = send(gateway, {"authorization": f"Bearer {key}"})
        if response.status != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    assert assert_unauthenticated(response) == reference
    assert fake.call_count() == calls_before  # the refused request never went upstream


def test_expired_key_is_refused_like_a_wrong_one(
    gateway: Gateway, fake: FakeUpstream, expiring_key: tuple[str, float]
) -> None:
    key, created = expiring_key
    remaining = created + EXPIRY_SECONDS + 0.5 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    reference = assert_unauthenticated(send(gateway, {"x-api-key": "sk-sg-nope"}))

    for credentials in ({"x-api-key": key}, {"authorization": f"Bearer {key}"}):
        assert assert_unauthenticated(send(gateway, credentials)) == reference
    assert fake.call_count() == 0


def test_limited_key_may_use_its_models(gateway: Gateway, fake: FakeUpstream) -> None:
    limited = gateway.keys["limited"]
    for model in ("claude-sonnet-4-6", "team-alias"):
        response = post_messages(gateway, message_body(model), key=limited)
        assert response.status == 200, (model, response.body)
    assert [c.json["model"] for c in fake.calls] == ["claude-sonnet-4-6", "claude-opus-4-7"]


def test_limited_key_refused_other_models(gateway: Gateway, fake: FakeUpstream) -> None:
    limited = gateway.keys["limited"]
    for model in ("claude-opus-4-7", "claude-haiku-4-5", "slow-model"):
        response = post_messages(gateway, message_body(model), key=limited)
        assert_gateway_error(response, 403, "permission_error")
        assert response.headers.get("x-should-retry") == "false"
    assert fake.call_count() == 0


def test_sdk_permission_denied(gateway: Gateway, fake: FakeUpstream) -> None:
    client = sdk(gateway, key=gateway.keys["limited"])
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        client.messages.create(
            model="claude-opus-4-7", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 403
    assert caught.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert fake.call_count() == 0

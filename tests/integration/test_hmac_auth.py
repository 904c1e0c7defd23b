"""HMAC request signing against running gateways: the accept/reject matrix (replay, clock
skew, body and path covered by the signature, unknown and revoked keys, missing headers),
signing keys made by the admin API and the CLI, both SDKs signing through an HTTP hook, and
a replay refused by a second gateway process sharing Redis.

Every refusal is the gateway's one 401 (byte-identical to a wrong key's) and nothing reaches
the upstream.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from sluicegate.crypto.envelope import generate_master_key
from sluicegate.fake_upstream import FakeUpstream
from sluicegate.policy.hmac_auth import SIGNATURE_HEADER, sign_request
from tests.gateway_harness import Gateway, start_gateway
from tests.integration.auth_support import (
    CHAT,
    MESSAGE,
    admin,
    admin_ok,
    auth_reasons,
    new_signing_key,
    signed_post,
    wrong_key_answer,
)
from tests.integration.test_anthropic_support import JSON_BODY_HEADERS, message_body, raw_request
from tests.redis_harness import claim_redis_db

MASTER_KEY = generate_master_key()
QUIET = 1.2  # longer than the key sync interval (0.5 s) and a miss check


def hmac_config(**extra: Any) -> dict[str, Any]:
    return {
        "secrets": {"master_key": "os.environ/TEST_MASTER_KEY"},
        "auth": {"hmac": {"enabled": True, "window": 300, "clock_skew": 30}},
        **extra,
    }


@pytest.fixture(scope="module")
def gw(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(
        tmp_path_factory.mktemp("hmac-gateway"),
        upstream,
        extra_config=hmac_config(),
        env={"TEST_MASTER_KEY": MASTER_KEY},
    )
    gateway.create_key("signer")
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def signing(gw: Gateway) -> tuple[str, str]:
    return new_signing_key(gw, "signer")


def test_a_signed_request_is_served_without_a_gateway_key(
    gw: Gateway, fake: FakeUpstream, signing: tuple[str, str]
) -> None:
    answer = signed_post(gw, signing)
    assert answer.status == 200, answer.body
    assert answer.json()["type"] == "message"
    chat = signed_post(gw, signing, path="/v1/chat/completions")
    assert chat.status == 200, chat.body
    assert chat.json()["object"] == "chat.completion"
    assert fake.call_count() == 2


def test_the_timestamp_window(gw: Gateway, fake: FakeUpstream, signing: tuple[str, str]) -> None:
    now = int(time.time())
    # Inside: a little in the future (clock skew), a few minutes late (transit, queues).
    for stamp in (now + 20, now - 200):
        assert signed_post(gw, signing, timestamp=stamp).status == 200
    assert fake.call_count() == 2


def test_the_reject_matrix(gw: Gateway, fake: FakeUpstream, signing: tuple[str, str]) -> None:
    reference = wrong_key_answer(gw)
    now = int(time.time())
    once = sign_request(signing[0], signing[1], "POST", "/v1/messages", MESSAGE)
    assert raw_request(gw.url, "POST", "/v1/messages", MESSAGE, {**JSON_BODY_HEADERS, **once})
    fake.reset()
    other_body = json.dumps(message_body(text="changed after signing")).encode()
    unknown = ("sgk_" + "0" * 24, signing[1])
    cases: dict[str, tuple[Any, str]] = {
        "replayed": (
            lambda: raw_request(
                gw.url, "POST", "/v1/messages", MESSAGE, {**JSON_BODY_HEADERS, **once}
            ),
            "replayed signature",
        ),
        "skewed past tolerance": (
            lambda: signed_post(gw, signing, timestamp=now + 45),
            "timestamp in the future",
        ),
        "future": (lambda: signed_post(gw, signing, timestamp=now + 3600), "in the future"),
        "too old": (lambda: signed_post(gw, signing, timestamp=now - 330), "timestamp too old"),
        "body changed after signing": (
            lambda: signed_post(gw, signing, sent_body=other_body),
            "bad signature",
        ),
        "another path": (
            lambda: signed_post(
                gw, signing, path="/v1/messages/count_tokens", sent_path="/v1/messages"
            ),
            "bad signature",
        ),
        "query added": (
            lambda: signed_post(gw, signing, sent_path="/v1/messages?beta=true"),
            "bad signature",
        ),
        "unknown key id": (lambda: signed_post(gw, unknown), "unknown or revoked signing key"),
        "wrong secret": (
            lambda: signed_post(gw, (signing[0], signing[1][:-2] + "xx")),
            "bad signature",
        ),
        "empty timestamp": (
            lambda: signed_post(gw, signing, headers={"x-sluicegate-timestamp": ""}),
            "malformed timestamp",
        ),
        "no signature": (
            lambda: raw_request(
                gw.url,
                "POST",
                "/v1/messages",
                MESSAGE,
                {
                    **JSON_BODY_HEADERS,
                    "x-sluicegate-key-id": signing[0],
                    "x-sluicegate-timestamp": str(now),
                },
            ),
            "signature headers incomplete",
        ),
        "malformed signature": (
            lambda: signed_post(gw, signing, headers={SIGNATURE_HEADER: "v1=abc"}),
            "malformed signature",
        ),
        "a gateway key does not rescue a bad signature": (
            lambda: signed_post(
                gw, signing, sent_body=other_body, headers={"x-api-key": gw.keys["signer"]}
            ),
            "bad signature",
        ),
    }
    for case, (send, reason) in cases.items():
        answer = send()
        assert (answer.status, answer.body) == (401, reference.body), (case, answer.body)
        assert reason in auth_reasons(gw)[-1], case
    assert fake.call_count() == 0


def test_openai_surface_refusal_has_its_shape(
    gw: Gateway, fake: FakeUpstream, signing: tuple[str, str]
) -> None:
    reference = wrong_key_answer(gw, "/v1/chat/completions")
    answer = signed_post(gw, signing, path="/v1/chat/completions", sent_body=CHAT)
    assert (answer.status, answer.body) == (401, reference.body)
    assert fake.call_count() == 0


def signing_hook(signing: tuple[str, str]) -> Any:
    """An httpx2 request hook that signs each request (what an SDK user installs)."""

    def sign(request: httpx2.Request) -> None:
        body = request.read()
        target = request.url.raw_path.decode()
        request.headers.update(sign_request(signing[0], signing[1], request.method, target, body))

    return sign


def test_both_sdks_can_sign_through_an_http_hook(
    gw: Gateway, fake: FakeUpstream, signing: tuple[str, str]
) -> None:
    hooks = {"request": [signing_hook(signing)]}
    claude = anthropic.Anthropic(
        base_url=gw.url,
        api_key="unused-when-signing",
        max_retries=0,
        http_client=httpx2.Client(event_hooks=hooks),
    )
    message = claude.messages.create(
        model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.role == "assistant"
    assert [m.id for m in claude.models.list()]  # GET /v1/models: signed over an empty body
    gpt = openai.OpenAI(
        base_url=gw.url + "/v1",
        api_key="unused-when-signing",
        max_retries=0,
        http_client=httpx2.Client(event_hooks=hooks),
    )
    chat = gpt.chat.completions.create(
        model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    assert chat.choices[0].message.role == "assistant"
    assert fake.call_count() == 2


def test_revoked_signing_keys_and_blocked_keys_are_refused(gw: Gateway, fake: FakeUpstream) -> None:
    gw.create_key("short-lived-signer")
    signing = new_signing_key(gw, "short-lived-signer")
    listed = admin_ok(gw, "GET", "/key/signing_key/list?key_alias=short-lived-signer")
    assert [k["signing_key_id"] for k in listed["signing_keys"]] == [signing[0]]
    assert signing[1] not in json.dumps(listed)  # the secret is shown once only
    assert signed_post(gw, signing).status == 200

    admin_ok(gw, "POST", "/key/block", {"key_alias": "short-lived-signer"})
    assert signed_post(gw, signing).status == 401
    admin_ok(gw, "POST", "/key/unblock", {"key_alias": "short-lived-signer"})
    assert signed_post(gw, signing).status == 200

    revoked = admin_ok(gw, "POST", "/key/signing_key/revoke", {"signing_key_id": signing[0]})
    assert revoked["status"] == "revoked"
    answer = signed_post(gw, signing)
    assert (answer.status, answer.body) == (401, wrong_key_answer(gw).body)
    assert auth_reasons(gw)[-2] == "unknown or revoked signing key"
    assert fake.call_count() == 2


def test_signing_keys_from_the_cli(gw: Gateway, fake: FakeUpstream) -> None:
    config = str(gw.config)
    made = json.loads(
        gw.cli("keys", "signing-key", "create", "--key", "signer", "--config", config).stdout
    )
    assert made["signing_key_id"].startswith("sgk_") and len(made["secret"]) == 43
    signing = (made["signing_key_id"], made["secret"])
    time.sleep(QUIET)  # the gateway picks up keys made by another process
    assert signed_post(gw, signing).status == 200
    listed = json.loads(gw.cli("keys", "signing-key", "list", "--json", "--config", config).stdout)
    assert made["signing_key_id"] in {row["signing_key_id"] for row in listed}
    assert made["secret"] not in json.dumps(listed)
    gw.cli("keys", "signing-key", "revoke", made["signing_key_id"], "--config", config)
    time.sleep(QUIET)
    assert signed_post(gw, signing).status == 401
    assert fake.call_count() == 1


def test_without_a_master_key_signing_keys_cannot_be_made(gateway: Gateway) -> None:
    status, answer = admin(gateway, "POST", "/key/signing_key/new", {"key_alias": "full"})
    assert status == 409, answer
    assert "secrets.master_key" in answer["error"]["message"]
    done = gateway.cli(
        "keys", "signing-key", "create", "--key", "full", "--config", str(gateway.config),
        check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "master key" in done.stderr and "Traceback" not in done.stderr


def test_a_replay_is_refused_by_another_instance_sharing_redis(
    upstream: FakeUpstream, fake: FakeUpstream, tmp_path: Path
) -> None:
    with claim_redis_db() as redis_url:
        config = hmac_config(redis_url=redis_url)
        env = {"TEST_MASTER_KEY": MASTER_KEY}
        first = start_gateway(tmp_path / "a", upstream, extra_config=config, env=env)
        try:
            first.create_key("shared-signer")
            signing = new_signing_key(first, "shared-signer")
            shared_db = {**config, "database_url": f"sqlite:///{tmp_path / 'a'}/sluicegate.db"}
            second = start_gateway(tmp_path / "b", upstream, extra_config=shared_db, env=env)
            try:
                headers = {
                    **JSON_BODY_HEADERS,
                    **sign_request(signing[0], signing[1], "POST", "/v1/messages", MESSAGE),
                }
                assert (
                    raw_request(first.url, "POST", "/v1/messages", MESSAGE, headers).status == 200
                )
                replay = raw_request(second.url, "POST", "/v1/messages", MESSAGE, headers)
                assert (replay.status, replay.body) == (401, wrong_key_answer(second).body)
                assert "replayed signature" in auth_reasons(second)
                assert signed_post(second, signing).status == 200  # a fresh signature is fine
            finally:
                second.stop()
        finally:
            first.stop()
    assert fake.call_count() == 2

"""HMAC request signing (policy/hmac_auth) and the replay guard (policy/replay): the
canonical form, the time window, and that a signature is accepted once."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from sluicegate.policy.auth import AuthRefused, Principal, SigningEntry
from sluicegate.policy.hmac_auth import (
    KEY_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    HmacVerifier,
    canonical_request,
    new_signing_secret,
    sign_request,
)
from sluicegate.policy.replay import MemoryReplayGuard
from sluicegate.settings_auth import HmacSettings

SECRET = new_signing_secret()
PRINCIPAL = Principal("key_1", "app", "h", (), None)
ENTRY = SigningEntry("sgk_1", SECRET.encode(), PRINCIPAL)
BODY = b'{"model":"m","max_tokens":5,"messages":[]}'
TARGET = "/v1/messages?beta=true"


def verifier(guard: MemoryReplayGuard | None = None, **settings: int) -> HmacVerifier:
    return HmacVerifier(
        HmacSettings(enabled=True, **settings),
        guard or MemoryReplayGuard(),
        {"sgk_1": ENTRY}.get,
    )


async def accept(check: HmacVerifier, headers: dict[str, str], body: bytes = BODY) -> None:
    signed = check.check(
        headers[KEY_ID_HEADER], headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], "POST",
        TARGET,
    )  # fmt: skip
    await signed.verify(body)


def test_the_canonical_form_and_signature_are_as_documented() -> None:
    assert len(SECRET) == 43 and "=" not in SECRET
    canonical = canonical_request("post", TARGET, "1700000000", BODY)
    digest = hashlib.sha256(BODY).hexdigest()
    assert canonical == f"POST\n{TARGET}\n1700000000\n{digest}".encode()
    headers = sign_request("sgk_1", SECRET, "POST", TARGET, BODY, timestamp=1700000000)
    expected = hmac.new(SECRET.encode(), canonical, hashlib.sha256).hexdigest()
    assert headers == {
        KEY_ID_HEADER: "sgk_1",
        TIMESTAMP_HEADER: "1700000000",
        SIGNATURE_HEADER: f"v1={expected}",
    }


async def test_a_signature_is_accepted_once() -> None:
    check = verifier()
    headers = sign_request("sgk_1", SECRET, "POST", TARGET, BODY)
    await accept(check, headers)
    with pytest.raises(AuthRefused) as refused:
        await accept(check, headers)
    assert refused.value.reason == "replayed signature"
    # The same signature spelt in capitals is the same signature.
    upper = {**headers, SIGNATURE_HEADER: "v1=" + headers[SIGNATURE_HEADER][3:].upper()}
    with pytest.raises(AuthRefused, match="Invalid or missing API key"):
        await accept(check, upper)


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(-301, "timestamp too old"), (31, "timestamp in the future"), (3600, "in the future")],
)
async def test_the_time_window(offset: int, reason: str) -> None:
    stamp = int(time.time()) + offset
    headers = sign_request("sgk_1", SECRET, "POST", TARGET, BODY, timestamp=stamp)
    with pytest.raises(AuthRefused) as refused:
        await accept(verifier(), headers)
    assert reason in refused.value.reason
    assert refused.value.key_id == "key_1"


@pytest.mark.parametrize("offset", [-290, -1, 0, 25])
async def test_inside_the_window(offset: int) -> None:
    stamp = int(time.time()) + offset
    await accept(verifier(), sign_request("sgk_1", SECRET, "POST", TARGET, BODY, timestamp=stamp))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({KEY_ID_HEADER: "sgk_unknown"}, "unknown or revoked signing key"),
        ({TIMESTAMP_HEADER: "12.5"}, "malformed timestamp"),
        ({TIMESTAMP_HEADER: "-5"}, "malformed timestamp"),
        ({SIGNATURE_HEADER: "v2=" + "0" * 64}, "malformed signature"),
        ({SIGNATURE_HEADER: "v1=" + "0" * 63}, "malformed signature"),
        ({SIGNATURE_HEADER: "v1=" + "g" * 64}, "malformed signature"),
        ({SIGNATURE_HEADER: "v1=" + "0" * 64}, "bad signature"),
    ],
)
async def test_malformed_or_wrong_headers(change: dict[str, str], reason: str) -> None:
    headers = {**sign_request("sgk_1", SECRET, "POST", TARGET, BODY), **change}
    with pytest.raises(AuthRefused) as refused:
        await accept(verifier(), headers)
    assert refused.value.reason == reason


async def test_body_method_and_target_are_covered() -> None:
    headers = sign_request("sgk_1", SECRET, "POST", TARGET, BODY)
    check = verifier()
    with pytest.raises(AuthRefused, match="Invalid"):
        await accept(check, headers, BODY + b" ")
    for method, target in (("PUT", TARGET), ("POST", "/v1/messages")):
        signed = check.check(
            "sgk_1", headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], method, target
        )
        with pytest.raises(AuthRefused) as refused:
            await signed.verify(BODY)
        assert refused.value.reason == "bad signature"
    with pytest.raises(AuthRefused, match="Invalid"):
        check.check("sgk_1", None, headers[SIGNATURE_HEADER], "POST", TARGET)


async def test_a_refused_signature_is_not_remembered() -> None:
    guard = MemoryReplayGuard()
    check = verifier(guard)
    headers = sign_request("sgk_1", SECRET, "POST", TARGET, BODY)
    with pytest.raises(AuthRefused):
        await accept(check, headers, b"other body")
    await accept(check, headers)  # the genuine request still goes through once


def test_memory_guard_forgets_after_ttl_and_stays_bounded() -> None:
    guard = MemoryReplayGuard(max_size=3)
    assert guard.check_and_add("a", 0.05)
    assert not guard.check_and_add("a", 0.05)
    time.sleep(0.06)
    assert guard.check_and_add("a", 0.05)
    for token in "bcde":
        assert guard.check_and_add(token, 60)
    assert len(guard._expiry) <= 3

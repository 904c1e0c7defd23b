"""JWT partners against a running gateway: the accept/reject matrix through raw HTTP and both
SDKs, keys from a JWKS server on loopback (rotated while the gateway runs), a static HS256
secret, partner mapping with the partner's limits, and models claims.

Every refusal is the gateway's one 401 in the surface's shape (byte-identical to a wrong
key's) and nothing reaches the upstream.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import jwt
import openai
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import Gateway, start_gateway
from tests.integration.test_anthropic_support import (
    JSON_BODY_HEADERS,
    RawResponse,
    assert_gateway_error,
    log_entries,
    message_body,
    raw_request,
)

ISSUER = "https://issuer.sluicegate.test"
AUDIENCE = "sluicegate-gateway"
HS_SECRET = "jwt-hs256-secret-" + secrets.token_hex(16)
RSA_1 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_1 = ec.generate_private_key(ec.SECP256R1())
ANTHROPIC_BODY = json.dumps(message_body(text="jwt")).encode()
OPENAI_BODY = json.dumps(
    {"model": "claude-sonnet-4-6", "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]}
).encode()


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> Any:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk, alg = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "RS256"
    else:
        jwk, alg = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "ES256"
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


class JwksServer:
    """The issuer's key endpoint on loopback: serves ``keys``, counts fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    async def _jwks(self, _: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response({"keys": list(self.keys)})

    def start(self) -> None:
        ready = threading.Event()

        async def serve() -> None:
            app = web.Application()
            app.router.add_get("/jwks.json", self._jwks)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = self._runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}/jwks.json"
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        threading.Thread(target=run, name="jwks-server", daemon=True).start()
        assert ready.wait(10)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    server.keys = [public_jwk(RSA_1, "rsa-1"), public_jwk(EC_1, "ec-1")]
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gw(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory, jwks: JwksServer
) -> Iterator[Gateway]:
    gateway = start_gateway(
        tmp_path_factory.mktemp("jwt-gateway"),
        upstream,
        extra_config={
            "auth": {
                "jwt": {
                    "issuer": ISSUER,
                    "audience": AUDIENCE,
                    "algorithms": ["RS256", "ES256", "HS256"],
                    "secret": "os.environ/TEST_JWT_SECRET",
                    "jwks_url": jwks.url,
                    "jwks_refresh_interval": 0.5,
                    "models_claim": "models",
                }
            }
        },
        env={"TEST_JWT_SECRET": HS_SECRET},
    )
    config = str(gateway.config)
    gateway.cli("partners", "create", "acme", "--config", config)
    gateway.cli("partners", "create", "metered", "--config", config, "--rpm", "2")
    gateway.create_key("plain")
    yield gateway
    gateway.stop()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "partner": "acme", "iat": now,
            "exp": now + 600}  # fmt: skip
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def token(alg: str = "RS256", kid: str | None = "rsa-1", **overrides: Any) -> str:
    key: Any = {"RS256": RSA_1, "ES256": EC_1, "HS256": HS_SECRET}[alg]
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers={"kid": kid} if kid else {})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        (b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature))
    )


# -- the five ways a client presents a token ----------------------------------------------


def raw_anthropic(gw: Gateway, credential: str, bearer: bool = False) -> RawResponse:
    auth = {"authorization": f"Bearer {credential}"} if bearer else {"x-api-key": credential}
    return raw_request(
        gw.url, "POST", "/v1/messages", ANTHROPIC_BODY, {**JSON_BODY_HEADERS, **auth}
    )


def raw_openai(gw: Gateway, credential: str) -> RawResponse:
    headers = {"content-type": "application/json", "authorization": f"Bearer {credential}"}
    return raw_request(gw.url, "POST", "/v1/chat/completions", OPENAI_BODY, headers)


def anthropic_sdk(gw: Gateway, credential: str, *, bearer: bool = False) -> anthropic.Anthropic:
    if bearer:
        return anthropic.Anthropic(base_url=gw.url, auth_token=credential, max_retries=0)
    return anthropic.Anthropic(base_url=gw.url, api_key=credential, max_retries=0)


def openai_sdk(gw: Gateway, credential: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=credential, max_retries=0)


def sdk_message(client: anthropic.Anthropic, model: str = "claude-sonnet-4-6") -> Any:
    return client.messages.create(
        model=model, max_tokens=16, messages=[{"role": "user", "content": "jwt"}]
    )


def sdk_chat(client: openai.OpenAI, model: str = "claude-sonnet-4-6") -> Any:
    return client.chat.completions.create(
        model=model, max_tokens=16, messages=[{"role": "user", "content": "jwt"}]
    )


@pytest.mark.parametrize(
    "make", [lambda: token("RS256"), lambda: token("ES256", "ec-1"), lambda: token("HS256", None)],
    ids=["RS256-jwks", "ES256-jwks", "HS256-secret"],
)  # fmt: skip
def test_valid_tokens_are_accepted_by_every_client(
    gw: Gateway, fake: FakeUpstream, make: Any
) -> None:
    credential = make()
    assert raw_anthropic(gw, credential).status == 200
    assert raw_anthropic(gw, credential, bearer=True).status == 200
    assert raw_openai(gw, credential).status == 200
    assert sdk_message(anthropic_sdk(gw, credential)).role == "assistant"
    assert sdk_message(anthropic_sdk(gw, credential, bearer=True)).role == "assistant"
    assert sdk_chat(openai_sdk(gw, credential)).choices[0].message.role == "assistant"
    assert fake.call_count() == 6


def test_a_token_is_attributed_to_its_subject_and_partner(gw: Gateway, fake: FakeUpstream) -> None:
    response = raw_anthropic(gw, token(sub="attributed-dave"))
    assert response.status == 200
    deadline = time.monotonic() + 5
    while True:
        lines = [e for e in log_entries(gw) if e.get("request_id") == response.request_id]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert lines, gw.log_text()[-2000:]
    assert lines[0]["key_name"] == "jwt:attributed-dave"
    assert lines[0]["partner"] == "acme"


def reject_matrix() -> dict[str, str]:
    now = int(time.time())
    good_header, _, good_signature = token().split(".")
    tampered_payload = b64(json.dumps(claims(partner="metered", sub="mallory")).encode())
    # RS->HS confusion: HS256 "signed" with the issuer's public RSA key as the HMAC secret.
    pem = RSA_1.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    confused = f"{b64(json.dumps({'alg': 'HS256', 'kid': 'rsa-1'}).encode())}." + b64(
        json.dumps(claims()).encode()
    )
    confused_mac = hmac.new(pem, confused.encode(), hashlib.sha256).digest()
    return {
        "expired": token(exp=now - 3600),
        "not yet valid": token(nbf=now + 3600),
        "beyond leeway (exp)": token(exp=now - 60),
        "beyond leeway (iat)": token(iat=now + 120),
        "wrong issuer": token(iss="https://evil.example"),
        "wrong audience": token(aud="another-service"),
        "no audience": token(aud=None),
        "alg none": handmade({"alg": "none", "typ": "JWT"}, claims()),
        "alg not allowed (RS384)": jwt.encode(claims(), RSA_1, "RS384", headers={"kid": "rsa-1"}),
        "alg not allowed (PS256)": jwt.encode(claims(), RSA_1, "PS256", headers={"kid": "rsa-1"}),
        "RS->HS key confusion": f"{confused}.{b64(confused_mac)}",
        "unknown kid": token(kid="never-published"),
        "kid of another type": token("ES256", "rsa-1"),
        "tampered payload": f"{good_header}.{tampered_payload}.{good_signature}",
        "signed by a stranger": jwt.encode(
            claims(),
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "RS256",
            headers={"kid": "rsa-1"},
        ),
        "wrong HS secret": jwt.encode(claims(), "x" * 40, "HS256"),
        "unknown partner": token(partner="nobody-by-this-name"),
        "no subject": token(sub=None),
        "no partner claim": token(partner=None),
    }


def test_every_refusal_is_the_uniform_401_and_never_reaches_upstream(
    gw: Gateway, fake: FakeUpstream, jwks: JwksServer
) -> None:
    wrong_key = "sk-sg-" + secrets.token_urlsafe(32)
    reference = raw_anthropic(gw, wrong_key)
    assert_gateway_error(reference, 401, "authentication_error")
    reference_openai = raw_openai(gw, wrong_key)
    assert reference_openai.status == 401
    assert reference_openai.json()["error"]["code"] == "invalid_api_key"

    for case, credential in reject_matrix().items():
        for bearer in (False, True):
            answer = raw_anthropic(gw, credential, bearer=bearer)
            assert (answer.status, answer.body) == (401, reference.body), case
            assert answer.headers.get("x-should-retry") == "false", case
        answer = raw_openai(gw, credential)
        assert (answer.status, answer.body) == (401, reference_openai.body), case
        with pytest.raises(anthropic.AuthenticationError) as refused:
            sdk_message(anthropic_sdk(gw, credential))
        assert refused.value.response.json() == reference.json(), case
        with pytest.raises(openai.AuthenticationError) as denied:
            sdk_chat(openai_sdk(gw, credential))
        assert denied.value.response.json() == reference_openai.json(), case
    assert fake.call_count() == 0
    # The log says which case it was, never the token.
    reasons = {e.get("reason") for e in log_entries(gw) if e.get("logger") == "sluicegate.auth"}
    for expected in (
        "jwt: expired",
        "jwt: not yet valid",
        "jwt: wrong audience",
        "jwt: wrong issuer",
        "jwt: required claim missing",
        "jwt: algorithm 'none' not allowed",
        "jwt: algorithm 'RS384' not allowed",
        "jwt: algorithm 'PS256' not allowed",
        "jwt: bad signature",
        "jwt: no usable key for kid 'never-published' and alg RS256",
        "jwt: no usable key for kid 'rsa-1' and alg ES256",
        "jwt: unknown partner",
        "jwt: claim 'sub' missing or not a name",
        "jwt: claim 'partner' missing or not a name",
    ):
        assert expected in reasons, (expected, reasons)
    assert all(credential not in gw.log_text() for credential in reject_matrix().values())


def test_a_rotated_key_is_found_by_refetching_the_jwks(
    gw: Gateway, fake: FakeUpstream, jwks: JwksServer
) -> None:
    jwks.keys = [*jwks.keys, public_jwk(RSA_2, "rsa-2")]
    time.sleep(0.6)  # past jwks_refresh_interval since any earlier fetch
    before = jwks.fetches
    rotated = jwt.encode(claims(sub="rotated"), RSA_2, "RS256", headers={"kid": "rsa-2"})
    assert raw_anthropic(gw, rotated).status == 200
    assert jwks.fetches == before + 1
    assert raw_anthropic(gw, rotated).status == 200  # cached: no further fetch
    assert jwks.fetches == before + 1
    # A burst of unknown kids refetches at most once per refresh interval.
    time.sleep(0.6)
    before, started = jwks.fetches, time.monotonic()
    for n in range(8):
        assert raw_anthropic(gw, token(kid=f"unknown-{n}")).status == 401
    allowed = 1 + int((time.monotonic() - started) / 0.5)  # one per interval begun
    assert 1 <= jwks.fetches - before <= min(allowed, 7)
    assert fake.call_count() == 2


def test_the_partners_limits_apply(gw: Gateway, fake: FakeUpstream) -> None:
    statuses = [
        raw_anthropic(gw, token(partner="metered", sub=f"user-{n}")).status for n in range(3)
    ]
    assert statuses == [200, 200, 429]  # rpm 2 for the partner, whoever the subject
    assert fake.call_count() == 2


def test_models_claim_limits_the_models(gw: Gateway, fake: FakeUpstream) -> None:
    restricted = token(sub="scoped", models=["claude-sonnet-*"])
    assert raw_anthropic(gw, restricted).status == 200
    refused = raw_request(
        gw.url,
        "POST",
        "/v1/messages",
        json.dumps(message_body(model="team-alias")).encode(),
        {**JSON_BODY_HEADERS, "x-api-key": restricted},
    )
    assert_gateway_error(refused, 403, "permission_error")
    with pytest.raises(openai.PermissionDeniedError) as denied:
        sdk_chat(openai_sdk(gw, restricted), model="gpt-4o-mini")
    assert denied.value.status_code == 403
    assert denied.value.response.json()["error"]["type"] == "permission_error"
    listed = raw_request(
        gw.url, "GET", "/v1/models", None, {**JSON_BODY_HEADERS, "x-api-key": restricted}
    )
    ids = [m["id"] for m in listed.json()["data"]]
    assert "claude-sonnet-4-6" in ids
    assert all(i.startswith("claude-sonnet-") for i in ids), ids  # not team-alias, gpt-4o...
    assert fake.call_count() == 1


def test_gateway_keys_still_work_beside_jwt(gw: Gateway, fake: FakeUpstream) -> None:
    assert raw_anthropic(gw, gw.keys["plain"]).status == 200
    assert fake.call_count() == 1


def test_without_jwt_configured_a_token_is_just_a_wrong_key(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    answer = raw_anthropic(gateway, token())
    assert_gateway_error(answer, 401, "authentication_error")
    assert fake.call_count() == 0

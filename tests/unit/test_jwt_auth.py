"""JWT verification (policy/jwt_auth) with static keys: what is accepted, what is refused and
why (the reason is for the log; the gateway answers every refusal alike), and the settings
that make a verifier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sluicegate.policy.jwt_auth import JwtRejected, JwtVerifier, looks_like_jwt
from sluicegate.policy.keys import generate_key
from sluicegate.settings import settings_from_mapping
from sluicegate.settings_auth import JwtSettings

ISSUER = "https://issuer.example"
AUDIENCE = "sluicegate"
SECRET = "hs256-test-secret-0123456789abcdef0123"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwt_settings(**overrides: Any) -> JwtSettings:
    config: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ["RS256", "HS256"],
        "secret": SECRET,
        "public_key": pem(RSA_KEY),
        "models_claim": "models",
        **overrides,
    }
    jwt_config = settings_from_mapping({"auth": {"jwt": config}}).auth.jwt
    assert jwt_config is not None
    return jwt_config


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "partner": "acme",
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def rs256(payload: dict[str, Any], **headers: Any) -> str:
    return jwt.encode(payload, RSA_KEY, algorithm="RS256", headers=headers or None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any]) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}."


async def verify(token: str, **overrides: Any) -> Any:
    return await JwtVerifier(jwt_settings(**overrides)).verify(token)


def test_shape_tells_tokens_from_gateway_keys() -> None:
    assert looks_like_jwt(rs256(claims()))
    assert looks_like_jwt(unsigned(claims()))
    assert not any(looks_like_jwt(generate_key()) for _ in range(200))
    for text in ("a.b.c", "eyJ.b.c", "eyJhbGciOiJIUzI1NiJ9.e30", "sk-sg-x.y.z", "eyJa.b.c.d"):
        assert not looks_like_jwt(text)


async def test_valid_rs256_and_hs256_tokens_give_the_identity() -> None:
    rs = await verify(rs256(claims(models=["claude-*", "gpt-4o"])))
    assert (rs.subject, rs.partner, rs.models) == ("alice", "acme", ("claude-*", "gpt-4o"))
    hs = await verify(jwt.encode(claims(sub="bob", models="claude-sonnet-4-6"), SECRET, "HS256"))
    assert (hs.subject, hs.partner, hs.models) == ("bob", "acme", ("claude-sonnet-4-6",))
    assert (await verify(rs256(claims()))).models == ()  # no claim: no restriction by it


async def test_leeway_is_the_allowed_clock_skew() -> None:
    now = int(time.time())
    await verify(rs256(claims(exp=now - 10)))  # expired 10 s ago: within 30 s leeway
    await verify(rs256(claims(nbf=now + 10, iat=now + 10)))  # the issuer's clock is ahead
    await verify(rs256(claims(exp=now - 100)), leeway=120)


@pytest.mark.parametrize(
    ("token_claims", "reason"),
    [
        ({"exp": -3600}, "expired"),
        ({"exp": -45}, "expired"),  # beyond the 30 s leeway
        ({"nbf": 3600}, "not yet valid"),
        ({"nbf": 45}, "not yet valid"),
        ({"iat": 3600}, "not yet valid"),
        ({"iss": "https://evil.example"}, "wrong issuer"),
        ({"aud": "someone-else"}, "wrong audience"),
        ({"aud": None}, "required claim missing"),
        ({"iss": None}, "required claim missing"),
        ({"exp": None}, "required claim missing"),
        ({"sub": None}, "claim 'sub' missing"),
        ({"sub": "x" * 197}, "claim 'sub' missing"),
        ({"partner": None}, "claim 'partner' missing"),
        ({"partner": ["acme"]}, "claim 'partner' missing"),
        ({"models": []}, "not a list of model names"),
        ({"models": [1, 2]}, "not a list of model names"),
    ],
)
async def test_refused_claims(token_claims: dict[str, Any], reason: str) -> None:
    now = int(time.time())
    values = {k: (now + v if k in ("exp", "nbf", "iat") and v is not None else v)
              for k, v in token_claims.items()}  # fmt: skip
    with pytest.raises(JwtRejected, match=reason):
        await verify(rs256(claims(**values)))


async def test_unsigned_and_unlisted_algorithms_are_refused() -> None:
    with pytest.raises(JwtRejected, match="'none' not allowed"):
        await verify(unsigned(claims()))
    with pytest.raises(JwtRejected, match="'RS384' not allowed"):
        await verify(jwt.encode(claims(), RSA_KEY, algorithm="RS384"))
    with pytest.raises(JwtRejected, match="'ES256' not allowed"):
        await verify(jwt.encode(claims(), EC_KEY, algorithm="ES256"))


async def test_rs_to_hs_key_confusion_is_refused() -> None:
    # The attacker signs HS256 with the (public) RSA key as the HMAC secret. HS256 tokens
    # are checked with the configured secret only, never with the public key.
    public = pem(RSA_KEY).encode()
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims()).encode())
    mac = hmac.new(public, f"{header}.{body}".encode(), hashlib.sha256).digest()
    forged = f"{header}.{body}.{b64(mac)}"
    with pytest.raises(JwtRejected, match="bad signature"):
        await verify(forged)
    with pytest.raises(JwtRejected, match="'HS256' not allowed"):  # RS only: not even tried
        await verify(forged, algorithms=["RS256"], secret=None)


async def test_tampered_payload_and_wrong_key_are_refused() -> None:
    header, _, signature = rs256(claims()).split(".")
    tampered = f"{header}.{b64(json.dumps(claims(partner='other')).encode())}.{signature}"
    with pytest.raises(JwtRejected, match="bad signature"):
        await verify(tampered)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(JwtRejected, match="bad signature"):
        await verify(jwt.encode(claims(), other, algorithm="RS256"))
    with pytest.raises(JwtRejected, match="malformed"):
        await verify("eyJhbGciOiJSUzI1NiJ9.%%%.abc")


async def test_es256_with_a_static_key_and_a_key_of_the_wrong_type() -> None:
    ec_only = {"algorithms": ["ES256"], "secret": None, "public_key": pem(EC_KEY)}
    assert (await verify(jwt.encode(claims(), EC_KEY, algorithm="ES256"), **ec_only)).subject
    mixed = {"algorithms": ["ES256", "RS256"], "secret": None, "public_key": pem(EC_KEY)}
    with pytest.raises(JwtRejected):  # an RS256 token cannot be checked with an EC key
        await verify(rs256(claims()), **mixed)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"algorithms": ["none"]}, "algorithms"),
        ({"algorithms": []}, "algorithms"),
        ({"algorithms": ["HS256"], "secret": None, "public_key": None}, "need `secret`"),
        ({"algorithms": ["RS256"], "secret": None, "public_key": None}, "need public_key"),
        ({"algorithms": ["RS256"]}, "only used by HS"),
        ({"algorithms": ["HS256"], "public_key": None, "jwks_url": "https://x/jwks"},
         "need an asymmetric"),
        ({"jwks_url": "https://x/jwks"}, "not both"),
        ({"public_key": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----"}, "PEM"),
        ({"public_key": None, "jwks_url": "http://issuer.example/jwks"}, "https"),
        ({"secret": "short"}, "32 characters"),
        ({"audience": None}, "audience"),
    ],
)  # fmt: skip
def test_settings_refuse_unsafe_or_incomplete_configurations(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(Exception, match=message):
        jwt_settings(**{k: v for k, v in overrides.items()})


def test_settings_accept_loopback_jwks_over_http_and_a_list_of_audiences() -> None:
    config = jwt_settings(
        algorithms=["ES256", "RS256"],
        secret=None,
        public_key=None,
        jwks_url="http://127.0.0.1:9999/jwks.json",
        audience=["a", "b"],
    )
    assert config.jwks_url == "http://127.0.0.1:9999/jwks.json"
    assert settings_from_mapping({}).auth.jwt is None  # JWT is off unless configured

"""Settings of partner authentication besides gateway keys (``auth:``): trusted proxies for
client addresses, JWT bearer tokens and HMAC request signing (docs/security-auth.md)."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from sluicegate.secret import SecretRef
from sluicegate.settings_policy import Strict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# PyJWT's names. "none" is not among them: an unsigned token is never accepted.
SYMMETRIC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
Algorithm = Literal[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "EdDSA",
]  # fmt: skip
_LOOPBACK_HOSTS = ("localhost", "127.", "[::1]")


def parse_networks(value: Any) -> tuple[Network, ...]:
    """CIDR strings -> networks; host bits set (``10.0.0.5/8``) is a mistake, not a network."""
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError("must be a list of CIDR networks, e.g. [127.0.0.1/32, 10.0.0.0/8]")
    networks: list[Network] = []
    for item in value:
        if isinstance(item, ipaddress.IPv4Network | ipaddress.IPv6Network):
            networks.append(item)
            continue
        try:
            networks.append(ipaddress.ip_network(str(item).strip()))
        except ValueError:
            raise ValueError(
                f"{str(item)[:64]!r} is not a CIDR network with its host bits clear"
            ) from None
    return tuple(networks)


Networks = Annotated[tuple[Network, ...], BeforeValidator(parse_networks)]


class JwtSettings(Strict):
    """JWT bearer tokens (``auth.jwt``); present means enabled."""

    issuer: str = Field(min_length=1, description="the required iss claim")
    audience: str | list[str] = Field(
        description="the required aud claim (a token must name this audience, or one of these)"
    )
    algorithms: list[Algorithm] = Field(
        min_length=1,
        description="accepted signing algorithms; HS* verify with `secret`, the others with "
        "`public_key` or the keys at `jwks_url`",
    )
    secret: SecretRef | None = Field(None, description="HS* key, e.g. os.environ/JWT_SECRET")
    public_key: str | None = Field(None, description="a PEM public key (RS/PS/ES/EdDSA)")
    jwks_url: str | None = Field(
        None, description="where the issuer publishes its keys (JWKS); https unless loopback"
    )
    jwks_cache_ttl: float = Field(300.0, gt=0, description="seconds a fetched JWKS is used")
    jwks_refresh_interval: float = Field(
        30.0, ge=0, description="an unknown kid refetches the JWKS at most this often (s)"
    )
    jwks_timeout: float = Field(5.0, gt=0, le=60)
    leeway: float = Field(30.0, ge=0, le=600, description="clock skew allowed on exp/nbf/iat")
    partner_claim: str = Field("partner", min_length=1, description="names the partner")
    subject_claim: str = Field("sub", min_length=1, description='attributed as "jwt:<sub>"')
    models_claim: str | None = Field(
        None, description="a list of model patterns the token may use (absent: all)"
    )
    cache_size: int = Field(10_000, ge=1, description="verified tokens remembered until exp")

    @field_validator("public_key")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is None:
            return None
        # Imported here: only a config with a JWT public key pays for cryptography's bindings.
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            load_pem_public_key(value.encode())
        except (ValueError, TypeError):
            raise ValueError("must be a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
        return value

    @field_validator("jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if value.startswith("https://"):
            return value
        if value.startswith("http://") and value[7:].startswith(_LOOPBACK_HOSTS):
            return value  # a local issuer (tests, sidecars): nothing to intercept on the way
        raise ValueError("must be an https:// URL (http:// only on loopback)")

    @model_validator(mode="after")
    def _keys_for_algorithms(self) -> JwtSettings:
        symmetric = [a for a in self.algorithms if a in SYMMETRIC_ALGORITHMS]
        asymmetric = [a for a in self.algorithms if a in ASYMMETRIC_ALGORITHMS]
        if symmetric and self.secret is None:
            raise ValueError(f"algorithms {symmetric} need `secret`")
        secret = self.secret.reveal() if self.secret is not None else ""
        if secret and len(secret.encode()) < 32:  # empty: an unset variable, lenient commands
            raise ValueError("`secret` must be at least 32 characters (256 bits for HS256)")
        if self.secret is not None and not symmetric:
            raise ValueError("`secret` is only used by HS256/HS384/HS512: list one or drop it")
        if self.public_key is not None and self.jwks_url is not None:
            raise ValueError("give public_key or jwks_url, not both")
        if asymmetric and self.public_key is None and self.jwks_url is None:
            raise ValueError(f"algorithms {asymmetric} need public_key or jwks_url")
        if not asymmetric and (self.public_key is not None or self.jwks_url is not None):
            raise ValueError("public_key/jwks_url need an asymmetric algorithm (RS256, ES256 ...)")
        return self


class HmacSettings(Strict):
    """HMAC request signing (``auth.hmac``)."""

    enabled: bool = False
    window: int = Field(
        300,
        ge=1,
        le=3600,
        description="seconds a signed request stays acceptable (and "
        "its signature is remembered against replay)",
    )
    clock_skew: int = Field(
        30, ge=0, le=600, description="seconds a timestamp may lie in the future"
    )


class AuthSettings(Strict):
    """``auth:`` partner authentication besides gateway keys."""

    trusted_proxies: Networks = Field(
        default=(),
        description="peers (CIDR) whose X-Forwarded-For is believed, e.g. the load balancer; "
        "empty: the TCP peer is the client",
    )
    jwt: JwtSettings | None = None
    hmac: HmacSettings = HmacSettings()

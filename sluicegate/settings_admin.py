"""Settings of the admin surface (``admin:``): scoped tokens, paths and an optional listener
of its own (docs/security-admin.md).

The top-level ``admin_token`` stays what it was: a ``full`` token named ``admin``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from sluicegate.secret import Secret, SecretRef
from sluicegate.settings_policy import Strict

__all__ = [
    "LEGACY_TOKEN_NAME",
    "AdminSettings",
    "AdminToken",
    "AdminTokenSetting",
    "check_admin",
    "configured_tokens",
]

Scope = Literal["read", "full"]
# The name the top-level ``admin_token`` goes by in the audit log.
LEGACY_TOKEN_NAME = "admin"  # noqa: S105 (a name, not a secret)


class AdminTokenSetting(Strict):
    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._@-]+$",
        description="who uses the token; recorded as the actor in the audit log",
    )
    token: SecretRef = Field(description="the token itself, e.g. os.environ/ADMIN_TOKEN_CI")
    scope: Scope = Field(description="read: GET routes only; full: everything")


class AdminSettings(Strict):
    tokens: list[AdminTokenSetting] = Field(
        default_factory=list, description="admin tokens besides admin_token, each with a scope"
    )
    root_paths: bool = Field(
        True,
        description="also serve the admin routes at the root (/key/generate ...), as "
        "LiteLLM-style scripts expect; every route is always served under /admin",
    )
    host: str | None = Field(
        None, min_length=1, description="interface of the admin listener (default: server.host)"
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="serve the admin API only on this port (not on the API port)",
    )
    failed_auth_audit_per_minute: int = Field(
        20,
        ge=1,
        le=10_000,
        description="failed admin logins written to the audit log per minute and process; "
        "the rest are counted in the next entry",
    )


@dataclass(frozen=True, slots=True)
class AdminToken:
    """One usable admin token: its name, scope and the SHA-256 of its value (what the
    gate compares, so every comparison has the same length)."""

    name: str
    scope: Scope
    digest: bytes


def configured_tokens(admin_token: Secret | None, admin: AdminSettings) -> Iterator[AdminToken]:
    """Every configured token with a value (an unset ``os.environ/`` reference in a
    lenient load has none and can never match)."""
    if admin_token is not None and admin_token.reveal():
        yield AdminToken(LEGACY_TOKEN_NAME, "full", _digest(admin_token))
    for entry in admin.tokens:
        if entry.token.reveal():
            yield AdminToken(entry.name, entry.scope, _digest(entry.token))


def _digest(secret: Secret) -> bytes:
    return hashlib.sha256(secret.reveal().encode()).digest()


def check_admin(
    admin: AdminSettings,
    admin_token: Secret | None,
    server_port: int,
    metrics_port: int | None,
) -> None:
    """Cross-field checks (raise :class:`ValueError` naming the setting): unique names,
    distinct tokens, and an admin port apart from the API and metrics ports."""
    names = [LEGACY_TOKEN_NAME] if admin_token is not None else []
    for index, entry in enumerate(admin.tokens):
        if entry.name in names:
            taken = " (the name of admin_token)" if entry.name == LEGACY_TOKEN_NAME else ""
            raise ValueError(f"admin.tokens[{index}].name: {entry.name!r} is taken{taken}")
        names.append(entry.name)
    seen: set[bytes] = set()
    for token in configured_tokens(admin_token, admin):
        if token.digest in seen:
            raise ValueError(
                f"admin.tokens: the token of {token.name!r} is also another token's; "
                "each token must be distinct (a token has exactly one scope)"
            )
        seen.add(token.digest)
    if admin.port is not None:
        if admin.port == server_port:
            raise ValueError("admin.port: must differ from server.port")
        if admin.port == metrics_port:
            raise ValueError("admin.port: must differ from metrics.port")

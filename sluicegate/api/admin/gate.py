"""The admin token check: which configured token (if any) a request carries, and its scope.

Tokens come from ``admin_token`` (a ``full`` token named ``admin``) and ``admin.tokens``.
The offered credential (``Authorization: Bearer`` or ``x-api-key``) is hashed once and its
SHA-256 compared with every configured token's, in constant time and without stopping at a
match, so neither timing nor length tells which token (or how much of one) was right.

Only those two headers are read: ``Host``, ``X-Forwarded-*`` and the client address never
take part in admin authorisation.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Protocol

from sluicegate.errors import AuthenticationFailed, PermissionDenied
from sluicegate.policy.auth import credentials_from_headers
from sluicegate.settings import Settings
from sluicegate.settings_admin import AdminToken, configured_tokens

__all__ = ["ADMIN_OFF", "BAD_TOKEN", "READ_ONLY", "Gate", "HasHeaders", "admin_gate"]

# One message per refusal, whatever the route or the token: answers reveal nothing about
# which tokens exist or what a route would have done.
ADMIN_OFF = "The admin API is off: set admin_token or admin.tokens in the configuration."
BAD_TOKEN = "Invalid or missing admin token."  # noqa: S105 (a message, not a secret)
READ_ONLY = "This admin token has the read scope: it may only call GET routes."


class HasHeaders(Protocol):
    def header(self, name: str) -> str | None: ...


class Gate:
    """Authenticates admin requests against the configured tokens."""

    def __init__(self, tokens: Sequence[AdminToken]) -> None:
        self._tokens = tuple(tokens)

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def identify(self, request: HasHeaders) -> AdminToken:
        """The token the request carries; :class:`PermissionDenied` when no token is
        configured, :class:`AuthenticationFailed` when none matches."""
        if not self._tokens:
            raise PermissionDenied(ADMIN_OFF)
        offered = credentials_from_headers(
            request.header("x-api-key"), request.header("authorization")
        )
        digests = [hashlib.sha256(c.encode()).digest() for c in offered]
        found: AdminToken | None = None
        for token in self._tokens:  # all of them, every time
            for digest in digests:
                if hmac.compare_digest(digest, token.digest):
                    found = token
        if found is None:
            raise AuthenticationFailed(BAD_TOKEN)
        return found

    def check(self, request: HasHeaders) -> None:
        """Any valid token, whatever its scope (metrics scrapes)."""
        self.identify(request)


def admin_gate(settings: Settings) -> Gate:
    """The gate for ``settings``: ``admin_token`` and every token of ``admin.tokens``."""
    return Gate(list(configured_tokens(settings.admin_token, settings.admin)))

"""Security settings: master keys for secrets stored in the database, and the hosts upstream
base URLs may point at (docs/security.md)."""

from __future__ import annotations

import re

import yarl
from pydantic import Field, field_validator

from sluicegate.crypto.envelope import parse_master_key
from sluicegate.secret import Secret, SecretRef
from sluicegate.settings_policy import Strict


class SecretsSettings(Strict):
    """Master keys that wrap the data keys of stored provider credentials and HMAC signing
    secrets. Without any, secrets cannot be stored in the database (config-file keys work)."""

    master_key: SecretRef | None = Field(
        None, description="the primary master key (base64 or hex, 32 bytes), e.g. os.environ/X"
    )
    previous_master_keys: list[SecretRef] = Field(
        default_factory=list, description="older keys, still accepted to open stored secrets"
    )
    master_key_file: str | None = Field(
        None,
        description="a file of keys, one per line, primary first; re-read when it changes "
        "(rotation without a restart)",
    )

    @field_validator("master_key")
    @classmethod
    def _valid_key(cls, value: Secret | None) -> Secret | None:
        if value is not None and value.reveal():
            parse_master_key(value.reveal())
        return value

    @field_validator("previous_master_keys")
    @classmethod
    def _valid_keys(cls, value: list[Secret]) -> list[Secret]:
        for key in value:
            if key.reveal():
                parse_master_key(key.reveal())
        return value


# A host name or address as written in an allow-list: letters, digits, dots, dashes and, for
# IPv6 literals, colons; ``*.`` in front matches any name below that domain.
_HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9:]([a-z0-9.:-]*[a-z0-9:])?")


def upstream_host(url: str) -> str | None:
    """The host an upstream URL connects to, as aiohttp (yarl) parses it: lower-case, IDNA
    encoded, without a trailing dot. ``None`` when the URL has no parsable host."""
    try:
        host = yarl.URL(url).raw_host
    except (ValueError, TypeError):
        return None
    if not host:
        return None
    return host.lower().rstrip(".")


class SecuritySettings(Strict):
    """Hardening settings (``security:``)."""

    allowed_upstream_hosts: list[str] = Field(
        default_factory=list,
        description="hosts a model deployment's api_base may point at: exact names or "
        "addresses (api.anthropic.com, 10.0.0.7) or *.example.com (any name below "
        "example.com); empty: any host. Applies to the config file and the admin API",
    )

    @field_validator("allowed_upstream_hosts")
    @classmethod
    def _valid_hosts(cls, value: list[str]) -> list[str]:
        normalised = []
        for item in value:
            host = item.strip().lower().rstrip(".")
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]  # an IPv6 literal as written in a URL
            if not _HOST_PATTERN.fullmatch(host):
                raise ValueError(
                    f"{item[:100]!r} is not a host name, an address or a *.domain pattern"
                )
            normalised.append(host)
        return normalised

    def allows(self, url: str) -> bool:
        """May a deployment send requests (and its provider key) to ``url``?"""
        if not self.allowed_upstream_hosts:
            return True
        host = upstream_host(url)
        if host is None:
            return False
        for allowed in self.allowed_upstream_hosts:
            if allowed.startswith("*."):
                if host.endswith(allowed[1:]):  # ".example.com": a name strictly below it
                    return True
            elif host == allowed:
                return True
        return False

    def refusal(self, url: str) -> str | None:
        """Why ``url`` is not allowed (a message naming its host), or None when it is."""
        if self.allows(url):
            return None
        host = upstream_host(url)
        shown = host if host is not None else "(none)"
        return (
            f"host {shown[:200]!r} is not in security.allowed_upstream_hosts "
            f"({', '.join(self.allowed_upstream_hosts)[:400]})"
        )

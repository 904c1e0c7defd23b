"""Secrets in the configuration: ``os.environ/NAME`` references resolved at load time into
:class:`Secret`, whose text form never shows the value (so it cannot leak through logs,
reprs or error messages)."""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, ValidationInfo

ENV_PREFIX = "os.environ/"


class Secret:
    """A resolved secret. Its text form is redacted so it cannot leak through logs."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "inline") -> None:
        self._value = value
        self.source = source

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(<redacted from {self.source}>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self.source))


def _resolve_secret(value: Any, info: ValidationInfo | None = None) -> Any:
    if isinstance(value, Secret) or value is None:
        return value
    if not isinstance(value, str):
        raise ValueError("must be a string such as os.environ/NAME")
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"{value!r} is not a valid environment variable reference")
        resolved = os.environ.get(name)
        if resolved is None or resolved == "":
            if info is not None and info.context and info.context.get(LENIENT_SECRETS):
                return Secret("", source=f"{value} (not set here)")
            raise ValueError(f"environment variable {name} is not set")
        return Secret(resolved, source=value)
    if value == "":
        raise ValueError("must not be empty")
    return Secret(value)


# Commands that never call a provider (keys, db) validate the config without requiring
# provider keys and the admin token to be set in their own environment.
LENIENT_SECRETS = "lenient_secrets"


def _show_secret(secret: Secret) -> str:
    return "***redacted***" if secret.source == "inline" else f"{secret.source} (***)"


def _resolve_required_secret(value: Any) -> Any:
    return _resolve_secret(value)


def _resolve_secret_in_context(value: Any, info: ValidationInfo) -> Any:
    return _resolve_secret(value, info)


SecretRef = Annotated[
    Secret, BeforeValidator(_resolve_secret_in_context), PlainSerializer(_show_secret)
]
# Needed by every command (the key-hash pepper): never lenient.
RequiredSecretRef = Annotated[
    Secret, BeforeValidator(_resolve_required_secret), PlainSerializer(_show_secret)
]

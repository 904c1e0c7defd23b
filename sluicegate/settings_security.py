"""Security settings: master keys for secrets stored in the database (docs/security.md)."""

from __future__ import annotations

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

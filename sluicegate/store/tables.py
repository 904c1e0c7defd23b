"""Table definitions (SQLAlchemy Core, portable between SQLite and PostgreSQL).

The schema itself is created and evolved only by the Alembic migrations in
``sluicegate/store/migrations/versions``; ``tests`` check that these definitions and the
migrated database agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

__all__ = [
    "UTCDateTime",
    "audit_log",
    "gateway_keys",
    "metadata",
    "model_deployments",
    "partners",
    "provider_credentials",
    "server_secrets",
    "signing_keys",
    "usage_ledger",
]


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    Values bound must be timezone-aware (a naive datetime is ambiguous and is refused); they
    are stored in UTC. SQLite hands back naive datetimes, which are read as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: pass a timezone-aware datetime (UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json() -> JSON:
    return JSON().with_variant(JSONB(), "postgresql")


def _limit_columns() -> list[Column[Any]]:
    """The limit and budget columns shared by partners and gateway keys (all nullable)."""
    return [
        Column("rpm", Integer(), nullable=True),
        Column("tpm", Integer(), nullable=True),
        Column("max_parallel", Integer(), nullable=True),
        Column("budget_usd", Float(), nullable=True),
        Column("budget_period", String(16), nullable=True),
    ]


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

gateway_keys = Table(
    "gateway_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_hint", String(32), nullable=False),
    Column("models", _json(), nullable=False, server_default=text("'[]'")),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("metadata", _json(), key="metadata_json", nullable=False, server_default=text("'{}'")),
    # Governance (revision 0002). partner_id refers to partners.id; enforced in code.
    Column("partner_id", String(40), nullable=True, index=True),
    *_limit_columns(),
    # Security (revision 0003). A blocked key is refused until unblocked (revocation is
    # final); after a regeneration the previous hash still works until its expiry.
    Column("blocked", Boolean(), nullable=False, server_default=false()),
    Column("previous_key_hash", String(64), nullable=True, index=True),
    Column("previous_key_expires_at", UTCDateTime(), nullable=True),
    Column("allowed_ips", _json(), nullable=False, server_default=text("'[]'")),
)

server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

partners = Table(
    "partners",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("weight", Float(), nullable=False, server_default=text("1.0")),
    *_limit_columns(),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("metadata", _json(), key="metadata_json", nullable=False, server_default=text("'{}'")),
    Column("allowed_ips", _json(), nullable=False, server_default=text("'[]'")),
)

usage_ledger = Table(
    "usage_ledger",
    metadata,
    # BIGINT on PostgreSQL; on SQLite only "INTEGER PRIMARY KEY" autoincrements (it is 64-bit).
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("key_id", String(40), nullable=True),
    Column("key_name", String(200), nullable=True),
    Column("partner_id", String(40), nullable=True),
    Column("partner_name", String(200), nullable=True),
    Column("model", String(256), nullable=True),
    Column("deployment", String(200), nullable=True),
    Column("upstream_model", String(256), nullable=True),
    Column("endpoint", String(32), nullable=False),
    Column("stream", Boolean(), nullable=False),
    Column("status", Integer(), nullable=False),
    Column("error_type", String(64), nullable=True),
    Column("input_tokens", Integer(), nullable=False, server_default=text("0")),
    Column("output_tokens", Integer(), nullable=False, server_default=text("0")),
    Column("cache_read_tokens", Integer(), nullable=False, server_default=text("0")),
    Column("cache_write_tokens", Integer(), nullable=False, server_default=text("0")),
    Column("cost_usd", Float(), nullable=False, server_default=text("0")),
    Column("latency_ms", Float(), nullable=False),
    Column("ttft_ms", Float(), nullable=True),
    Column("upstream_request_id", String(200), nullable=True),
    Column("client_session_id", String(200), nullable=True),
    Column("client_agent_id", String(200), nullable=True),
    Index(None, "created_at"),
    Index(None, "key_id", "created_at"),
    Index(None, "partner_id", "created_at"),
)

# Provider API keys, sealed with envelope encryption (sluicegate.crypto.envelope): the row
# holds ciphertext, the id of the master key that wraps its data key, and a fingerprint
# (the only thing the admin API ever shows of the secret).
provider_credentials = Table(
    "provider_credentials",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("provider", String(32), nullable=False),
    Column("sealed", Text(), nullable=False),
    Column("master_key_id", String(32), nullable=False, index=True),
    Column("fingerprint", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# Models and deployments defined through the admin API, beside the config file's model_list.
# ``params`` holds a model_list entry's fields (a credential is named, never embedded).
model_deployments = Table(
    "model_deployments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("model_name", String(200), nullable=False),
    Column("deployment_id", String(200), nullable=False, unique=True),
    Column("params", _json(), nullable=False, server_default=text("'{}'")),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# HMAC request-signing secrets of gateway keys, sealed like provider credentials (the
# gateway must read them back to check signatures, so they cannot be stored as hashes).
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("key_id", String(40), nullable=False, index=True),
    Column("sealed", Text(), nullable=False),
    Column("master_key_id", String(32), nullable=False, index=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

# Admin actions: who, what, when, from where. Never a secret in ``detail``.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False, index=True),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_type", String(32), nullable=True),
    Column("target_id", String(200), nullable=True),
    Column("source_ip", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("status", Integer(), nullable=False),
    Column("detail", _json(), nullable=False, server_default=text("'{}'")),
)

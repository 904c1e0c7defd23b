"""security: provider credentials and models in the database, HMAC signing keys, audit log,
key blocking and regeneration grace, IP allow-lists

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY_COLUMNS = ("blocked", "previous_key_hash", "previous_key_expires_at", "allowed_ips")


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Nullable columns or constant defaults only: SQLite adds them with ALTER TABLE.
    with op.batch_alter_table("gateway_keys") as batch:
        batch.add_column(
            sa.Column("blocked", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("previous_key_hash", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("previous_key_expires_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column("allowed_ips", _json(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch.create_index("ix_gateway_keys_previous_key_hash", ["previous_key_hash"])
    with op.batch_alter_table("partners") as batch:
        batch.add_column(
            sa.Column("allowed_ips", _json(), nullable=False, server_default=sa.text("'[]'"))
        )

    op.create_table(
        "provider_credentials",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("master_key_id", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_provider_credentials"),
    )
    op.create_index(
        "ix_provider_credentials_master_key_id", "provider_credentials", ["master_key_id"]
    )

    op.create_table(
        "model_deployments",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("deployment_id", sa.String(200), nullable=False),
        sa.Column("params", _json(), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_deployments"),
        sa.UniqueConstraint("deployment_id", name="uq_model_deployments_deployment_id"),
    )

    op.create_table(
        "signing_keys",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.Column("master_key_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_signing_keys"),
    )
    op.create_index("ix_signing_keys_key_id", "signing_keys", ["key_id"])
    op.create_index("ix_signing_keys_master_key_id", "signing_keys", ["master_key_id"])

    op.create_table(
        "audit_log",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_type", sa.String(32), nullable=True),
        sa.Column("target_id", sa.String(200), nullable=True),
        sa.Column("source_ip", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("detail", _json(), nullable=False, server_default=sa.text("'{}'")),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("signing_keys")
    op.drop_table("model_deployments")
    op.drop_table("provider_credentials")
    with op.batch_alter_table("partners") as batch:
        batch.drop_column("allowed_ips")
    with op.batch_alter_table("gateway_keys") as batch:
        batch.drop_index("ix_gateway_keys_previous_key_hash")
        for name in reversed(_KEY_COLUMNS):
            batch.drop_column(name)

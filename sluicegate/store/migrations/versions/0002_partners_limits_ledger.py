"""governance: partners, key limits and budgets, usage ledger

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIMIT_COLUMNS = ("rpm", "tpm", "max_parallel", "budget_usd", "budget_period")


def _json() -> sa.JSON:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _limit_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("rpm", sa.Integer(), nullable=True),
        sa.Column("tpm", sa.Integer(), nullable=True),
        sa.Column("max_parallel", sa.Integer(), nullable=True),
        sa.Column("budget_usd", sa.Float(), nullable=True),
        sa.Column("budget_period", sa.String(16), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "partners",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False, server_default=sa.text("1.0")),
        *_limit_columns(),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("metadata", _json(), nullable=False, server_default=sa.text("'{}'")),
        sa.PrimaryKeyConstraint("id", name="pk_partners"),
        sa.UniqueConstraint("name", name="uq_partners_name"),
    )

    # Nullable columns only: SQLite adds them with ALTER TABLE, no table copy.
    with op.batch_alter_table("gateway_keys") as batch:
        batch.add_column(sa.Column("partner_id", sa.String(40), nullable=True))
        for column in _limit_columns():
            batch.add_column(column)
        batch.create_index("ix_gateway_keys_partner_id", ["partner_id"])

    op.create_table(
        "usage_ledger",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(40), nullable=True),
        sa.Column("key_name", sa.String(200), nullable=True),
        sa.Column("partner_id", sa.String(40), nullable=True),
        sa.Column("partner_name", sa.String(200), nullable=True),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("deployment", sa.String(200), nullable=True),
        sa.Column("upstream_model", sa.String(256), nullable=True),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error_type", sa.String(64), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("output_tokens", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("cache_read_tokens", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("cache_write_tokens", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("cost_usd", sa.Float(), nullable=False, server_default=sa.text("0")),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("upstream_request_id", sa.String(200), nullable=True),
        sa.Column("client_session_id", sa.String(200), nullable=True),
        sa.Column("client_agent_id", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_usage_ledger"),
    )
    op.create_index("ix_usage_ledger_created_at", "usage_ledger", ["created_at"])
    op.create_index("ix_usage_ledger_key_id_created_at", "usage_ledger", ["key_id", "created_at"])
    op.create_index(
        "ix_usage_ledger_partner_id_created_at", "usage_ledger", ["partner_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_table("usage_ledger")
    with op.batch_alter_table("gateway_keys") as batch:
        batch.drop_index("ix_gateway_keys_partner_id")
        for name in reversed(_LIMIT_COLUMNS):
            batch.drop_column(name)
        batch.drop_column("partner_id")
    op.drop_table("partners")

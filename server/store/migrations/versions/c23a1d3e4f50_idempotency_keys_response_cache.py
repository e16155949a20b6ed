"""idempotency keys; response-cache flags on records, ledger and daily usage

- idempotency_keys: a claimed key per account and the answer replayed to its repeats.
- process_records.cached, usage_ledger.cached, usage_daily.cached_requests: requests answered from
  the response cache.

Revision ID: c23a1d3e4f50
Revises: e2a7c3f19b54
Create Date: 2026-11-30 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.store.models

revision = "c23a1d3e4f50"
down_revision = "e2a7c3f19b54"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=32), nullable=False),
        sa.Column("done", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("created_at", server.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("locked_until", server.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", server.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "key"),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"], unique=False)
    with op.batch_alter_table("process_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cached", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("usage_ledger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cached", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("usage_daily", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cached_requests", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_daily", schema=None) as batch_op:
        batch_op.drop_column("cached_requests")
    with op.batch_alter_table("usage_ledger", schema=None) as batch_op:
        batch_op.drop_column("cached")
    with op.batch_alter_table("process_records", schema=None) as batch_op:
        batch_op.drop_column("cached")
    op.drop_index("ix_idempotency_keys_expires_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")

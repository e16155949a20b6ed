"""management API: account suspension, audit events, the request-history index

- accounts.suspended_at: set while an account is suspended.
- audit_events: every change to a key or an account (who, what, when).
- process_records: (account_id, created_at, id) serves GET /v1/process (newest first, keyset
  pagination); it replaces the single-column account_id index.

Revision ID: 5b2e9c1d7a40
Revises: 8cfe8b728415
Create Date: 2026-11-30 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.store.models

revision = "5b2e9c1d7a40"
down_revision = "8cfe8b728415"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suspended_at", server.store.models.UTCDateTime(timezone=True), nullable=True))
    op.create_table(
        "audit_events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.String(length=40), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", server.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_events_created_id", "audit_events", ["created_at", "id"], unique=False)
    op.create_index("ix_audit_events_account_created", "audit_events", ["account_id", "created_at"], unique=False)
    op.create_index(
        "ix_process_records_account_created_id", "process_records", ["account_id", "created_at", "id"], unique=False
    )
    op.drop_index("ix_process_records_account_id", table_name="process_records")


def downgrade() -> None:
    op.create_index("ix_process_records_account_id", "process_records", ["account_id"], unique=False)
    op.drop_index("ix_process_records_account_created_id", table_name="process_records")
    op.drop_index("ix_audit_events_account_created", table_name="audit_events")
    op.drop_index("ix_audit_events_created_id", table_name="audit_events")
    op.drop_table("audit_events")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("suspended_at")

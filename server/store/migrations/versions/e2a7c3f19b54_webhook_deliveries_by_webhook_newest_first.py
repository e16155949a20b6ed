"""webhook deliveries listed per webhook, newest first

- webhook_deliveries: (webhook_id, created_at, id) serves GET /v1/webhooks/{id}/deliveries (keyset
  pagination without a sort); it replaces the single-column webhook_id index.

Revision ID: e2a7c3f19b54
Revises: c4d1e7a9b2f3
Create Date: 2026-11-30 21:25:00
"""

from __future__ import annotations

from alembic import op

revision = "e2a7c3f19b54"
down_revision = "c4d1e7a9b2f3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_webhook_deliveries_webhook_created_id",
        "webhook_deliveries",
        ["webhook_id", "created_at", "id"],
        unique=False,
    )
    op.drop_index("ix_webhook_deliveries_webhook_id", table_name="webhook_deliveries")


def downgrade() -> None:
    op.create_index("ix_webhook_deliveries_webhook_id", "webhook_deliveries", ["webhook_id"], unique=False)
    op.drop_index("ix_webhook_deliveries_webhook_created_id", table_name="webhook_deliveries")

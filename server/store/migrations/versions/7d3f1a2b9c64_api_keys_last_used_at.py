"""api_keys.last_used_at: when a key last authenticated a call

Written off the hot path: the authenticator notes the key id in memory on each call and a periodic
flush writes the newest time per key (at most once per key per flush interval).

Revision ID: 7d3f1a2b9c64
Revises: c23a1d3e4f50
Create Date: 2026-11-30 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.store.models

revision = "7d3f1a2b9c64"
down_revision = "c23a1d3e4f50"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", server.store.models.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")

"""api_keys.cache_default: the response cache's mode for a key's calls that do not set options.cache

Revision ID: a9e4c2d7f1b8
Revises: 7d3f1a2b9c64
Create Date: 2026-12-01 00:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "a9e4c2d7f1b8"
down_revision = "7d3f1a2b9c64"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cache_default", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("cache_default")

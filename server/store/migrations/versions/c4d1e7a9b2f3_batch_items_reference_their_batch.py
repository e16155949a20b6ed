"""a batch's items reference their batch

- Items written without their batch row (a cancelled batch, before the batch row was written with
  its items) get a batch row made from them, so no item points at a missing batch.
- PostgreSQL: a foreign key process_records.batch_id -> batches.id keeps it so. (SQLite: the writer
  writes a batch's row in the transaction of its items; adding a constraint there rebuilds the table.)

Revision ID: c4d1e7a9b2f3
Revises: 5b2e9c1d7a40
Create Date: 2026-11-30 21:15:00
"""

from __future__ import annotations

from alembic import op

revision = "c4d1e7a9b2f3"
down_revision = "5b2e9c1d7a40"
branch_labels = None
depends_on = None

FK = "fk_process_records_batch_id_batches"


def upgrade() -> None:
    op.execute(
        "INSERT INTO batches (id, account_id, key_id, model, item_count, created_at, processing_time_ms) "
        "SELECT batch_id, MIN(account_id), MIN(key_id), MIN(model), COUNT(*), MIN(created_at), 0 "
        "FROM process_records WHERE batch_id IS NOT NULL AND batch_id NOT IN (SELECT id FROM batches) "
        "GROUP BY batch_id"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(FK, "process_records", "batches", ["batch_id"], ["id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(FK, "process_records", type_="foreignkey")

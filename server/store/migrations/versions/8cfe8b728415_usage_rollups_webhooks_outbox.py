"""usage roll-ups, integer cost, webhooks and their outbox

- usage_ledger.cost (NUMERIC, a float on SQLite) becomes cost_units: an exact BIGINT of 10^-10 USD.
- usage_daily: per account, UTC day and model sums of the ledger (backfilled here).
- webhooks, webhook_deliveries (the outbox), webhook_attempts, usage_threshold_crossings.

Revision ID: 8cfe8b728415
Revises: 39fd9c5cf763
Create Date: 2026-11-25 02:33:25.239549
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.store.models

revision = "8cfe8b728415"
down_revision = "39fd9c5cf763"
branch_labels = None
depends_on = None


def _utc_day(column: str) -> str:
    if op.get_bind().dialect.name == "postgresql":
        return f"CAST(({column} AT TIME ZONE 'UTC') AS DATE)"
    return f"date({column})"  # SQLite stores UTC text 'YYYY-MM-DD HH:MM:SS...'


def upgrade() -> None:
    # Integer cost: convert what the ledger holds, then drop the NUMERIC column.
    with op.batch_alter_table("usage_ledger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cost_units", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE usage_ledger SET cost_units = CAST(ROUND(cost * 10000000000) AS BIGINT)")
    with op.batch_alter_table("usage_ledger", schema=None) as batch_op:
        batch_op.drop_column("cost")
        batch_op.alter_column("cost_units", server_default=None)

    op.create_table(
        "usage_daily",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_units", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "day", "model"),
    )
    day = _utc_day("created_at")
    op.execute(
        "INSERT INTO usage_daily (account_id, day, model, requests, prompt_tokens, completion_tokens, cost_units) "
        f"SELECT account_id, {day}, model, SUM(counts_as_request), SUM(prompt_tokens), SUM(completion_tokens), "
        f"SUM(cost_units) FROM usage_ledger GROUP BY account_id, {day}, model"
    )

    op.create_table(
        "usage_threshold_crossings",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("threshold_bp", sa.Integer(), nullable=False),
        sa.Column("used_tokens", sa.BigInteger(), nullable=False),
        sa.Column("crossed_at", server.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "period", "threshold_bp"),
    )
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("events", sa.JSON(), nullable=False),
        sa.Column("secret", sa.String(length=300), nullable=True),
        sa.Column("created_at", server.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhooks_account_id"), ["account_id"], unique=False)

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("webhook_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", server.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", server.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", server.store.models.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_webhook_deliveries_webhook_id"), ["webhook_id"], unique=False)

    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("delivery_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", server.store.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_attempts_delivery_id"), ["delivery_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_attempts_delivery_id"))
    op.drop_table("webhook_attempts")
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_webhook_id"))
        batch_op.drop_index("ix_webhook_deliveries_due")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhooks_account_id"))
    op.drop_table("webhooks")
    op.drop_table("usage_threshold_crossings")
    op.drop_table("usage_daily")

    with op.batch_alter_table("usage_ledger", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cost", sa.Numeric(precision=20, scale=10), nullable=False, server_default="0"))
    op.execute("UPDATE usage_ledger SET cost = cost_units / 10000000000.0")
    with op.batch_alter_table("usage_ledger", schema=None) as batch_op:
        batch_op.drop_column("cost_units")
        batch_op.alter_column("cost", server_default=None)

"""Alembic environment: runs on the connection handed over by :func:`server.store.migrate.upgrade`."""

from __future__ import annotations

from alembic import context

from server.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `plutos migrate` (server.store.migrate.upgrade)")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

"""Alembic environment: always run with a connection handed in by wakedock.db.migrate."""

from __future__ import annotations

from alembic import context

from wakedock.db import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `wakedock migrate` (wakedock.db.migrate)")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()

"""Alembic environment: the connection comes from ``processing.db`` (never an ini file),
and the target metadata is the whole shared schema (registry, loads, processing)."""

from __future__ import annotations

from alembic import context

from processing.schema import load_all_tables

target_metadata = load_all_tables()


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("smartpurse migrations run online only (processing.db.open_database)")
run_migrations_online()

"""The Alembic migrations build exactly the schema the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from processing_env import database
from sqlalchemy import inspect

from processing.db import head_revision, open_database
from processing.schema import load_all_tables


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migrated_schema_equals_metadata(kind: str, tmp_path: Path) -> None:
    with database(kind, tmp_path) as url:
        engine = open_database(url)
        try:
            with engine.connect() as conn:
                ctx = MigrationContext.configure(conn, opts={"compare_type": True})
                assert ctx.get_current_revision() == head_revision()
                diff = compare_metadata(ctx, load_all_tables())
                assert diff == [], diff
                tables = set(inspect(conn).get_table_names())
            assert set(load_all_tables().tables) <= tables
            open_database(url).dispose()  # at head already: a no-op
        finally:
            engine.dispose()


def test_a_database_made_without_migrations_is_refused(tmp_path: Path) -> None:
    from sqlalchemy import create_engine

    from processing.db import DatabaseError

    url = f"sqlite:///{tmp_path / 'old.db'}"
    legacy = create_engine(url)
    load_all_tables().create_all(legacy)
    legacy.dispose()
    with pytest.raises(DatabaseError, match="made without migrations"):
        open_database(url)

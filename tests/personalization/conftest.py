"""Fixtures of the issuer-station tests: a registry database on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import issuer as personalization_env


@pytest.fixture(params=["sqlite", "postgresql"])
def personalization_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A registry database URL: SQLite in tmp_path, then PostgreSQL in a schema of its own."""
    if request.param == "sqlite":
        yield personalization_env.sqlite_url(tmp_path)
    else:
        with personalization_env.pg_schema() as url:
            yield url

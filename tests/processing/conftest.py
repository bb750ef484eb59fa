"""Fixtures of the back-office tests: an import world in each of the ways a batch is imported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support import backoffice as processing_env


@pytest.fixture(params=["sqlite", "postgresql", "sqlite-worker-walks", "postgresql-here-walks"])
def import_world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[processing_env.World]:
    """``processing_db``, and again with every batch imported the way large ones are: a worker process
    verifies the MACs while the importing process stores, the chains walked by the worker (SQLite) or
    by the importing process (PostgreSQL)."""
    with processing_env.world(request.param, tmp_path) as w:
        yield w

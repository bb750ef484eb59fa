"""PostgreSQL for tests: the server URL, and a throw-away schema per test.

Each test gets a schema of its own (search_path in the URL), dropped afterwards, so tests
never see or disturb each other's tables in the shared server database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from processing.db import scratch_schema

PG_ENV = "SMARTPURSE_TEST_PG"


def pg_url() -> str:
    """The server URL, or a skip (a failure under CI, which must run the PostgreSQL tests)."""
    url = os.environ.get(PG_ENV)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the PostgreSQL tests, but {PG_ENV} is not set", pytrace=False)
    pytest.skip(f"{PG_ENV} is not set")


@contextmanager
def pg_schema(prefix: str = "t") -> Iterator[str]:
    """A URL whose connections live in a fresh schema, dropped afterwards."""
    with scratch_schema(pg_url(), prefix) as url:
        yield url

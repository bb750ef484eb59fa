"""The personalization test world: a home with a keystore, a database (SQLite or PostgreSQL).

PostgreSQL tests run in a schema of their own (dropped afterwards), so they never see
or disturb other tests' tables in the shared server database.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

PASSPHRASE = "correct horse battery staple"


def pg_url() -> str | None:
    """SMARTPURSE_TEST_PG, or a skip (a failure under CI, which must run these tests)."""
    url = os.environ.get("SMARTPURSE_TEST_PG")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail("CI must run the PostgreSQL tests, but SMARTPURSE_TEST_PG is not set", pytrace=False)
    pytest.skip("SMARTPURSE_TEST_PG is not set")
    return None


@contextmanager
def pg_schema() -> Iterator[str]:
    """A URL whose connections live in a fresh schema (search_path), dropped afterwards."""
    base = pg_url()
    assert base is not None
    schema = f"pers_{secrets.token_hex(4)}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'registry.db'}"

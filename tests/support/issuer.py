"""The personalization test world: a home with a keystore, a database (SQLite or PostgreSQL).

PostgreSQL tests run in a schema of their own (dropped afterwards), so they never see
or disturb other tests' tables in the shared server database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support import postgres as pg_env

PASSPHRASE = "correct horse battery staple"


@contextmanager
def pg_schema() -> Iterator[str]:
    """A URL in a fresh PostgreSQL schema of its own (see pg_env)."""
    with pg_env.pg_schema("pers") as url:
        yield url


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder / 'registry.db'}"

"""Opening the issuer database: SQLite by default, PostgreSQL by URL.

Every command goes through ``open_database`` so the schema is always current and
SQLite is tuned the same way everywhere (WAL, foreign keys, a busy timeout so two
processes wait for each other instead of failing).
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import ArgumentError, OperationalError

from processing.schema import load_all_tables
from purse.errors import SmartpurseError


class DatabaseError(SmartpurseError):
    """The database cannot be reached or used."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str) -> Engine:
    try:
        engine = create_engine(url, future=True)
    except (ArgumentError, ModuleNotFoundError) as e:
        raise DatabaseError(f"bad database URL {url!r}: {e}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def open_database(url: str) -> Engine:
    """An engine on ``url`` with the schema created or upgraded."""
    engine = make_engine(url)
    try:
        load_all_tables().create_all(engine)
    except OperationalError as e:
        raise DatabaseError(f"cannot open database {engine.url.render_as_string(hide_password=True)}: "
                            f"{str(e.orig).strip().splitlines()[0]}") from None
    return engine

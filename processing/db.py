"""Opening the issuer database: SQLite by default, PostgreSQL by URL, schema by Alembic.

Every command goes through ``open_database``, which upgrades the schema to the newest
migration shipped in ``processing/migrations`` (so an installed package migrates a
database it finds older) and tunes SQLite the same way everywhere (WAL, foreign keys,
a busy timeout so two processes wait for each other instead of failing). Upgrades are
serialized: a PostgreSQL advisory lock, a lock file next to a SQLite database.
"""

from __future__ import annotations

import fcntl
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.exc import ArgumentError
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError

from purse.errors import ExitCode, SmartpurseError

MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x5350_0000  # PostgreSQL advisory lock key


class DatabaseError(SmartpurseError):
    """The database cannot be reached or used."""

    exit_code = ExitCode.DATABASE


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_connection.cursor()
    # First: every pragma below may need a lock another process holds while it creates the database.
    cur.execute("PRAGMA busy_timeout=30000")
    # 16 KiB pages: bulk inserts into the records indexes split and rebalance a quarter as often as with
    # 4 KiB (SQLite bare insert +15 %, docs/performance.md). Only a new database takes it, and only
    # before it is switched to WAL; an existing one keeps its page size.
    cur.execute("PRAGMA page_size=16384")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA cache_size=-131072")  # 128 MiB: bulk inserts into large indexes stay in memory
    # A checkpoint every 8,192 pages (128 MiB of WAL), not SQLite's 1,000: a small batch touching 400 random
    # cards dirties ~1,500 pages, so the default checkpointed after every batch and doubled its commit
    # (31 ms against 14 ms at 300,000 cards; docs/performance.md, "A day of a city network").
    cur.execute("PRAGMA wal_autocheckpoint=8192")
    cur.close()


def make_engine(url: str) -> Engine:
    try:
        engine = create_engine(url)
    except (ArgumentError, ModuleNotFoundError) as e:
        raise DatabaseError(f"bad database URL {url!r}: {e}") from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(connection: Connection | None = None) -> Config:
    """A configuration built in code: the package needs no alembic.ini."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@contextmanager
def _upgrade_lock(engine: Engine, conn: Connection) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK})
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK})
            conn.commit()
    else:
        yield


@contextmanager
def _sqlite_file_lock(engine: Engine) -> Iterator[None]:
    """A lock file next to a SQLite database, held from the first connection to the end of the upgrade.

    Two processes creating the same new database at once otherwise race in the connection's own
    pragmas (page size, WAL), where SQLite may answer "database is locked" at once, busy timeout or not."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        yield
        return
    with open(Path(str(engine.url.database) + ".migrate-lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op when it is there already."""
    with _sqlite_file_lock(engine):
        _upgrade(engine)


def _upgrade(engine: Engine) -> None:
    head = head_revision()
    with engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == head:
            return
        conn.rollback()
        with _upgrade_lock(engine, conn):
            current = MigrationContext.configure(conn).get_current_revision()
            if current == head:
                return
            if current is None and inspect(conn).get_table_names():  # e.g. a terminal's log given as --db
                raise DatabaseError(f"{display_url(engine)} holds tables but is not a smartpurse database: start "
                                    "from a new database (or stamp it with alembic if it matches the schema)")
            conn.rollback()
            with migrating(conn):
                command.upgrade(alembic_config(conn), "head")


@contextmanager
def migrating(conn: Connection) -> Iterator[None]:
    """A transaction on ``conn`` (none open) to run migrations in: on SQLite with foreign keys off."""
    with _sqlite_foreign_keys_off(conn), conn.begin():
        yield


@contextmanager
def _sqlite_foreign_keys_off(conn: Connection) -> Iterator[None]:
    """SQLite's procedure for a schema change that rebuilds a table others reference (a new CHECK on
    ``cards``): foreign keys off outside any transaction, the change, then ``foreign_key_check`` must
    find nothing (https://sqlite.org/lang_altertable.html, "Making other kinds of table schema changes")."""
    if conn.dialect.name != "sqlite":
        yield
        return
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")  # a PRAGMA opens no transaction in the sqlite3 driver
    conn.commit()
    try:
        yield
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise DatabaseError(f"the migration left {len(broken)} rows whose reference is missing: {broken[:3]}")
    finally:
        conn.rollback()
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.commit()


@contextmanager
def committed(conn: Connection) -> Iterator[Connection]:
    """The transaction begun on ``conn``, committed when the block ends and rolled back if it raises."""
    try:
        yield conn
    except BaseException:
        conn.rollback()
        raise
    else:
        conn.commit()


def display_url(engine: Engine) -> str:
    """The engine's URL as said to people: its password hidden."""
    return engine.url.render_as_string(hide_password=True)


def open_database(url: str) -> Engine:
    """An engine on ``url`` with the schema upgraded to the newest migration.

    Raises ``DatabaseError`` in one line for a URL that names nothing usable: a SQLite file in a
    folder that does not exist, a file that is not a database, a server that does not answer."""
    engine = make_engine(url)
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        folder = Path(str(engine.url.database)).parent
        if not folder.is_dir():
            raise DatabaseError(f"cannot open database {display_url(engine)}: there is no folder {folder}")
    try:
        upgrade(engine)
    except SQLAlchemyDatabaseError as e:  # OperationalError among them: unreachable, locked, not a database
        raise DatabaseError(f"cannot open database {display_url(engine)}: "
                            f"{str(e.orig).strip().splitlines()[0]}") from None
    except OSError as e:  # the SQLite lock file beside the database
        raise DatabaseError(f"cannot open database {display_url(engine)}: {e.strerror}") from None
    return engine


@contextmanager
def scratch_schema(url: str, prefix: str = "scratch") -> Iterator[str]:
    """A PostgreSQL URL whose connections live in a fresh schema (search_path), dropped afterwards.

    Tests and benchmarks use it so they never see or disturb the tables of a shared server database.
    """
    schema = f"{prefix}_{secrets.token_hex(6)}"
    admin = make_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    try:
        yield f"{url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

"""One database schema for the issuer: registry (personalization) and processing.

Each submodule defines its tables on the shared ``metadata``; importing this package
registers them all, which is what Alembic and ``processing.db`` need.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, MetaData, String, Table
from sqlalchemy.types import TypeEngine

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def card_number_type(length: int) -> TypeEngine[str]:
    """A column holding a card number: byte-order collation ("C") on PostgreSQL.

    Card numbers are digits, so the collation changes no order and no answer; it changes
    the cost. Under the database's default collation (C.UTF-8: strcoll per comparison) the
    unique (card_number, counter) index made a bulk COPY into ``records`` run at 149k
    records/s; with "C" it ran at 175-190k/s (docs/processing.md, "Schema"). Every card
    number column must have the same collation, or PostgreSQL refuses to compare two of
    them ("could not determine which collation to use"), hence this one definition.
    SQLite compares bytes already (BINARY) and gets no COLLATE clause.
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


CardNumber = card_number_type(16)  # processing and loads: the 16 digits a card carries
RegistryCardNumber = card_number_type(19)  # the registry allows ISO/IEC 7812's longest numbers


def stored_utc(moment: dt.datetime) -> dt.datetime:
    """A moment read back from the books, as UTC: every moment they store is UTC, but SQLite keeps it without
    its offset."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def insert_once(conn: Connection, table: Table, row: dict[str, Any], key: Sequence[str]) -> bool:
    """Insert ``row`` unless a row with its unique ``key`` columns is there already; whether it was new.

    ``INSERT … ON CONFLICT DO NOTHING RETURNING``, which SQLite (3.35+) and PostgreSQL both answer
    truthfully for one row (a bare rowcount is -1 on SQLite)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    returned = next(iter(table.primary_key.columns))
    return conn.execute(dialect.insert(table).values(row).on_conflict_do_nothing(index_elements=list(key))
                        .returning(returned)).scalar() is not None


def load_all_tables() -> MetaData:
    """Import every table module so ``metadata`` knows the whole schema."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return metadata

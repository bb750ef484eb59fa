"""Card numbers allocated in the database: IIN + account sequence + Luhn digit (``purse.cardnumber``).

The account sequence comes from a counter row moved in a transaction (``allocate``):
two processes, on SQLite or PostgreSQL, can never get the same block, and a crashed
process loses nothing because its block was reserved, number by number, in the same
transaction (``processing.schema.registry.card_numbers``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from processing.schema.registry import number_counters
from purse import cardnumber
from purse.errors import UserError


def check_iin(iin: str) -> str:
    """An issuer identification number: 6 or 8 digits (ISO/IEC 7812-1:2017), not starting with 0."""
    iin = str(iin).strip()
    if not iin.isdigit() or len(iin) not in (6, 8) or iin[0] == "0":
        raise UserError(f"issuer identification number must be 6 or 8 digits not starting with 0, not {iin!r}")
    return iin


def sequence_digits(iin: str) -> int:
    return cardnumber.LENGTH - len(iin) - 1


def card_number(iin: str, sequence: int) -> str:
    """IIN + zero-padded account sequence + Luhn check digit."""
    width = sequence_digits(iin)
    if not 0 < sequence < 10**width:
        raise UserError(f"account sequence {sequence} does not fit the {width} digits IIN {iin} leaves")
    body = f"{iin}{sequence:0{width}d}"
    return body + cardnumber.calc_check_digit(body)


def insert_or_ignore(conn: Connection, table: Table, values: dict[str, Any]) -> None:
    """Insert a row unless its key exists. Being a write, it takes SQLite's write lock
    first, so the reads that follow in the transaction can never need an upgrade (which
    WAL refuses at once with "database is locked" when another writer got in between)."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(postgresql.insert(table).values(values).on_conflict_do_nothing())
    elif dialect == "sqlite":
        conn.execute(sqlite.insert(table).values(values).on_conflict_do_nothing())
    else:
        raise UserError(f"unsupported database {dialect!r}: use SQLite or PostgreSQL")


def allocate(conn: Connection, iin: str, count: int) -> list[str]:
    """``count`` fresh numbers, inside the caller's transaction (which must reserve them).

    The counter update is the transaction's first statement that matters: on SQLite it
    takes the write lock before any read (no stale-snapshot upgrade failures), on
    PostgreSQL it locks the counter row until commit, so concurrent allocators queue.
    """
    if count <= 0:
        return []
    iin = check_iin(iin)
    insert_or_ignore(conn, number_counters, {"iin": iin, "next_seq": 1})
    conn.execute(update(number_counters).where(number_counters.c.iin == iin)
                 .values(next_seq=number_counters.c.next_seq + count))
    end = conn.execute(select(number_counters.c.next_seq).where(number_counters.c.iin == iin)).scalar_one()
    first = end - count
    return [card_number(iin, seq) for seq in range(first, end)]

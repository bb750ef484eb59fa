"""Storing records in bulk, once: the driver's fastest path, and who won each conflict.

SQLite gets ``executemany`` of one prepared ``INSERT OR IGNORE``; PostgreSQL gets
binary ``COPY`` into a session temp table, then ``INSERT … SELECT … ON CONFLICT DO
NOTHING`` into ``records``. Either way the unique keys (card, counter) and (terminal,
terminal sequence) decide: a row that was already stored is not stored again. When the
number stored is the number sent (the usual case) nothing more is asked; otherwise
``classify`` looks each row up and tells new rows, exact duplicates and conflicts apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, tuple_

from processing.schema.processing import records
from processing.verify import ROW_FIELDS

Row = tuple[Any, ...]
_COLS = ", ".join(ROW_FIELDS)
_PG_TYPES = ["text", "int8", "int2", "int2", "int8", "int8", "int4", "int4", "int8", "int8", "int8", "int8",
             "int8", "int8", "int8", "int4", "int8", "int4", "int4", "bytea"]
_LOOKUP = 400  # keys per lookup query (SQLite's host-parameter limit is far above 2 x 400)


@dataclass
class Stored:
    """The outcome of storing one chunk."""

    new: list[Row] = field(default_factory=list)
    duplicates: int = 0
    conflicts: list[tuple[Row, Row | None]] = field(default_factory=list)  # (received, stored or None)


class RecordStore:
    """Bulk insertion into ``records`` on one connection, inside the caller's transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name
        self._dbapi = conn.connection.driver_connection
        self._staging = False

    def insert(self, rows: Sequence[Row]) -> int:
        """Insert what is not yet stored; the number of rows actually inserted."""
        if not rows:
            return 0
        if self.dialect == "sqlite":
            before = self._dbapi.total_changes
            self._dbapi.executemany(
                f"INSERT OR IGNORE INTO records ({_COLS}) VALUES ({', '.join('?' * len(ROW_FIELDS))})", rows)
            return int(self._dbapi.total_changes - before)
        if self.dialect == "postgresql":
            cur = self._dbapi.cursor()
            if not self._staging:
                cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS records_in AS SELECT {_COLS} FROM records WITH NO DATA")
                self._staging = True
            cur.execute("TRUNCATE records_in")
            with cur.copy(f"COPY records_in ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_PG_TYPES)
                write = copy.write_row
                for row in rows:
                    write(row)
            cur.execute(f"INSERT INTO records ({_COLS}) SELECT {_COLS} FROM records_in ON CONFLICT DO NOTHING")
            return int(cur.rowcount)
        raise NotImplementedError(f"bulk insert for {self.dialect}")

    def store(self, rows: Sequence[Row], entry_id: int) -> Stored:
        inserted = self.insert(rows)
        if inserted == len(rows):
            return Stored(new=list(rows))
        return self.classify(rows, entry_id)

    def classify(self, rows: Sequence[Row], entry_id: int) -> Stored:
        """Which rows this entry stored, which were there already, which collide with another record."""
        out = Stored()
        c = records.c
        cols = [c[name] for name in ROW_FIELDS]
        by_key: dict[tuple[str, int], Row] = {}
        by_seq: dict[tuple[int, int], Row] = {}
        for i in range(0, len(rows), _LOOKUP):
            part = rows[i : i + _LOOKUP]
            for found in self.conn.execute(select(*cols).where(
                    tuple_(c.card_number, c.counter).in_([(r[0], r[1]) for r in part]))):
                by_key[(found[0], found[1])] = tuple(found)
            for found in self.conn.execute(select(*cols).where(
                    tuple_(c.terminal_id, c.terminal_seq).in_([(r[12], r[13]) for r in part]))):
                by_seq[(found[12], found[13])] = tuple(found)
        claimed: set[tuple[str, int]] = set()
        for row in rows:
            key = (row[0], row[1])
            stored = by_key.get(key) or by_seq.get((row[12], row[13]))
            if stored is None:
                out.conflicts.append((row, None))
            elif bytes(stored[19]) == row[19]:
                if stored[18] == entry_id and key not in claimed:
                    claimed.add(key)
                    out.new.append(row)
                else:
                    out.duplicates += 1
            else:
                out.conflicts.append((row, stored))
        return out

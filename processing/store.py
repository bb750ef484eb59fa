"""Storing records in bulk, once: the driver's fastest path, and who won each conflict.

SQLite gets ``executemany`` of one prepared ``INSERT OR IGNORE``; PostgreSQL gets a
binary ``COPY`` straight into ``records`` inside a savepoint, and only when that hits
a unique key, ``COPY`` into a session temp table then ``INSERT … SELECT … ON CONFLICT
DO NOTHING``. Either way the key (card, counter) decides: a row that was already stored
is not stored again. When the
number stored is the number sent (the usual case) nothing more is asked; otherwise
``classify`` looks each row up and tells new rows, exact duplicates and conflicts apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, select, tuple_, update

from processing.columns import COPY_SIGNATURE, COPY_TRAILER, EntryColumns
from processing.rows import CARD_NUMBER, COUNTER, ENTRY_ID, RAW, ROW_FIELDS, Row
from processing.schema.processing import processing_state, records

_COLS = ", ".join(ROW_FIELDS)
_PG_TYPES = ["text", "int8", "int2", "int8", "int8", "int8", "int4", "int8", "int4", "int4", "bytea"]
RECORDS_VERSION = "records_version"
_LOOKUP = 400  # keys per lookup query (SQLite's host-parameter limit is far above 2 x 400)


@dataclass
class Stored:
    """The outcome of storing one chunk."""

    new: list[Row] = field(default_factory=list)
    duplicates: int = 0
    conflicts: list[tuple[Row, Row]] = field(default_factory=list)  # (received, stored with other bytes)


class RecordStore:
    """Bulk insertion into ``records`` on one connection, inside the caller's transaction."""

    def __init__(self, conn: Connection, versioned: bool = True) -> None:
        """``versioned``: count a new ``records_version`` on the first insert. A batch import counts it
        itself just before it commits (``CardCache.stage``): the version row is then held only for the
        commit, not for the whole batch, and importers running side by side do not queue on it."""
        self.conn = conn
        self.dialect = conn.dialect.name
        self._dbapi: Any = conn.connection.driver_connection
        self._staging = False
        self._counted = not versioned

    def insert(self, rows: Sequence[Row] | EntryColumns) -> int:
        """Insert what is not yet stored; the number of rows actually inserted.

        A chunk given as ``EntryColumns`` goes to PostgreSQL as one prebuilt COPY payload (no
        Python call per row); SQLite binds its rows."""
        if not len(rows):
            return 0
        self._count_version()
        if self.dialect == "sqlite":
            if isinstance(rows, EntryColumns):
                rows = rows.rows
            before = self._dbapi.total_changes
            self._dbapi.executemany(
                f"INSERT OR IGNORE INTO records ({_COLS}) VALUES ({', '.join('?' * len(ROW_FIELDS))})", rows)
            return int(self._dbapi.total_changes - before)
        if self.dialect == "postgresql":
            import psycopg

            cur = self._dbapi.cursor()
            cur.execute("SAVEPOINT bulk_records")
            try:  # the usual case, nothing stored yet: COPY straight into the table
                self._copy(cur, "records", rows)
            except psycopg.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT bulk_records")
            else:
                cur.execute("RELEASE SAVEPOINT bulk_records")
                return len(rows)
            if not self._staging:
                cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS records_in AS SELECT {_COLS} FROM records WITH NO DATA")
                self._staging = True
            cur.execute("TRUNCATE records_in")
            self._copy(cur, "records_in", rows)
            cur.execute(f"INSERT INTO records ({_COLS}) SELECT {_COLS} FROM records_in ON CONFLICT DO NOTHING")
            return int(cur.rowcount)
        raise NotImplementedError(f"bulk insert for {self.dialect}")

    def insert_batch(self, chunks: Callable[[bool], Iterator[EntryColumns]]) -> bool:
        """Insert a whole batch, chunk by chunk; True when every record was new (the usual case).

        ``chunks(first)`` reads the batch; PostgreSQL may read it twice (``first`` False the second time).
        PostgreSQL streams the whole batch as one ``COPY`` in a savepoint, so the server stores one
        chunk while this process builds the next; only if a key collides is that undone and the batch
        stored chunk by chunk through ``insert``. SQLite inserts chunk by chunk."""
        if self.dialect != "postgresql":
            all_new = True
            for cols in chunks(True):
                all_new = self.insert(cols) == len(cols) and all_new
            return all_new
        import psycopg

        cur = self._dbapi.cursor()
        cur.execute("SAVEPOINT bulk_batch")
        try:
            with cur.copy(f"COPY records ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(COPY_SIGNATURE)
                for cols in chunks(True):
                    copy.write(cols.copy_rows())  # sent before it returns: the buffer may be reused
                copy.write(COPY_TRAILER)
        except psycopg.errors.UniqueViolation:
            cur.execute("ROLLBACK TO SAVEPOINT bulk_batch")
            for cols in chunks(False):
                self.insert(cols)
            return False
        cur.execute("RELEASE SAVEPOINT bulk_batch")
        return True

    def _count_version(self) -> None:
        """Once per transaction that stores records: a new records version (``records_version``)."""
        if not self._counted:
            bump_records_version(self.conn)
            self._counted = True

    @staticmethod
    def _copy(cur: Any, table: str, rows: Sequence[Row] | EntryColumns) -> None:
        with cur.copy(f"COPY {table} ({_COLS}) FROM STDIN (FORMAT BINARY)") as copy:
            if isinstance(rows, EntryColumns):
                copy.write(COPY_SIGNATURE)
                copy.write(rows.copy_rows())
                copy.write(COPY_TRAILER)
                return
            _fast_bytea(cur)
            copy.set_types(_PG_TYPES)
            write = copy.write_row
            for row in rows:
                write(row)

    def store(self, rows: Sequence[Row], entry_id: int) -> Stored:
        inserted = self.insert(rows)
        if inserted == len(rows):
            return Stored(new=list(rows))
        return self.classify(rows, entry_id)

    def store_entries(self, parts: Sequence[tuple[Sequence[Row], int]]) -> list[Stored]:
        """Several entries' rows, each with its entry id (a group of batches, processing.group_import): one
        insert of them all when none was stored before (the usual case), else each entry's in turn, in
        the order given, exactly as one ``store`` call per entry would decide."""
        rows = [row for part, _ in parts for row in part]
        staging = self._staging
        self._dbapi.execute("SAVEPOINT entries_records")
        if self.insert(rows) == len(rows):
            self._dbapi.execute("RELEASE SAVEPOINT entries_records")
            return [Stored(new=list(part)) for part, _ in parts]
        self._dbapi.execute("ROLLBACK TO SAVEPOINT entries_records")
        self._staging = staging  # a staging table made since is gone with the savepoint
        return [self.store(part, entry_id) for part, entry_id in parts]

    def classify(self, rows: Sequence[Row], entry_id: int) -> Stored:
        """Which rows this entry stored, which were there already, which collide with another record."""
        out = Stored()
        c = records.c
        cols = [c[name] for name in ROW_FIELDS]
        by_key: dict[tuple[str, int], Row] = {}
        for i in range(0, len(rows), _LOOKUP):
            part = rows[i : i + _LOOKUP]
            for found in self.conn.execute(select(*cols).where(
                    tuple_(c.card_number, c.counter).in_([(r[CARD_NUMBER], r[COUNTER]) for r in part]))):
                by_key[(found[CARD_NUMBER], found[COUNTER])] = tuple(found)
        claimed: set[tuple[str, int]] = set()
        for row in rows:
            key = (row[CARD_NUMBER], row[COUNTER])
            stored = by_key[key]  # the key is the only one: a row not stored has a stored twin
            if bytes(stored[RAW]) == row[RAW]:
                if stored[ENTRY_ID] == entry_id and key not in claimed:
                    claimed.add(key)
                    out.new.append(row)
                else:
                    out.duplicates += 1
            else:
                out.conflicts.append((row, stored))
        return out


def bump_records_version(conn: Connection) -> int:
    """Records are being stored: whoever keeps card states from before must read them again. The new version.

    The row is locked until the transaction ends, so the versions count the storing transactions in
    the order they commit."""
    ps = processing_state.c
    value = conn.execute(update(processing_state).where(ps.name == RECORDS_VERSION)
                         .values(value=ps.value + 1).returning(ps.value)).scalar()
    if value is None:
        conn.execute(insert(processing_state).values(name=RECORDS_VERSION, value=1))
        return 1
    return int(value)


def records_version(conn: Connection) -> int:
    ps = processing_state.c
    return int(conn.execute(select(ps.value).where(ps.name == RECORDS_VERSION)).scalar() or 0)


def _fast_bytea(cur: Any) -> None:
    """Dump ``bytea`` with psycopg's default ``bytes`` dumper (compiled with psycopg[binary]).

    ``set_types(["bytea"])`` otherwise picks the DB-API ``Binary`` wrapper's dumper, written in
    Python: 7 % of a PostgreSQL import, one call per record."""
    from psycopg import adapters
    from psycopg.adapt import PyFormat

    cur.adapters.register_dumper(bytes, adapters.get_dumper(bytes, PyFormat.BINARY))


def select_in(conn: Connection, head: str, keys: Sequence[str]) -> list[tuple[Any, ...]]:
    """``head`` (a SELECT ending in ``WHERE <column>``) for all ``keys`` in one driver call.

    One parameter whatever the number of keys (a JSON array on SQLite, an array on
    PostgreSQL): SQLAlchemy's expanding IN recompiles per list and dominated imports
    touching a hundred thousand cards.
    """
    if not keys:
        return []
    dbapi: Any = conn.connection.driver_connection
    if conn.dialect.name == "sqlite":
        return list(dbapi.execute(f"{head} IN (SELECT value FROM json_each(?))", (json.dumps(list(keys)),)))
    cur = dbapi.cursor()
    cur.execute(f"{head} = ANY(%b)", (list(keys),))  # %b: a binary array, no quoting per element
    return list(cur.fetchall())


def records_after(conn: Connection, heads: Sequence[tuple[str, int]]) -> dict[str, list[Row]]:
    """Each card's stored records after its counter (``heads``: card number, counter), in counter order, in
    one driver call per thousand cards: the cards whose chains a batch left detached are walked from storage,
    and one query each cost a round trip per card (37,746 of them in a day's groups arriving out of order)."""
    out: dict[str, list[Row]] = {}
    dbapi: Any = conn.connection.driver_connection
    cols = ", ".join(f"r.{name}" for name in ROW_FIELDS)
    for i in range(0, len(heads), 1_000):
        part = heads[i : i + 1_000]
        if conn.dialect.name == "sqlite":  # CROSS JOIN: the heads drive, each through the records' key
            rows = dbapi.execute(f"SELECT {cols} FROM json_each(?) AS j CROSS JOIN records r "
                                 "ON r.card_number = json_extract(j.value, '$[0]') "
                                 "AND r.counter > json_extract(j.value, '$[1]') ORDER BY r.card_number, r.counter",
                                 (json.dumps(part),))
        else:
            rows = dbapi.cursor().execute(
                f"SELECT {cols} FROM (SELECT f[1] COLLATE \"C\" AS card_number, f[2]::int8 AS after "
                "FROM unnest(string_to_array(%s, E'\\n')) AS line, string_to_array(line, ',') AS f) AS j "
                "JOIN records r ON r.card_number = j.card_number AND r.counter > j.after "
                "ORDER BY r.card_number, r.counter", ("\n".join(f"{n},{c}" for n, c in part),))
        for row in rows:
            out.setdefault(row[CARD_NUMBER], []).append((*row[:RAW], bytes(row[RAW])))
    return out


_ACCOUNT_COLS = ("card_number", "balance", "chain_counter", "chain_balance", "chain_time", "max_counter", "gap_since")


def write_card_accounts(conn: Connection, new: Sequence[Row], changed: Sequence[Row]) -> None:
    """Insert ``new`` and update ``changed`` card accounts; rows in ``_ACCOUNT_COLS`` order, the
    balance of a changed row being the delta to add."""
    dbapi: Any = conn.connection.driver_connection
    cols = ", ".join(_ACCOUNT_COLS)
    if conn.dialect.name == "sqlite":
        if new:
            dbapi.executemany(f"INSERT INTO card_accounts ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?)", new)
        if changed:
            dbapi.executemany(
                "UPDATE card_accounts SET balance = balance + ?, chain_counter = ?, chain_balance = ?, "
                "chain_time = ?, max_counter = ?, gap_since = ? WHERE card_number = ?",
                [(*r[1:], r[0]) for r in changed])
        return
    cur = dbapi.cursor()
    types = ["text", "int8", "int8", "int8", "int8", "int8", "int8"]
    if new:
        with cur.copy(f"COPY card_accounts ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            for r in new:
                copy.write_row(r)
    if changed:
        # From one text parameter split on the server, not a temp table: the planner knows nothing of a fresh
        # temp table's rows and hash-joined it against every card account (41 ms per small batch at 100,000
        # cards), while a few thousand keys from a set-returning function go through the primary key. Text,
        # not arrays: psycopg dumps an array element by element in Python, 2.6 times slower than the join
        # (20,000 accounts: 87 -> 34 ms). Every field is an integer or a card number of digits.
        payload = "\n".join(f"{r[0]},{r[1]},{r[2]},{r[3]},{r[4]},{r[5]},{'' if r[6] is None else r[6]}"
                             for r in changed)
        cur.execute("UPDATE card_accounts ca SET balance = ca.balance + i.balance, chain_counter = i.chain_counter, "
                    "chain_balance = i.chain_balance, chain_time = i.chain_time, max_counter = i.max_counter, "
                    "gap_since = i.gap_since FROM (SELECT f[1] COLLATE \"C\" AS card_number, f[2]::int8 AS balance, "
                    "f[3]::int8 AS chain_counter, f[4]::int8 AS chain_balance, f[5]::int8 AS chain_time, "
                    "f[6]::int8 AS max_counter, nullif(f[7], '')::int8 AS gap_since "
                    "FROM unnest(string_to_array(%s, E'\\n')) AS line, string_to_array(line, ',') AS f) AS i "
                    "WHERE ca.card_number = i.card_number", (payload,))

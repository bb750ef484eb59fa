"""Moving the books to another database: ``smartpurse database copy --to URL``.

A network starts on one SQLite file and moves to PostgreSQL when it needs several importers
(docs/operations.md, "Scaling past one machine"). The copy takes every table of the schema, in the
order their foreign keys need, into an empty database at the same revision, in one transaction there:
a copy that stops half-way (an error, Ctrl-C, a full disk) leaves the target as empty as it was. The
source is read in one snapshot (SQLite: its write lock, so no import commits meanwhile; PostgreSQL: a
repeatable-read transaction), so the copy is the books at one moment. Before the target commits, every
table's row count is compared and ``check --full`` runs on the copy: it proves the ledger against every
record, the aggregates against their records, and the card accounts against their chains.

Rows travel in chunks, streamed from the source; into PostgreSQL by ``COPY``, so 20,000,000 records
move in minutes, not hours. Sequences (the ids of batches, entries, anomalies ...) are set past the
largest id copied, so the next import numbers on. Keys never pass through here: they live in the home's
key files, not in the database.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Connection, DateTime, Engine, Integer, Table, func, select, text

from processing.check import run_check
from processing.db import DatabaseError, committed, display_url
from processing.rows import ROW_FIELDS
from processing.schema import load_all_tables, stored_utc
from processing.schema.processing import records
from processing.store import RecordStore
from purse.errors import UserError

_CHUNK = 10_000  # rows per round trip
# Tables a new database holds rows of from its migrations (``records_version``, revision 0002): the copy
# replaces them with the source's, and does not count them as data the target holds.
SEEDED = frozenset({"processing_state"})


@dataclass
class CopyResult:
    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows copied
    check_ok: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "tables": len(self.rows),
                "rows": sum(self.rows.values()), "per_table": self.rows, "check_ok": self.check_ok}


class CopyRefused(UserError):
    """The target cannot take the copy (it holds data, or is the source): nothing was written."""


class CopyFailed(DatabaseError):
    """The copy does not agree with its source: the target's transaction was rolled back."""


def rows_to_copy(source: Engine) -> int:
    """How many rows the copy of ``source`` takes, over every table (for a progress bar)."""
    with source.connect() as conn:
        return sum(int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                   for t in load_all_tables().sorted_tables)


def copy_database(source: Engine, target: Engine, progress: Callable[[str, int], None] | None = None) -> CopyResult:
    """Copy every table of ``source`` into the empty ``target`` (both opened, so at the same revision)."""
    result = CopyResult(display_url(source), display_url(target))
    if _same_database(source, target):
        raise CopyRefused("the target is the source database: give another --to")
    tables = list(load_all_tables().sorted_tables)
    with _snapshot(source) as read, target.connect() as write:
        write.begin()
        with committed(write):
            held = [t.name for t in tables if t.name not in SEEDED
                    and write.execute(select(text("1")).select_from(t).limit(1)).first()]
            if held:
                raise CopyRefused(f"the target database holds data already ({', '.join(held[:5])}"
                                  f"{' ...' if len(held) > 5 else ''}): copy into an empty database")
            for table in tables:
                if table.name in SEEDED:
                    write.execute(table.delete())
                result.rows[table.name] = _copy_table(read, write, table, progress)
            _set_sequences(write, tables)
            _compare_counts(read, write, tables, result)
            rep = run_check(write, full=True)
            if not rep.ok:
                failed = "; ".join(f["invariant"] for f in rep.failures)
                raise CopyFailed(f"the copy does not pass check ({failed}): nothing was written; run "
                                 "`smartpurse check --full` on the source")
            result.check_ok = True
    return result


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """One moment of the source: SQLite's write lock (imports wait), or a repeatable-read transaction."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            conn.begin()
        try:
            yield conn
        finally:
            conn.rollback()


def _copy_table(read: Connection, write: Connection, table: Table, progress: Callable[[str, int], None] | None) -> int:
    """Stream ``table`` from the source into the target; the rows copied. The records, nine in ten of the rows,
    take the importer's own bulk path (``RecordStore.insert``: PostgreSQL's binary COPY), which also says how
    many it stored."""
    is_records = table is records
    columns = [records.c[name] for name in ROW_FIELDS] if is_records else list(table.columns)
    fixes = _value_fixers(columns, write.dialect.name)
    rows = read.execution_options(stream_results=True, yield_per=_CHUNK).execute(
        select(*columns).order_by(*table.primary_key.columns))
    store = RecordStore(write, versioned=False) if is_records else None
    copied = 0
    for chunk in rows.partitions():
        values: list[Any] = list(chunk)  # rows are tuples already; a changed value makes a new one
        for i, fix in fixes:
            values = [(*v[:i], fix(v[i]), *v[i + 1:]) for v in values]
        if store is not None:
            if store.insert(values) != len(values):
                raise CopyFailed("records: the target refused some of the records (it held some already): "
                                 "nothing was written")
        elif write.dialect.name == "postgresql":
            _pg_copy(write, table, values)
        else:
            write.execute(table.insert(), [dict(zip([c.name for c in columns], v, strict=True)) for v in values])
        copied += len(values)
        if progress is not None:
            progress(table.name, len(values))
    return copied


def _value_fixers(columns: Sequence[Any], dialect: str) -> list[tuple[int, Callable[[Any], Any]]]:
    """The columns whose values read from the source must change for the target, and how: SQLite keeps a moment
    without its offset (every moment the books store is UTC), and PostgreSQL's COPY takes JSON as its text."""
    def utc(v: Any) -> Any:
        return None if v is None else stored_utc(v)

    def json_text(v: Any) -> Any:
        return None if v is None else json.dumps(v)

    out: list[tuple[int, Callable[[Any], Any]]] = []
    for i, c in enumerate(columns):
        if isinstance(c.type, DateTime) and c.type.timezone:
            out.append((i, utc))
        elif isinstance(c.type, JSON) and dialect == "postgresql":
            out.append((i, json_text))
    return out


def _pg_copy(write: Connection, table: Table, values: list[tuple[Any, ...]]) -> None:
    cur = write.connection.driver_connection.cursor()  # type: ignore[union-attr]
    names = ", ".join(f'"{c.name}"' for c in table.columns)
    with cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for row in values:
            copy.write_row(row)


def _set_sequences(write: Connection, tables: Sequence[Table]) -> None:
    """PostgreSQL: each id sequence past the largest id copied, so the next row numbers on."""
    if write.dialect.name != "postgresql":
        return  # SQLite numbers past the largest rowid by itself
    for table in tables:
        pk = list(table.primary_key.columns)
        if len(pk) != 1 or not isinstance(pk[0].type, Integer) or pk[0].autoincrement is False:
            continue
        sequence = write.execute(text("SELECT pg_get_serial_sequence(:t, :c)"),
                                 {"t": table.name, "c": pk[0].name}).scalar()
        if sequence is None:
            continue
        largest = write.execute(select(func.max(pk[0]))).scalar()
        if largest is not None:
            write.execute(text("SELECT setval(:s, :v)"), {"s": sequence, "v": int(largest)})


def _compare_counts(read: Connection, write: Connection, tables: Sequence[Table], result: CopyResult) -> None:
    for table in tables:
        there = int(write.execute(select(func.count()).select_from(table)).scalar_one())
        here = int(read.execute(select(func.count()).select_from(table)).scalar_one())
        if not here == there == result.rows[table.name]:
            raise CopyFailed(f"table {table.name}: {here} rows in the source, {there} in the copy: nothing was "
                             "written")


def _same_database(a: Engine, b: Engine) -> bool:
    if a.dialect.name == b.dialect.name == "sqlite":
        return Path(str(a.url.database)).resolve() == Path(str(b.url.database)).resolve()
    return display_url(a) == display_url(b)

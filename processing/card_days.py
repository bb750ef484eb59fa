"""The days each card was used: what the cards report and the payback count, instead of the records.

A card is *used* on a card day when a purchase, a cancellation or a load of that day is posted on it (a
cash-out empties a card at its return; a block stops it: neither is use). "Cards used in the period" is a
count of distinct cards over a range of days, which no per-day total can answer; counted over ``records``
it scanned every record of the period (a full scan of the table: no index on ``records`` leads with the
day, and one would cost every insert). ``card_days`` holds one row per card and day of use, written as the
records are posted, in the same transaction, so a report reads the period's rows of a table many times
smaller than the records (a card's purchases of a day are one row) through its key, which leads with the
day. ``smartpurse check`` proves the rows equal the records (invariant 10).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, select

from processing.columns import CANCEL, LOAD, PURCHASE, EntryColumns
from processing.rows import CARD_NUMBER, DAY, RECORD_TYPE
from processing.schema.processing import card_days

USES = (PURCHASE, CANCEL, LOAD)  # the record types that are a card's use


def of_rows(rows: Iterable[Sequence[Any]], into: set[tuple[int, str]]) -> None:
    """Add the (day, card) of each storage row that is a use (``processing.rows`` order)."""
    into.update((r[DAY], r[CARD_NUMBER]) for r in rows if r[RECORD_TYPE] in USES)


def of_columns(cols: EntryColumns, into: set[tuple[int, str]]) -> None:
    """``of_rows`` for a chunk read as columns: distinct (day, card) pairs found by numpy first, so the
    Python objects made are one per card day, not one per record."""
    use = np.isin(cols.a["record_type"], USES)
    if not use.any():
        return
    pairs = np.empty(int(use.sum()), dtype=[("day", np.int64), ("card", "S16")])
    pairs["day"] = cols.days[use]
    pairs["card"] = np.ascontiguousarray(cols.card_ascii[use]).view("S16").ravel()
    pairs = np.unique(pairs)
    into.update(zip(pairs["day"].tolist(), pairs["card"].astype("U16").tolist(), strict=True))


def write(conn: Connection, days: Iterable[tuple[int, str]]) -> None:
    """Store the card days not stored yet.

    Through the driver, as the card accounts are (processing.store): SQLite binds one prepared ``INSERT OR
    IGNORE`` (one writer at a time: any order will do, and sorting cost more than it saved); PostgreSQL gets
    the rows as one text parameter split on the server (SQLAlchemy's executemany took 0.35-0.5 s for 15,000
    rows there), sorted, so that two importers inserting the same card days lock them in the same order."""
    dbapi: Any = conn.connection.driver_connection
    if conn.dialect.name == "sqlite":
        dbapi.executemany("INSERT OR IGNORE INTO card_days (day, card_number) VALUES (?, ?)", list(days))
        return
    # Every field is an integer or a card number of digits: no separator can occur inside one. Sorted as text,
    # three times as fast as sorting the tuples: the order only has to be the same in every importer.
    lines = sorted(f"{day},{card}" for day, card in days)
    if not lines:
        return
    payload = "\n".join(lines)
    dbapi.cursor().execute(
        "INSERT INTO card_days (day, card_number) SELECT split_part(line, ',', 1)::int4, "
        "split_part(line, ',', 2) COLLATE \"C\" FROM unnest(string_to_array(%s, E'\\n')) AS line "
        "ON CONFLICT DO NOTHING", (payload,))


def cards_used(conn: Connection, first_day: int | None, last_day: int | None) -> int:
    """How many distinct cards were used on the days ``first_day``..``last_day`` (None: unbounded)."""
    d = card_days.c
    cond = [d.day >= first_day] if first_day is not None else []
    if last_day is not None:
        cond.append(d.day <= last_day)
    return int(conn.execute(select(func.count(func.distinct(d.card_number))).where(*cond)).scalar_one())


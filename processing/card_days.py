"""The days each card was used: what the cards report and the payback count, instead of the records.

A card is *used* on a card day when a purchase, a cancellation or a load of that day is posted on it (a
cash-out empties a card at its return; a block stops it: neither is use). "Cards used in the period" is a
count of distinct cards over a range of days, which no per-day total can answer; counted over ``records``
it scanned every record of the period (a full scan of the table: no index on ``records`` leads with the
day, and one would cost every insert). ``card_days`` holds one row per card and day of use, written as the
records are posted, in the same transaction, so a report reads the period's rows through the key, which
leads with the day, of a table never larger than the records (a card's purchases of one day are one row).
``smartpurse check`` proves the rows equal the records (invariant 10).
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


class CardDays:
    """The card days of use among the records a batch posts, collected chunk by chunk.

    Rows (a small batch) add their pairs as they come. A chunk read as columns (a large batch) keeps, per day,
    its cards as integers (the packed BCD, ``EntryColumns.card_keys``), made distinct once for the whole batch,
    and strings are made once per card day: 1,000,000 records from 10,000 cards over two days take 0.15 s
    (``np.unique`` over (day, card) records took 2.5 s there, and a set of strings per chunk 0.2 s)."""

    def __init__(self) -> None:
        self._pairs: set[tuple[int, str]] = set()
        self._keys: dict[int, list[np.ndarray]] = {}

    def add_rows(self, rows: Iterable[Sequence[Any]]) -> None:
        """Storage rows (``processing.rows`` order): the (day, card) of each that is a use."""
        self._pairs.update((r[DAY], r[CARD_NUMBER]) for r in rows if r[RECORD_TYPE] in USES)

    def add_columns(self, cols: EntryColumns) -> None:
        """A chunk read as columns: its uses' card keys, per day."""
        use = np.isin(cols.a["record_type"], USES)
        if not use.any():
            return
        days, keys = cols.days[use], cols.card_keys[use]
        first, last = int(days.min()), int(days.max())
        if first == last:  # the usual chunk: one day's records; sorted out once, in ``pairs``
            self._keys.setdefault(first, []).append(keys)
            return
        for day in np.unique(days).tolist():
            self._keys.setdefault(day, []).append(keys[days == day])

    def pairs(self) -> set[tuple[int, str]]:
        """Every (day, card number) added."""
        out = set(self._pairs)
        for day, parts in self._keys.items():
            out.update((day, f"{key:016x}") for key in np.unique(np.concatenate(parts)).tolist())
        return out


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


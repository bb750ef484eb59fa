"""What the records did to the points on cards, per card day and program (``points_days``).

The points report needs, for any period, the points the cards held at its opening and closing and what
was earned, redeemed, lapsed and turned into prizes in it. Summed from the records that is a scan of every
purchase (56 s at 20,000,000 records); kept per day it is a few rows per day and program. Each record is
counted where its card's chain walks through it (processing.reconcile), which is once, in counter order,
with the points the card held before it: what ``held_change`` needs. A record waiting behind a gap counts
when the gap closes. ``recount`` walks the records again the same way: the migration that made the table
filled it so, and ``smartpurse check --full`` proves the rows equal it.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from processing.schema.processing import card_accounts, points_days, records
from purse.protocol import RecordType
from purse.records import RECORD_LAYOUT

__all__ = ["EARNED", "REDEEMED", "LAPSED", "TO_PRIZES", "HELD_CHANGE", "PointsMoved", "add_points_days",
           "count_record", "merge_moves", "recount"]

EARNED, REDEEMED, LAPSED, TO_PRIZES, HELD_CHANGE = range(5)  # the columns of a day's moves, in the table's order
_COLUMNS = ("earned", "redeemed", "lapsed", "to_prizes", "held_change")
PointsMoved = dict[tuple[int, int], list[int]]  # (card day, program) -> the five columns
_POINTS = RECORD_LAYOUT.sparse(("program_id", "points_before", "points_after", "points_earned", "points_redeemed",
                                "prizes"))


def count_record(moved: PointsMoved, day: int, program: int, purchase: bool, before: int, after: int,
                 earned: int, redeemed: int, prizes: int, held: int | None, head_won: bool) -> bool:
    """Add one walked purchase or cancel of a program to ``moved``; whether it turned points into a prize.

    ``held``: the card's points of the program before it on the chain (None: its first record of it);
    ``head_won``: whether that record won a prize. What ``before + earned - redeemed - after`` took off the
    card lapsed, or became a prize when the purchase won one; a cancel gives back what its purchase took,
    to the same column."""
    won = bool(prizes) if purchase else head_won
    row = moved.get((day, program))
    if row is None:
        row = moved[(day, program)] = [0, 0, 0, 0, 0]
    row[EARNED] += earned
    row[REDEEMED] += redeemed
    row[TO_PRIZES if won else LAPSED] += before + earned - redeemed - after
    row[HELD_CHANGE] += after - (held or 0)
    return won


def merge_moves(into: PointsMoved, moved: PointsMoved) -> None:
    """Add the moves counted by another walk (the verifying worker's) to ``into``."""
    for key, row in moved.items():
        mine = into.setdefault(key, [0, 0, 0, 0, 0])
        for i, n in enumerate(row):
            mine[i] += n


def add_points_days(conn: Connection, moved: PointsMoved) -> None:
    """Add an import's moves to the stored days (one upsert for all of them)."""
    if not moved:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(points_days)
    stmt = stmt.on_conflict_do_update(index_elements=[points_days.c.day, points_days.c.program_id],
                                      set_={c: points_days.c[c] + stmt.excluded[c] for c in _COLUMNS})
    conn.execute(stmt, [{"day": day, "program_id": program, **dict(zip(_COLUMNS, row, strict=True))}
                        for (day, program), row in sorted(moved.items())])


def recount(conn: Connection) -> tuple[PointsMoved, dict[tuple[str, int], bool]]:
    """The moves of every record the card chains have walked (counters up to each card's head), counted
    again from ``records`` in counter order; and, per card and program, whether its last such record won a
    prize. O(records): for the migration that made the table and for ``check --full``, never for a report."""
    moved: PointsMoved = {}
    won: dict[tuple[str, int], bool] = {}
    held: dict[int, int] = {}
    card = None
    for number, kind, day, raw in _walked(conn):
        program, before, after, earned, redeemed, prizes = _POINTS.unpack(bytes(raw))
        if not program:
            continue
        if number != card:
            card, held = number, {}
        won[(number, program)] = count_record(moved, day, program, kind == RecordType.PURCHASE, before, after,
                                              earned, redeemed, prizes, held.get(program),
                                              won.get((number, program), False))
        held[program] = after
    return moved, won


def _walked(conn: Connection) -> Iterator[tuple[str, int, int, bytes]]:
    r, ca = records.c, card_accounts.c
    scan = (select(r.card_number, r.record_type, r.day, r.raw)
            .join(card_accounts, ca.card_number == r.card_number)
            .where(r.record_type.in_([RecordType.PURCHASE, RecordType.CANCEL]), r.counter <= ca.chain_counter)
            .order_by(r.card_number, r.counter).execution_options(yield_per=20_000))
    for number, kind, day, raw in conn.execute(scan):
        yield number, int(kind), int(day), raw

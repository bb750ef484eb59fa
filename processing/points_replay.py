"""The points replay, resumed: every card's records through its programs' rules, each record once.

Processing recomputes the points the terminals wrote (purse.loyalty.replay_points): a record whose points
are not what the signed program gives is a ``points_mismatch``. The replay of a card needs the state of
its programs before the new records (points, tier, visits, the purchase a cancel may undo), which
depends on the card's whole history. Reading that history again at every batch made a card's cost
grow with its age: 10 batches of a year's cards slowed from 2.4 s to 8.5 s a batch (docs/performance.md).
So where each card's replay stopped is kept in ``points_replay``, and a batch replays only what it
brought. The replay covers the gap-free start of a card's history, as before: a record after a gap
waits for the batch that closes it.

The whole history is replayed again (once) when a program changed version, or a program is replayed
for a card that already had records before it was (its earlier records were never replayed through it).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from processing.anomalies import Anomaly, AnomalyKind
from processing.schema.processing import points_replay, records
from processing.store import select_in
from purse.loyalty import PointsDiscrepancy, Program, Replay, replay_points
from purse.records import TransactionRecord

__all__ = ["replay_cards"]

_CHUNK = 5_000  # cards per delete of their old replay rows


def _mismatch(d: PointsDiscrepancy, program_id: int) -> Anomaly:
    return Anomaly(AnomalyKind.POINTS_MISMATCH, f"pointsrule:{d.card_number}:{d.counter}",
                   f"card {d.card_number} counter {d.counter}: {d.reason}",
                   {"expected_earned": d.expected_earned, "recorded_earned": d.recorded_earned,
                    "expected_after": d.expected_after, "recorded_after": d.recorded_after,
                    "program_id": program_id}, d.card_number, d.counter)


def _resume(row: tuple[Any, ...] | None, programs: dict[int, Program]) -> tuple[int, dict[int, Replay]]:
    """Where a card's replay stands: the counter it reached and each program's state (0, {}: from the start)."""
    if row is None:
        return 0, {}
    replays = {}
    for key, saved in row[2].items():
        program = programs.get(int(key))
        if program is None:
            continue  # no longer verified: its state is dropped, and its return replays the card whole
        if saved["version"] != program.version:
            return 0, {}
        replays[int(key)] = Replay.from_bytes(bytes.fromhex(saved["replay"]))
    return int(row[1]), replays


def _gap_free(raws: list[bytes], counter: int) -> list[TransactionRecord]:
    """The records (in counter order) that continue ``counter`` without a gap."""
    out: list[TransactionRecord] = []
    for raw in raws:
        record = TransactionRecord.from_bytes(bytes(raw))
        if record.counter != counter + len(out) + 1:
            break
        out.append(record)
    return out


def _records_after(conn: Connection, number: str, counter: int) -> list[TransactionRecord]:
    """The card's records after ``counter``, as far as they run without a gap."""
    c = records.c
    return _gap_free(list(conn.execute(select(c.raw).where(c.card_number == number, c.counter > counter)
                                       .order_by(c.counter)).scalars()), counter)


def _new_records(conn: Connection, numbers: list[str]) -> dict[str, list[bytes]]:
    """Each card's records after where its replay stopped, in one query for all the cards."""
    found: dict[str, list[tuple[int, bytes]]] = {}
    for number, counter, raw in select_in(conn, "SELECT r.card_number, r.counter, r.raw FROM records r "
                                                "LEFT JOIN points_replay p ON p.card_number = r.card_number "
                                                "WHERE r.counter > COALESCE(p.counter, 0) AND r.card_number", numbers):
        found.setdefault(number, []).append((counter, raw))
    return {number: [raw for _, raw in sorted(rows)] for number, rows in found.items()}


def replay_cards(conn: Connection, numbers: list[str], programs: dict[int, Program]) -> list[Anomaly]:
    """Replay the new records of each card in ``numbers``; the points mismatches found."""
    if not programs or not numbers:
        return []
    saved = {row[0]: row for row in select_in(conn, "SELECT card_number, counter, state FROM points_replay "
                                                    "WHERE card_number", numbers)}
    fetched = _new_records(conn, numbers)
    out: list[Anomaly] = []
    rows = []
    for number in numbers:
        row = saved.get(number)
        if row is not None and isinstance(row[2], str):  # select_in bypasses SQLAlchemy: SQLite hands JSON as text
            row = (row[0], row[1], json.loads(row[2]))
        counter, replays = _resume(row, programs)
        if row is not None and counter == 0 and row[1]:  # a program's version changed: the whole history again
            new = _records_after(conn, number, 0)
        else:
            new = _gap_free(fetched.get(number, []), counter)
        if not new:
            continue
        if counter and {r.program_id for r in new if r.program_id in programs} - replays.keys():
            counter, replays = 0, {}  # a program replayed for this card for the first time: from the start
            new = _records_after(conn, number, 0)
        for program_id in sorted({r.program_id for r in new if r.program_id in programs}):
            found, replays[program_id] = replay_points(programs[program_id], new, replays.get(program_id))
            out.extend(_mismatch(d, program_id) for d in found)
        rows.append({"card_number": number, "counter": counter + len(new),
                     "state": {str(p): {"version": programs[p].version, "replay": r.to_bytes().hex()}
                               for p, r in replays.items()}})
    written = [r["card_number"] for r in rows]
    for i in range(0, len(written), _CHUNK):
        conn.execute(delete(points_replay).where(points_replay.c.card_number.in_(written[i:i + _CHUNK])))
    if rows:
        conn.execute(insert(points_replay), rows)
    return out

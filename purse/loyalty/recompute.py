"""Replaying a card's records to check the points the terminals wrote.

Processing holds every certified record of a card. Earning is a function of the
amount debited, the time and the card's earlier records (``purse.loyalty.rules``), so
replaying one program's PURCHASE and CANCEL records in counter order from an empty
slot must give each record's ``points_earned`` and ``points_after``; a record that
disagrees was written by a terminal running other rules (a wrong or forged program,
a bug), and processing flags it as a points mismatch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from purse.loyalty.program import Program
from purse.loyalty.rules import earn, lapse
from purse.protocol import POINTS_SLOT_SIZE as SLOT_SIZE
from purse.protocol import RecordType
from purse.records import PointsSlot, TransactionRecord


@dataclass(frozen=True, slots=True)
class PointsDiscrepancy:
    """One record whose points are not what the program's rules give."""

    card_number: str
    counter: int
    record_type: str
    expected_earned: int
    recorded_earned: int
    expected_after: int
    recorded_after: int
    reason: str


@dataclass(frozen=True, slots=True)
class Replay:
    """Where the replay of one card's program stands after its records so far: resume it with the next ones.

    ``undo`` is the last purchase and the slot before it, while a cancellation may still follow it. Both
    are 32 and 72 bytes on the card, so a replay state is ``to_bytes``-small and processing keeps one per
    card and program instead of reading the card's whole history again at every batch."""

    slot: PointsSlot
    undo: tuple[PointsSlot, TransactionRecord] | None = None

    def to_bytes(self) -> bytes:
        return self.slot.to_bytes() + (self.undo[0].to_bytes() + self.undo[1].to_bytes() if self.undo else b"")

    @classmethod
    def from_bytes(cls, raw: bytes) -> Replay:
        slot = PointsSlot.from_bytes(raw[:SLOT_SIZE])
        if len(raw) == SLOT_SIZE:
            return cls(slot)
        return cls(slot, (PointsSlot.from_bytes(raw[SLOT_SIZE:2 * SLOT_SIZE]),
                          TransactionRecord.from_bytes(raw[2 * SLOT_SIZE:])))


def recompute_points(program: Program, records: Iterable[TransactionRecord]) -> list[PointsDiscrepancy]:
    """Every record of ``program`` among one card's ``records`` whose points disagree.

    Assumes the records are the card's complete history in this program (no counter
    gaps among them): a missing purchase shifts everything after it. After a mismatch
    the replay continues from the points the record shows, so one bad record is
    reported once, not with every record after it.
    """
    return replay_points(program, records)[0]


def replay_points(program: Program, records: Iterable[TransactionRecord],
                  start: Replay | None = None) -> tuple[list[PointsDiscrepancy], Replay]:
    """``recompute_points`` from where an earlier replay stopped (``start``), over the card's next records;
    the discrepancies and where this replay stops. Replaying a history in two parts gives exactly what
    replaying it whole gives."""
    mine = sorted((r for r in records if r.program_id == program.program_id
                   and r.record_type in (RecordType.PURCHASE, RecordType.CANCEL)), key=lambda r: r.counter)
    slot = start.slot if start is not None else PointsSlot(program_id=program.program_id)
    undo: dict[int, tuple[PointsSlot, TransactionRecord]] = {}  # purchase counter -> slot before it
    if start is not None and start.undo is not None:
        undo[start.undo[1].counter] = start.undo
    out: list[PointsDiscrepancy] = []

    def flag(record: TransactionRecord, earned: int, after: int, why: str) -> None:
        out.append(PointsDiscrepancy(record.card_number, record.counter, record.record_type.name.lower(),
                                     earned, record.points_earned, after, record.points_after, why))

    for record in mine:
        if record.record_type == RecordType.CANCEL:
            cancelled = undo.pop(record.counter - 1, None)
            if cancelled is None:
                flag(record, 0, record.points_after, "cancels a purchase that is not among the records")
                continue
            before, purchase = cancelled
            if record.points_earned != -purchase.points_earned or record.points_after != before.points:
                flag(record, -purchase.points_earned, before.points,
                     "points mismatch: a cancellation must restore the points before the purchase")
            slot = before
            continue
        undo.clear()  # only the last purchase can be cancelled
        undo[record.counter] = (slot, record)
        current = lapse(program, slot, record.time)
        problems = []
        if record.points_before != slot.points:
            problems.append(f"points before {record.points_before}, replay has {slot.points}")
        if record.points_redeemed > current.points:
            problems.append(f"redeemed {record.points_redeemed} of {current.points} available")
        paid = replace(current, points=max(current.points - record.points_redeemed, 0))
        result = earn(program, paid, record.amount, record.time)
        if record.points_earned != result.earned:
            problems.append(f"earned {record.points_earned}, rules give {result.earned}")
        if record.points_after != result.slot.points:
            problems.append(f"points after {record.points_after}, rules give {result.slot.points}")
        if record.prizes != result.prizes:
            problems.append(f"prizes {record.prizes}, rules give {result.prizes}")
        if record.tier != result.slot.tier:
            problems.append(f"tier {record.tier}, rules give {result.slot.tier}")
        if problems:
            flag(record, result.earned, result.slot.points, "points mismatch: " + "; ".join(problems))
        slot = replace(result.slot, points=record.points_after)
    return out, Replay(slot, next(iter(undo.values()), None))

"""The points replay resumes where it stopped: a batch replays the records it brought, not the card's
history, and finds exactly what replaying the whole history at once finds (processing.points_replay)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select, update
from support.backoffice import NOW, World, world

from processing import synthetic
from processing.schema.processing import anomalies, points_replay, records
from purse.loyalty import ProgramPolicy
from purse.loyalty.program import PerAmount, Prize, Program
from purse.protocol import RecordType
from purse.records import PointsSlot, TransactionRecord

COFFEE = Program(program_id=5, name="Coffee", per_amount=PerAmount(100, 1), per_visit=2,
                 prize=Prize(20, "subtract", "a coffee"))


class Till:
    """A terminal running COFFEE's rules for real (purse.loyalty), so the records carry the points it gives."""

    def __init__(self, w: World, card: synthetic.SynthCard) -> None:
        self.terminal, self.card = w.terminals.get(7) or w.terminal(7, 42), card
        self.policy, self.slot = ProgramPolicy(COFFEE), PointsSlot(program_id=5)
        self.before: PointsSlot | None = None

    def buy(self, price: int, when: int, *, forge: int = 0) -> None:
        update = self.policy.apply(self.slot, price, when)
        self.before, self.slot = self.slot, update.slot
        t = self.terminal
        t.add(synthetic.card_record(self.card, RecordType.PURCHASE, update.amount_due, 7, t.next_seq(), when,
                                    program_id=5, earned=update.earned + forge, prizes=update.prizes,
                                    points_after=update.slot.points + forge))
        if forge:
            self.slot = replace(self.slot, points=self.slot.points + forge)

    def cancel_last(self, when: int, amount: int) -> None:
        assert self.before is not None
        t = self.terminal
        earned = self.slot.points - self.before.points
        t.add(synthetic.card_record(self.card, RecordType.CANCEL, amount, 7, t.next_seq(), when, program_id=5,
                                    earned=-earned, points_after=self.before.points))
        self.slot = self.before


def _shop(w: World, batches: list[list[tuple[str, int]]]) -> list[Any]:
    """Purchases ("buy"/"forge") and a cancellation, cut into batches as ``batches`` says."""
    w.merchant(42)
    card = w.card(1, load=500_000)
    w.register_card(card)
    till = Till(w, card)
    paths = []
    for n, batch in enumerate(batches):
        for kind, price in batch:
            when = NOW + 100 * (len(paths) * 10 + len(paths)) + price
            if kind == "cancel":
                till.cancel_last(when + 1, price)
            else:
                till.buy(price, when, forge=3 if kind == "forge" else 0)
        paths.append(till.terminal.close(w.tmp / f"b{n}.spb"))
    return paths


SALES = [[("buy", 1_250), ("buy", 399)], [("buy", 2_000), ("forge", 700)], [("buy", 450), ("cancel", 450)],
         [("buy", 1_000)]]


def _mismatches(w: World) -> list[int]:
    with w.engine.connect() as conn:
        return sorted(int(c) for c in conn.execute(select(anomalies.c.counter)
                                                   .where(anomalies.c.kind == "points_mismatch")).scalars())


def test_a_history_replayed_batch_by_batch_finds_what_it_finds_whole(processing_db: World, tmp_path: Any) -> None:
    w = processing_db
    paths = _shop(w, SALES)
    for path in paths:
        assert w.process(path, programs={5: COFFEE}).status == "accepted"
    # the purchase with 3 points too many (counter 5: the load is 1), and nothing else: the cancel in
    # batch 3 found the purchase it undoes in the replay state batch 3 left, not in a re-read history
    assert _mismatches(w) == [5]
    (tmp_path / "whole").mkdir()
    with world("sqlite", tmp_path / "whole") as whole:
        one = _shop(whole, [[sale for batch in SALES for sale in batch]])
        assert whole.process(one[0], programs={5: COFFEE}).status == "accepted"
        assert _mismatches(whole) == [5]
    with w.engine.connect() as conn:
        (counter, state), = conn.execute(select(points_replay.c.counter, points_replay.c.state)).all()
    assert counter == 8 and state["5"]["version"] == 1  # the load and 7 sales: all replayed


def test_a_batch_reads_only_the_records_after_where_the_replay_stopped(processing_db: World) -> None:
    """Counter 3's stored points are changed after its batch was replayed: the next batch does not read it
    again (no mismatch at 3), a replay from the start (a new program version) does."""
    w = processing_db
    paths = _shop(w, [*SALES, [("buy", 300)]])
    for path in paths[:3]:
        w.process(path, programs={5: COFFEE})
    r = records.c
    with w.engine.begin() as conn:
        number, raw = conn.execute(select(r.card_number, r.raw).where(r.counter == 3)).one()
        changed = replace(TransactionRecord.from_bytes(bytes(raw)), points_earned=99)
        conn.execute(update(records).where(r.card_number == number, r.counter == 3).values(raw=changed.to_bytes()))
    w.process(paths[3], programs={5: COFFEE})
    assert _mismatches(w) == [5]
    w.process(paths[4], programs={5: replace(COFFEE, version=2)})  # the next batch, under a new version
    assert _mismatches(w) == [3, 5]


def test_a_new_program_version_replays_the_card_whole_once(processing_db: World) -> None:
    w = processing_db
    paths = _shop(w, SALES)
    for path in paths[:2]:
        w.process(path, programs={5: COFFEE})
    newer = replace(COFFEE, version=2)
    for path in paths[2:]:
        w.process(path, programs={5: newer})
    assert _mismatches(w) == [5]  # the same rules: the same one mismatch, found once
    with w.engine.connect() as conn:
        counter, state = conn.execute(select(points_replay.c.counter, points_replay.c.state)).one()
    assert counter == 8 and state["5"]["version"] == 2

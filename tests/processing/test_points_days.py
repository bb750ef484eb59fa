"""The points report from ``points_days``: the same figures as every record summed, however the records came."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from support.backoffice import DAY, NOW, World, world

from processing import reports
from processing.check import run_check
from processing.points_days import recount
from processing.run import process_files
from processing.schema.processing import card_points, points_days, records
from processing.synthetic import SynthCard, card_record
from purse.protocol import RecordType
from purse.records import record_details

D0 = dt.datetime.fromtimestamp(NOW, dt.UTC).date()


def _loyalty_days(w: World, folder: Path, seed: int) -> list[Path]:
    """Three days of batches at four terminals: two programs, points earned and redeemed, prizes, points
    that lapsed, cancels in the purchase's batch and in a later one (of a purchase that won a prize too),
    and a cloned card whose second spending of a counter is refused."""
    draw = random.Random(seed)
    folder.mkdir()
    w.merchant(42)
    deck = [w.card(i, load=1_000_000) for i in range(6)]
    program_of = {card.number: 5 if i % 3 else 7 for i, card in enumerate(deck)}
    shops = [w.terminal(t_id, 42) for t_id in range(1, 5)]
    before_last: dict[str, int] = {}  # card -> its points before its last purchase, which a cancel restores
    files = []

    def purchase(t: Any, card: SynthCard, when: int, prize: bool) -> None:
        program = program_of[card.number]
        before_last[card.number] = card.points
        redeemed = min(card.points, draw.choice([0, 0, 5, 20]))
        earned = draw.randrange(1, 40)
        after = None
        if prize:
            after = 0  # the points went to the prize
        elif draw.random() < 0.15:
            after = earned  # what was on the card lapsed before this visit
        t.add(card_record(card, RecordType.PURCHASE, 100 + draw.randrange(900), t.terminal_id, t.next_seq(), when,
                          program_id=program, earned=earned, redeemed=redeemed, prizes=int(prize),
                          points_after=after))

    def cancel(t: Any, card: SynthCard, when: int) -> None:
        t.add(card_record(card, RecordType.CANCEL, 50, t.terminal_id, t.next_seq(), when,
                          program_id=program_of[card.number], points_after=before_last.pop(card.number)))

    late_cancel: SynthCard | None = None
    for b in range(12):
        t = shops[b % len(shops)]
        when = NOW + (b // 4) * DAY + 60 * b
        if late_cancel is not None:  # the cancel of the last purchase of the batch before, at another terminal
            cancel(t, late_cancel, when)
            late_cancel = None
        for i, card in enumerate(draw.sample(deck, 4)):
            purchase(t, card, when + i, prize=draw.random() < 0.2 or (b, i) == (3, 3))
            if i < 3 and draw.random() < 0.25:
                cancel(t, card, when + i)
        if b in (3, 7):
            late_cancel = card  # the batch's last purchase (b == 3: one that won a prize)
        if b == 9:  # a clone of a card spends its next counter at another terminal: one of the two is refused
            clone, program = dataclasses.replace(deck[0]), program_of[deck[0].number]
            before_last[deck[0].number] = deck[0].points
            t.add(card_record(clone, RecordType.PURCHASE, 70, t.terminal_id, t.next_seq(), when + 10,
                              program_id=program))
            shops[0].add(card_record(deck[0], RecordType.PURCHASE, 80, 1, shops[0].next_seq(), when + 11,
                                     program_id=program))
            files.append(shops[0].close(folder / f"b{b:02d}-clone.spb"))
        files.append(t.close(folder / f"b{b:02d}.spb"))
    return files


def _from_records(w: World, start: dt.date | None, end: dt.date | None) -> dict[int, tuple[int, ...]]:
    """Per program, what summing every stored purchase and cancel gives: (opening, earned, redeemed, lapsed,
    to prizes, closing). Written apart from processing, from each record's own fields."""
    first = (start - D0).days + NOW // DAY if start else None
    last = (end - D0).days + NOW // DAY if end else None
    out: dict[int, list[int]] = {}
    held: dict[tuple[str, int], int] = {}
    opening: dict[tuple[str, int], int] = {}
    prize_of_last: dict[tuple[str, int], bool] = {}
    with w.engine.connect() as conn:
        rows = conn.execute(select(records.c.card_number, records.c.record_type, records.c.day, records.c.raw)
                            .where(records.c.record_type.in_([RecordType.PURCHASE, RecordType.CANCEL]))
                            .order_by(records.c.card_number, records.c.counter)).all()
    for number, kind, day, raw in rows:
        d = record_details(bytes(raw))
        key = (number, d.program_id)
        won = bool(d.prizes) if kind == RecordType.PURCHASE else prize_of_last.get(key, False)
        prize_of_last[key] = won
        if last is not None and day > last:
            continue
        sums = out.setdefault(d.program_id, [0, 0, 0, 0, 0, 0])
        if first is not None and day < first:
            opening[key] = d.points_after
        else:
            sums[1] += d.points_earned
            sums[2] += d.points_redeemed
            sums[4 if won else 3] += d.points_before + d.points_earned - d.points_redeemed - d.points_after
        held[key] = d.points_after
    for (_, program), points in opening.items():
        out[program][0] += points
    for (_, program), points in held.items():
        out[program][5] += points
    return {p: tuple(v) for p, v in out.items()}


def _report(w: World, start: dt.date | None, end: dt.date | None) -> dict[int, tuple[int, ...]]:
    with w.engine.connect() as conn:
        rep = reports.points_report(conn, start, end)
    assert rep.summary["reconciles"] is True
    named = [dict(zip([c.name for c in rep.columns], row, strict=True)) for row in rep.rows]
    return {r["program_id"]: (r["points_opening"], r["points_earned"], r["points_redeemed"], r["points_lapsed"],
                              r["points_to_prizes"], r["points_closing"]) for r in named}


PERIODS = ((None, None), (D0 + dt.timedelta(days=1), D0 + dt.timedelta(days=1)), (D0, D0),
           (D0 + dt.timedelta(days=2), None))


@pytest.mark.parametrize(("kind", "how"), [("sqlite", "in order"), ("sqlite", "shuffled in groups"),
                                           ("sqlite-worker-walks", "in order"), ("sqlite-here-walks", "shuffled"),
                                           ("postgresql", "shuffled in groups")])
def test_the_points_report_from_its_days_equals_every_record_summed(kind: str, how: str, tmp_path: Path) -> None:
    """However the batches arrive (in order, shuffled, in groups, through the verifying worker walking the
    chains or not, a clone among them), the report read from ``points_days`` gives what summing each stored
    record's points gives, for the whole history and for periods with an opening; ``check --full`` proves the
    rows equal the records walked again, and the points on cards at the end equal ``card_points``."""
    with world(kind, tmp_path) as w:
        files = _loyalty_days(w, tmp_path / "batches", seed=11)
        w.ingest_loads()
        if how != "in order":
            files = random.Random(3).sample(files, len(files))
        run = process_files(w.engine, files, w.keys, w.options(group_records=30 if "groups" in how else 0))
        assert [r.status for r in run.batches] == ["accepted"] * len(files)
        assert sum(r.duplicates for r in run.batches) == 0
        for start, end in PERIODS:
            assert _report(w, start, end) == _from_records(w, start, end), (start, end)
        with w.engine.connect() as conn:
            assert "clone" in {row[1] for row in reports.anomalies_report(conn, None, None).rows}
            rep = run_check(conn, full=True)
            assert rep.ok, rep.failures
            held = dict(conn.execute(select(card_points.c.program_id, text("sum(points)"))
                                     .group_by(card_points.c.program_id)).all())
        whole = _report(w, None, None)
        assert {p: v[5] for p, v in whole.items()} == {p: int(n) for p, n in held.items()}
        assert all(v[4] > 0 and v[3] != 0 for v in whole.values()), whole  # prizes and lapses happened


def test_check_full_finds_a_points_day_that_differs_from_its_records(tmp_path: Path) -> None:
    with world("sqlite", tmp_path) as w:
        files = _loyalty_days(w, tmp_path / "batches", seed=5)
        w.ingest_loads()
        process_files(w.engine, files, w.keys, w.options())
        with w.engine.begin() as conn:
            day, program = conn.execute(select(points_days.c.day, points_days.c.program_id).limit(1)).one()
            conn.execute(points_days.update().where(points_days.c.day == day, points_days.c.program_id == program)
                         .values(earned=points_days.c.earned + 1))
        with w.engine.connect() as conn:
            assert run_check(conn, full=False).ok  # the audit of the aggregates is the full check's
            rep = run_check(conn, full=True)
        assert [f["invariant"] for f in rep.failures] == ["points_days == the records walked"]
        assert rep.failures[0]["evidence"][0]["day"] == day


def test_a_record_behind_a_gap_counts_once_the_gap_closes(tmp_path: Path) -> None:
    """A card's later batch first: its purchase waits behind the gap and is not in the report yet (it says
    what the chains prove); the missing batch comes, and both count, in their days."""
    with world("sqlite", tmp_path) as w:
        w.merchant(42)
        card = w.card(1, load=10_000)
        first, second = w.terminal(1, 42), w.terminal(2, 42)
        first.add(card_record(card, RecordType.PURCHASE, 100, 1, first.next_seq(), NOW + 5, program_id=5,
                              earned=10))
        second.add(card_record(card, RecordType.PURCHASE, 100, 2, second.next_seq(), NOW + DAY, program_id=5,
                               earned=4, redeemed=3))
        early, late = first.close(tmp_path / "early.spb"), second.close(tmp_path / "late.spb")
        w.ingest_loads()
        assert w.process(late).accepted == 1
        assert _report(w, None, None) == {}
        with w.engine.connect() as conn:
            assert recount(conn) == ({}, {})
        assert w.process(early).accepted == 1
        assert _report(w, None, None) == {5: (0, 14, 3, 0, 0, 11)} == _from_records(w, None, None)
        assert _report(w, D0 + dt.timedelta(days=1), None) == {5: (10, 4, 3, 0, 0, 11)}


def test_a_cancel_in_the_next_run_gives_its_prize_back_to_the_prizes(tmp_path: Path) -> None:
    """The purchase that won a prize is imported by one run, its cancel by the next (a fresh process, which
    reads the card's state from the database): what the cancel gives back leaves the prizes, not the lapsed."""
    from processing.db import open_database

    with world("sqlite", tmp_path) as w:
        w.merchant(42)
        card = w.card(1, load=10_000)
        t = w.terminal(1, 42)
        t.add(card_record(card, RecordType.PURCHASE, 100, 1, t.next_seq(), NOW + 5, program_id=5, earned=60))
        t.add(card_record(card, RecordType.PURCHASE, 100, 1, t.next_seq(), NOW + 6, program_id=5, earned=40,
                          prizes=1, points_after=0))  # 100 points: a prize
        won = t.close(tmp_path / "won.spb")
        t.add(card_record(card, RecordType.CANCEL, 100, 1, t.next_seq(), NOW + 7, program_id=5, points_after=60))
        cancelled = t.close(tmp_path / "cancelled.spb")
        w.ingest_loads()
        assert w.process(won).accepted == 2
        assert _report(w, None, None) == {5: (0, 100, 0, 0, 100, 0)}
        next_run = open_database(w.url)
        try:
            run = process_files(next_run, [cancelled], w.keys, w.options())
        finally:
            next_run.dispose()
        assert run.accepted == 1
        assert _report(w, None, None) == {5: (0, 100, 0, 0, 40, 60)} == _from_records(w, None, None)

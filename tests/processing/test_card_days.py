"""Cards used in a period, from ``card_days``: the same count as the records give, however they came."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, select
from support.backoffice import DAY, NOW, World, world

from processing import reports
from processing.check import run_check
from processing.run import process_files
from processing.schema.processing import card_days, records
from processing.synthetic import card_record
from purse.protocol import RecordType

SCHEME = dict(system_cost=750_000, deposit_per_card=750, rate_pct=Decimal(35), cash_cost_pct=Decimal("0.45"),
              margin_pct=Decimal(10), growth_pct=Decimal(20))
D0 = dt.datetime.fromtimestamp(NOW, dt.UTC).date()
USED = (RecordType.PURCHASE, RecordType.CANCEL, RecordType.LOAD)  # written here apart from processing


def _four_days(w: World, folder: Path, seed: int) -> list[Path]:
    """Four days of batches at three terminals: purchases, cancels, loads at a terminal (records a desk also
    has), cards used on several days and cards only loaded, a batch sent twice."""
    draw = random.Random(seed)
    folder.mkdir()
    w.merchant(42)
    deck = [w.card(i, load=50_000, when=NOW + (i % 4) * DAY) for i in range(12)]
    shops = [w.terminal(t_id, 42) for t_id in range(1, 4)]
    files = []
    for b in range(9):
        t = shops[b % len(shops)]
        when = NOW + (b // 3) * DAY + 3600 + 60 * b
        for i, card in enumerate(draw.sample(deck[:9], 4)):  # the last three cards are only loaded
            t.purchase(card, 100 + draw.randrange(500), when + i)
            if draw.random() < 0.3:
                t.add(card_record(card, RecordType.CANCEL, 50, t.terminal_id, t.next_seq(), when + i))
        files.append(t.close(folder / f"b{b:02d}.spb"))
    files.append(files[4])  # sent again: a duplicate file adds no day of use
    return files


def _from_records(w: World) -> set[tuple[int, str]]:
    with w.engine.connect() as conn:
        return {(int(day), n) for day, n in conn.execute(
            select(records.c.day, records.c.card_number).where(records.c.record_type.in_(USED)))}


def _used(w: World, start: dt.date | None, end: dt.date | None) -> tuple[int, int]:
    """(the cards report's used_in_period, the payback's cards) for the period."""
    with w.engine.connect() as conn:
        cards = reports.cards_report(conn, start, end).summary["used_in_period"]
        payback = reports.payback_inputs(conn, start, end, **SCHEME).cards
    return cards, payback


PERIODS = ((None, None), (D0, D0), (D0 + dt.timedelta(days=1), D0 + dt.timedelta(days=2)),
           (D0 + dt.timedelta(days=3), None))


@pytest.mark.parametrize(("kind", "how"), [("sqlite", "in order"), ("sqlite", "shuffled in groups"),
                                           ("sqlite-worker-walks", "in order"), ("sqlite-here-walks", "shuffled"),
                                           ("postgresql", "shuffled in groups"),
                                           ("postgresql-worker-walks", "in order")])
def test_cards_used_in_a_period_are_the_distinct_cards_of_its_records(kind: str, how: str, tmp_path: Path) -> None:
    """However the batches come (in order, shuffled, in groups, verified by the worker, a file twice), the rows
    of ``card_days`` are the (day, card) of every purchase, cancel and load stored, and the cards report and
    the payback count, for each period, the distinct cards the records of its days name."""
    with world(kind, tmp_path) as w:
        files = _four_days(w, tmp_path / "batches", seed=7)
        w.ingest_loads()
        if how != "in order":
            files = random.Random(5).sample(files, len(files))
        run = process_files(w.engine, files, w.keys, w.options(group_records=20 if "groups" in how else 0))
        assert sorted(r.status for r in run.batches) == ["accepted"] * 9 + ["duplicate"]
        expected = _from_records(w)
        with w.engine.connect() as conn:
            assert {(int(d), n) for d, n in conn.execute(select(card_days))} == expected
            rep = run_check(conn, full=True)
            assert rep.ok, rep.failures
        for start, end in PERIODS:
            first = None if start is None else (start - D0).days + NOW // DAY
            last = None if end is None else (end - D0).days + NOW // DAY
            want = len({n for d, n in expected if (first is None or d >= first) and (last is None or d <= last)})
            assert _used(w, start, end) == (want, want), (start, end)
        assert _used(w, None, None)[0] == 12  # the cards only loaded are used too
        assert _used(w, D0, D0)[0] < 12


def test_check_finds_a_day_of_use_missing_and_one_with_no_record(tmp_path: Path) -> None:
    """A missing row is found by the check that reads its record (the plain check before it proved the
    entry, and every full check); a row no record says only by the full check, which reads every record."""
    with world("sqlite", tmp_path) as w:
        files = _four_days(w, tmp_path / "batches", seed=3)
        w.ingest_loads()
        process_files(w.engine, files, w.keys, w.options())
        with w.engine.begin() as conn:
            day, number = conn.execute(select(card_days.c.day, card_days.c.card_number)
                                       .order_by(card_days.c.day.desc()).limit(1)).one()
            conn.execute(delete(card_days).where(card_days.c.day == day, card_days.c.card_number == number))
        with w.engine.connect() as conn:
            plain, full = run_check(conn, full=False), run_check(conn, full=True)
        for rep in (plain, full):
            assert [f["invariant"] for f in rep.failures] == ["card_days == the records' days of use"]
            assert rep.failures[0]["evidence"] == [{"day": day, "card_number": number, "problem": "missing"}]
        with w.engine.begin() as conn:
            conn.execute(insert(card_days).values(day=day, card_number=number))
            conn.execute(insert(card_days).values(day=day + 30, card_number=number))
        with w.engine.connect() as conn:
            assert run_check(conn, full=False).ok
            rep = run_check(conn, full=True)
        assert rep.failures[0]["evidence"] == [{"day": day + 30, "card_number": number, "problem": "no record"}]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_cards_report_reads_no_record(kind: str, tmp_path: Path) -> None:
    """The cards report counts the cards used from ``card_days``: none of its statements names ``records``
    (a year of them is what it must not read), and it still counts every card used."""
    from sqlalchemy import event

    with world(kind, tmp_path) as w:
        process_files(w.engine, _four_days(w, tmp_path / "batches", seed=9), w.keys, w.options())
        statements: list[str] = []

        def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
            statements.append(statement)

        event.listen(w.engine, "before_cursor_execute", seen)
        with w.engine.connect() as conn:
            summary = reports.cards_report(conn, D0, None).summary
        event.remove(w.engine, "before_cursor_execute", seen)
        assert summary["used_in_period"] == len({n for _, n in _from_records(w)}) == 12
        assert statements and not [s for s in statements if "records" in s], statements

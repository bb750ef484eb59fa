"""The per-batch daily sales aggregates: written by the import, equal to their records, checked."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from support import REPO
from support.backoffice import DAY, NOW, World

from processing.check import run_check
from processing.rows import ROW_FIELDS
from processing.sales import sales_by_day, sales_rows
from processing.schema.processing import records, sales
from processing.synthetic import card_record
from purse.protocol import RecordType


def _row(kind: int, amount: int, day: int) -> tuple[object, ...]:
    return ("6001000000000017", 1, kind, amount, 7, 1, day, 42, 1, 1, b"")


def test_sales_by_day_sums_purchases_and_cancels_per_day_only() -> None:
    assert ROW_FIELDS.index("record_type") == 2 and ROW_FIELDS.index("amount") == 3 and ROW_FIELDS.index("day") == 6
    rows = [_row(2, 100, 10), _row(2, 50, 10), _row(3, 50, 10), _row(1, 9_999, 10), _row(2, 7, 11),
            _row(4, 0, 12)]
    assert sales_by_day(rows) == {10: [2, 150, 1, 50], 11: [1, 7, 0, 0]}
    assert sales_by_day([]) == {}
    acc = sales_by_day(rows[:2])
    assert sales_by_day(rows[2:], acc) is acc and acc == sales_by_day(rows)  # chunk by chunk = all at once


def _history(w: World, seed: int) -> list[Path]:
    """Random purchases and cancels over several days and two terminals, in several batches."""
    rng = random.Random(seed)
    w.merchant(42)
    w.merchant(43)
    terms = [w.terminal(7, 42), w.terminal(8, 43)]
    cards = [w.card(i, load=50_000) for i in range(5)]
    files = []
    for step in range(80):
        t, card = rng.choice(terms), rng.choice(cards)
        when = NOW + step * DAY // 7
        amount = rng.randint(1, 400)
        if card.balance >= amount:
            t.purchase(card, amount, when)
            if rng.random() < 0.25:
                t.add(card_record(card, RecordType.CANCEL, amount, t.terminal_id, t.next_seq(), when + 1))
        if step % 20 == 19:
            files += [t.close(w.tmp / f"{t.terminal_id}-{t.batch_seq + 1}.spb") for t in terms if t.entries]
    return files


@pytest.mark.parametrize("parallel_from", [1, 1_000_000], ids=["worker-verifies", "in-process"])
def test_import_writes_one_sales_row_per_batch_and_day_equal_to_its_records(processing_db: World,
                                                                            parallel_from: int) -> None:
    w = processing_db
    files = _history(w, 3)
    for path in files:  # small chunks: the sums are carried across them
        assert w.process(path, chunk_records=5, parallel_min_records=parallel_from).status == "accepted"
    assert w.process(files[0]).status == "duplicate"
    with w.engine.connect() as conn:
        stored = conn.execute(select(*[records.c[n] for n in ROW_FIELDS])).all()
        expected: dict[tuple[int, int], list[int]] = {}
        for batch_id in {r[8] for r in stored if r[8] is not None}:
            for day, sums in sales_by_day(r for r in stored if r[8] == batch_id).items():
                expected[batch_id, day] = sums
        found = {(b, d): [pc, pt, cc, ct] for b, d, pc, pt, cc, ct in conn.execute(select(
            sales.c.batch_id, sales.c.day, sales.c.purchase_count, sales.c.purchase_total, sales.c.cancel_count,
            sales.c.cancel_total))}
        assert found == expected and len(found) > len(files)  # several days per batch
        assert sum(v[2] for v in found.values()) > 0  # cancellations are in it too
        rep = run_check(conn)
        assert rep.ok, rep.failures


def test_sales_rows_are_one_per_day_in_day_order_and_none_for_no_days() -> None:
    days = sales_by_day([_row(RecordType.PURCHASE, 5, 19_001), _row(RecordType.CANCEL, 2, 19_000),
                         _row(RecordType.PURCHASE, 7, 19_001)])
    assert sales_rows(3, 42, 7, days) == [
        {"batch_id": 3, "day": 19_000, "merchant_id": 42, "terminal_id": 7, "purchase_count": 0, "purchase_total": 0,
         "cancel_count": 1, "cancel_total": 2},
        {"batch_id": 3, "day": 19_001, "merchant_id": 42, "terminal_id": 7, "purchase_count": 2, "purchase_total": 12,
         "cancel_count": 0, "cancel_total": 0}]
    assert sales_rows(3, 42, 7, {}) == []


def _check_cli(url: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SMARTPURSE_HOME=str(home), SMARTPURSE_DB=url)
    return subprocess.run([sys.executable, str(REPO / "cli.py"), "--json", "check"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize("corruption", ["altered", "deleted"])
def test_smartpurse_check_fails_with_evidence_when_sales_drift_from_records(processing_db: World,
                                                                           corruption: str) -> None:
    w = processing_db
    for path in _history(w, 11):
        assert w.process(path).status == "accepted"
    proc = _check_cli(w.url, w.tmp / "home")
    assert proc.returncode == 0, proc.stderr
    with w.engine.begin() as conn:
        batch_id, day, total = conn.execute(select(sales.c.batch_id, sales.c.day, sales.c.purchase_total)
                                            .order_by(sales.c.batch_id, sales.c.day).limit(1)).one()
        where = (sales.c.batch_id == batch_id) & (sales.c.day == day)
        if corruption == "altered":
            conn.execute(update(sales).where(where).values(purchase_total=total + 5))
        else:
            conn.execute(delete(sales).where(where))
    proc = _check_cli(w.url, w.tmp / "home")
    assert proc.returncode != 0
    assert "invariants failed" in proc.stderr and "Traceback" not in proc.stderr
    failures = {f["invariant"]: f for f in json.loads(proc.stdout)["failures"]}
    assert set(failures) == {"sales == sum of their records", "merchant payable == unsettled sales"}
    (evidence,) = failures["sales == sum of their records"]["evidence"]
    assert (evidence["batch_id"], evidence["day"]) == (batch_id, day)
    assert evidence["records"]["purchase_total"] == total
    if corruption == "altered":
        assert evidence["sales"]["purchase_total"] == total + 5
    else:
        assert evidence["sales"] is None

"""Reports: numbers that add up, CSV Excel reads, XLSX with numeric cells and totals, JSON exact."""

from __future__ import annotations

import csv
import datetime as dt
import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from sqlalchemy import insert
from support.backoffice import DAY, NOW, World

from processing import ledger, reportfmt, reports, synthetic
from processing.presentation import Presentation
from processing.schema.desk import DepositMove, card_deposits
from processing.schema.loads import loads
from processing.schema.processing import card_points
from processing.synthetic import card_record
from processing.transfers import post_due_transfers
from purse.errors import UserError
from purse.protocol import RecordType

D0 = dt.date(2023, 11, 14)  # the UTC day of NOW


def _shop(w: World) -> tuple[str, str]:
    w.merchant(42, fee_bps=200, name="Кафе «Ромашка»")
    t = w.terminal(7, 42)
    a, b = w.card(1, load=100_000), w.card(2, load=50_000, when=NOW + DAY)
    t.purchase(a, 12_345, NOW + 10, program_id=9, earned=12)
    t.purchase(b, 1_000, NOW + DAY + 10)
    t.add(card_record(b, RecordType.CANCEL, 1_000, 7, t.next_seq(), NOW + DAY + 20))
    t.purchase(a, 5, NOW + 2 * DAY, program_id=9, earned=0)
    assert w.process(t.close(w.tmp / "b.spb")).accepted == 4
    return a.number, b.number


def test_settlement_report_in_three_formats(processing_db: World, tmp_path: Path) -> None:
    w = processing_db
    _shop(w)
    with w.engine.connect() as conn:
        rep = reports.build(conn, "settlement")
    assert [r[0] for r in rep.rows] == [D0, D0 + dt.timedelta(days=1), D0 + dt.timedelta(days=2)]
    assert rep.totals is not None and rep.totals[5] == 12_345 + 1_000 + 5 and rep.totals[7] == 1_000

    csv_path = reportfmt.write(rep, "csv", tmp_path / "s.csv")
    raw = csv_path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads UTF-8
    rows = list(csv.reader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0][:3] == ["Day", "Merchant no.", "Merchant"] and rows[0][5] == "Gross sales, RUB"
    assert rows[1][2] == "Кафе «Ромашка»" and rows[1][5] == "123.45"
    assert rows[-2] == [] and rows[-1][0] == "TOTAL" and rows[-1][5] == "133.50"  # the totals apart

    xlsx = reportfmt.write(rep, "xlsx", tmp_path / "s.xlsx")
    ws = load_workbook(xlsx).active
    assert ws["A1"].value.endswith("(RUB)") and ws["F2"].value == "Gross sales, RUB"
    assert ws["F3"].value == Decimal("123.45") or ws["F3"].value == pytest.approx(123.45)
    assert ws["F3"].data_type == "n" and ws["F3"].number_format == "#,##0.00"
    assert ws["A3"].is_date
    assert ws.cell(ws.max_row, 1).value == "TOTAL" and ws.cell(ws.max_row, 6).value == pytest.approx(133.50)
    assert ws.cell(ws.max_row, 1).font.bold and ws.cell(ws.max_row - 1, 1).value is None

    doc = json.loads(reportfmt.write(rep, "json", tmp_path / "s.json").read_text(encoding="utf-8"))
    assert doc["rows"][0]["gross"] == 12_345 and doc["rows"][0]["day"] == "2023-11-14"
    assert doc["totals"]["fee"] == sum(r["fee"] for r in doc["rows"])


def test_float_report_has_the_seed_economics(processing_db: World) -> None:
    """The seed's example: 12 000 on cards on average, 35 % a year: 350 a month saved."""
    w = processing_db
    w.card(1, load=1_200_000)
    w.merchant(42)
    t = w.terminal(7, 42)
    t.purchase(w.card(2, load=10), 10, NOW + 5)  # a batch, so the loads get ingested
    w.process(t.close(w.tmp / "b.spb"))
    with w.engine.connect() as conn:
        rep = reports.build(conn, "float", start=D0, end=D0 + dt.timedelta(days=29), rate=Decimal("35"))
    s = rep.summary
    assert s["days"] == 30 and s["average_float"] == 1_200_000 == s["closing_float"]
    assert s["interest_per_year_at_average_float"] == 420_000
    assert s["interest_for_period"] == 34_521  # 12 000.00 x 35 % x 30/365 = 345.2055
    assert rep.rows[0][2] == 1_200_010 and rep.rows[-1][9] == 1_200_000


def test_float_report_reads_aggregates_and_equals_its_records(processing_db: World) -> None:
    """The float's movements come from ``sales`` and the index of loads and cash-outs, not from a scan of
    the records: every day of the report equals what that day's records sum to, purchases, cancellations,
    loads at the desk and in a batch, and a card's cash-out at its return included."""
    from sqlalchemy import case, func, select, text

    from processing.schema.desk import cash_outs
    from processing.schema.processing import records

    w = processing_db
    _shop(w)
    c = w.card(3, load=7_000, when=NOW + 2 * DAY)
    t = w.terminal(8, 42)
    t.purchase(c, 2_500, NOW + 2 * DAY + 60)
    t.add(synthetic.card_record(c, RecordType.LOAD, 900, 8, t.next_seq(), NOW + 3 * DAY))  # a load in a batch
    assert w.process(t.close(w.tmp / "c.spb")).accepted == 2
    raw = synthetic.card_record(c, RecordType.CASH_OUT, c.balance, synthetic.CREDIT_TERMINAL, 99, NOW + 4 * DAY)
    with w.engine.begin() as conn:
        conn.execute(insert(cash_outs).values(card_number=c.number, counter=c.counter, amount=5_400,
                                              terminal_id=synthetic.CREDIT_TERMINAL, terminal_seq=99,
                                              time=NOW + 4 * DAY, record=raw))
    w.ingest_loads()
    r = records.c
    with w.engine.connect() as conn:
        rep = reports.build(conn, "float")
        truth = {reports.EPOCH + dt.timedelta(days=int(d)): tuple(int(v) for v in sums) for d, *sums in conn.execute(
            select(r.day, *[func.sum(case((r.record_type == int(kind), r.amount), else_=0)) for kind in (
                RecordType.LOAD, RecordType.PURCHASE, RecordType.CANCEL, RecordType.CASH_OUT)]).group_by(r.day))}
        in_ledger = ledger.card_float(conn)
        if w.engine.dialect.name == "sqlite":  # the loads and cash-outs are summed from their partial index alone
            plan = " ".join(str(row[-1]) for row in conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT day, sum(amount) FROM records WHERE record_type IN (1, 5) GROUP BY day")))
            assert "USING COVERING INDEX ix_records_loads_cash_outs" in plan, plan
    shown = {row[0]: (row[2] + row[3], row[4], row[5], row[6]) for row in rep.rows}  # loads + transfer loads
    assert {d: v for d, v in shown.items() if any(v)} == truth
    assert truth[D0 + dt.timedelta(days=3)] == (900, 0, 0, 0) and truth[D0 + dt.timedelta(days=4)] == (0, 0, 0, 5_400)
    # card 1: 100 000 - 12 345 - 5; card 2: 50 000 - 1 000 + 1 000; card 3 returned: 7 000 - 2 500 + 900 - 5 400
    assert rep.summary["closing_float"] == 137_650 == in_ledger


def test_float_report_follows_a_replaced_cards_value(processing_db: World) -> None:
    """The value leaves the float when processing moves it to replacement_payable and comes back with the
    desk's transfer load: the report's closing float is the ledger's at every step."""
    w = processing_db
    old, new = w.card(1, load=50_000), w.card(2)
    transfer_id = w.lose_card(old, new.number, new.uid)

    def closing_and_ledger() -> tuple[int, int, list[Any]]:
        with w.engine.connect() as conn:
            rep = reports.build(conn, "float", start=D0, end=D0 + dt.timedelta(days=5))
            return rep.summary["closing_float"], ledger.card_float(conn), rep.totals or []

    assert closing_and_ledger()[:2] == (50_000, 50_000)
    with w.engine.begin() as conn:
        post_due_transfers(conn, NOW + 2 * DAY, DAY)
    closing, in_ledger, totals = closing_and_ledger()
    assert (closing, in_ledger) == (0, 0) and totals[7] == 50_000  # the replaced_cards column
    with w.engine.begin() as conn:
        conn.execute(insert(loads).values(**synthetic.load_row(new, 50_000, NOW + DAY, 77), transfer_id=transfer_id))
    w.ingest_loads()
    closing, in_ledger, totals = closing_and_ledger()
    assert (closing, in_ledger) == (50_000, 50_000)
    assert (totals[2], totals[3]) == (50_000, 50_000)  # loaded at the desk, and put back from the old card


def test_statement_points_and_anomalies(processing_db: World) -> None:
    w = processing_db
    a, b = _shop(w)
    with w.engine.connect() as conn:
        st = reports.build(conn, "statement", card=a)
        assert [r[2] for r in st.rows] == ["load", "purchase", "purchase"]
        assert [r[5] for r in st.rows] == [100_000, -12_345, -5] and st.summary["shadow_balance"] == 87_650
        pts = reports.build(conn, "points")
        assert pts.rows == [[9, "Program 9", 1, 12, 0, 12, 0, 0, 0, 12, 0]]  # opening 0, +12 earned, closing 12
        assert pts.summary["reconciles"] is True
        an = reports.build(conn, "anomalies")
        assert an.rows == []
        with pytest.raises(UserError, match="needs --card"):
            reports.build(conn, "statement")
        with pytest.raises(UserError, match="no records of card"):
            reports.build(conn, "statement", card="6001999999999999")


def test_terminals_report_says_which_terminal_stopped_sending(processing_db: World) -> None:
    """Terminal 7 sent a batch, terminal 8 is registered and never sent one: at the import, 7 is sending;
    six days later both are silent. Sales in the period come from the per-batch aggregates."""
    w = processing_db
    w.merchant(42)
    t7 = w.terminal(7, 42)
    w.terminal(8, 42)
    card = w.card(1, load=5_000)
    t7.purchase(card, 300, NOW + 5)
    t7.purchase(card, 200, NOW + 6)
    assert w.process(t7.close(w.tmp / "t7.spb")).accepted == 2
    with w.engine.connect() as conn:
        now = dt.datetime.fromtimestamp(w.now, dt.UTC)  # the import's clock stamped the batch
        report = reports.terminals_report(conn, None, None, now=now)
        rows = {r[0]: dict(zip([c.name for c in report.columns], r, strict=True)) for r in report.rows}
        assert (rows[7]["state"], rows[7]["batches"], rows[7]["last_batch_seq"], rows[7]["purchases"],
                rows[7]["net_sales"], rows[7]["days_since_last_batch"]) == ("sending", 1, 1, 2, 500, 0)
        assert (rows[8]["state"], rows[8]["batches"], rows[8]["last_batch_at"]) == ("silent", 0, None)
        assert report.summary["silent_terminals"] == 1
        later = reports.terminals_report(conn, None, None, now=now + dt.timedelta(days=6))
        assert [r[8] for r in later.rows] == ["silent", "silent"] and later.rows[0][7] == 6
        assert reports.build(conn, "terminals").kind == "terminals"


def test_cards_report_counts_states_and_the_cards_used_in_the_period(processing_db: World) -> None:
    w = processing_db
    w.merchant(42)
    t = w.terminal(7, 42)
    used, idle, lost = w.card(1, load=5_000), w.card(2), w.card(3)
    w.register_card(used)
    w.register_card(idle)
    w.register_card(lost, blocked_at=NOW)
    t.purchase(used, 100, NOW + 5)
    assert w.process(t.close(w.tmp / "b.spb")).accepted == 1
    with w.engine.connect() as conn:
        report = reports.build(conn, "cards")
        day = dt.datetime.fromtimestamp(NOW, dt.UTC).date()
        later = reports.build(conn, "cards", start=day + dt.timedelta(days=10), end=day + dt.timedelta(days=20))
    assert dict((r[0], r[1]) for r in report.rows) == {"issued": 2, "blocked": 1, "replaced": 0}
    assert (report.summary["registered"], report.summary["used_in_period"]) == (3, 1)
    assert later.summary["used_in_period"] == 0


def test_the_points_report_names_the_programs_processing_verified(processing_db: World) -> None:
    from processing.run import name_programs, process_files
    from purse.loyalty import example_program_bytes, parse_program_bytes

    w = processing_db
    program = parse_program_bytes(example_program_bytes())
    options = w.options(programs={program.program_id: program})
    process_files(w.engine, [], w.keys, options)  # what `smartpurse process --programs` does first
    with w.engine.begin() as conn:
        conn.execute(insert(card_points).values(card_number="6001000000000014", program_id=program.program_id,
                                                points=5, counter=2))
        conn.execute(insert(card_points).values(card_number="6001000000000022", program_id=99, points=1, counter=2))
        name_programs(conn, {program.program_id: replace(program, name="Old name", version=0)})  # older: ignored
        rows = reports.points_report(conn, None, None).rows
    assert [(r[0], r[1]) for r in rows] == [(program.program_id, "Coffee Club"), (99, "Program 99")]


def test_points_report_says_why_outstanding_is_not_earned_less_redeemed(processing_db: World) -> None:
    """A visit after the expiry lapses 30 points; a visit that wins a prize turns 100 into the prize."""
    w = processing_db
    w.merchant(42)
    t = w.terminal(7, 42)
    card = w.card(1, load=50_000)
    for raw in (synthetic.card_record(card, RecordType.PURCHASE, 100, 7, t.next_seq(), NOW + 1, program_id=5,
                                      earned=30),
                synthetic.card_record(card, RecordType.PURCHASE, 100, 7, t.next_seq(), NOW + 2, program_id=5,
                                      earned=4, points_after=4),  # the 30 lapsed before the 4 were earned
                synthetic.card_record(card, RecordType.PURCHASE, 100, 7, t.next_seq(), NOW + 3, program_id=5,
                                      earned=96, prizes=1, points_after=0)):  # 100 points: a prize, reset
        t.add(raw)
    assert w.process(t.close(w.tmp / "b.spb")).accepted == 3
    with w.engine.connect() as conn:
        report = reports.points_report(conn, None, None)
    row = dict(zip([c.name for c in report.columns], report.rows[0], strict=True))
    assert (row["points_earned"], row["points_redeemed"], row["points_lapsed"], row["points_to_prizes"]) == \
        (130, 0, 30, 100)
    assert row["points_outstanding"] == row["points_earned"] - row["points_redeemed"] - row["points_lapsed"] \
        - row["points_to_prizes"] == 0


def test_points_reconcile_from_the_opening_of_a_period_to_its_closing(processing_db: World) -> None:
    """opening + earned - redeemed - lapsed - to prizes = closing, per program, for a period with records
    before it (the opening) and after it (not counted)."""
    w = processing_db
    w.merchant(42)
    t = w.terminal(7, 42)
    card = w.card(1, load=50_000)
    t.add(synthetic.card_record(card, RecordType.PURCHASE, 100, 7, t.next_seq(), NOW + 1, program_id=5, earned=40))
    t.add(synthetic.card_record(card, RecordType.PURCHASE, 100, 7, t.next_seq(), NOW + DAY + 1, program_id=5,
                                earned=10, redeemed=20))  # 40 + 10 - 20 = 30
    t.add(synthetic.card_record(card, RecordType.PURCHASE, 100, 7, t.next_seq(), NOW + 3 * DAY, program_id=5,
                                earned=5))  # after the period
    assert w.process(t.close(w.tmp / "b.spb")).accepted == 3
    with w.engine.connect() as conn:
        period = reports.points_report(conn, D0 + dt.timedelta(days=1), D0 + dt.timedelta(days=2))
    row = dict(zip([c.name for c in period.columns], period.rows[0], strict=True))
    assert (row["points_opening"], row["points_earned"], row["points_redeemed"], row["points_closing"]) == \
        (40, 10, 20, 30)
    assert row["points_difference"] == 0 and period.summary["reconciles"] is True


@pytest.mark.parametrize("kind", ["settlement", "float", "statement", "points", "anomalies", "terminals", "cards",
                                  "journal", "ledger", "trial-balance"])
def test_every_xlsx_prints_as_it_comes(processing_db: World, tmp_path: Path, kind: str) -> None:
    """Labels for people, the currency, number formats, the header on every page, fit to the page width,
    landscape when wide, an autofilter over the data alone, widths that show dates and card numbers whole."""
    w = processing_db
    a, _ = _shop(w)
    look = Presentation("ru", 643, 2)
    with w.engine.connect() as conn:
        rep = reports.build(conn, kind, card=a, rate=Decimal(35))
    ws = load_workbook(reportfmt.write(rep, "xlsx", tmp_path / f"{kind}.xlsx", look)).active
    headers = [c.value for c in ws[2]]
    assert ws["A1"].value == f"{rep.title_for('ru')} (RUB)"
    assert all(h and "_" not in h for h in headers), headers  # labels, not identifiers
    for col, header in zip(rep.columns, headers, strict=True):
        assert header.endswith(", RUB") == (col.kind == "money"), header
    assert ws.print_title_rows in ("2:2", "$2:$2")  # the header row on every printed page
    assert ws.page_setup.fitToWidth == 1 and ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.page_setup.orientation == ("landscape" if len(rep.columns) > 5 else "portrait")
    if rep.rows:
        assert ws.auto_filter.ref == f"A2:{ws.cell(2, len(rep.columns)).column_letter}{2 + len(rep.rows)}"
    for i, col in enumerate(rep.columns, 1):
        letter = ws.cell(2, i).column_letter
        if col.kind == "money":
            assert all(c.number_format == "#,##0.00" for (c,) in ws.iter_rows(min_row=3, min_col=i, max_col=i))
        if col.kind in ("date", "card"):
            assert ws.column_dimensions[letter].width >= (12 if col.kind == "date" else 21)
        if col.kind == "card":
            assert all(c.value is None or c.data_type == "s" for (c,) in ws.iter_rows(min_row=3, min_col=i, max_col=i))


def test_a_russian_csv_reads_back_with_semicolons_and_decimal_commas(processing_db: World, tmp_path: Path) -> None:
    w = processing_db
    a, _ = _shop(w)
    look = Presentation("ru", 643, 2)
    with w.engine.connect() as conn:
        settlement = reports.build(conn, "settlement")
        statement = reports.build(conn, "statement", card=a)
    path = reportfmt.write(settlement, "csv", tmp_path / "s.csv", look)
    rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines(), delimiter=";"))
    assert rows[0][5] == "Продажи, RUB" and rows[0][8] == "Чистые продажи, RUB"
    money = [i for i, c in enumerate(settlement.columns) if c.kind == "money"]
    for row, original in zip(rows[1:], settlement.rows, strict=False):
        for i in money:
            assert Decimal(row[i].replace(",", ".")) * 100 == original[i]
    assert rows[-1][0] == "TOTAL" and Decimal(rows[-1][5].replace(",", ".")) == Decimal("133.50")
    lines = list(csv.reader(reportfmt.write(statement, "csv", tmp_path / "st.csv", look)
                            .read_text(encoding="utf-8-sig").splitlines(), delimiter=";"))
    assert lines[0][5] == "Сумма, RUB" and lines[1][5] == "1000,00"


def test_a_card_number_stays_sixteen_digits_in_a_spreadsheet(tmp_path: Path) -> None:
    """6277000000000789 read as a number becomes 6277000000000790: CSV writes it as a text formula, XLSX as text."""
    rep = reportfmt.Report("cards", "Cards", [reportfmt.Col("card_number", "card"), reportfmt.Col("amount", "money")],
                           [["6277000000000789", 100]])
    text = reportfmt.write(rep, "csv", tmp_path / "c.csv").read_text(encoding="utf-8-sig")
    assert list(csv.reader(text.splitlines()))[1] == ['="6277000000000789"', "1.00"]
    cell = load_workbook(reportfmt.write(rep, "xlsx", tmp_path / "c.xlsx")).active["A3"]
    assert (cell.value, cell.data_type, cell.number_format) == ("6277000000000789", "s", "@")


def test_dormant_and_expired_cards_that_hold_money(processing_db: World) -> None:
    """The money the issuer owes that nobody spends: cards unused for the idle period, and expired cards."""
    w = processing_db
    w.merchant(42)
    t = w.terminal(7, 42)
    used, idle, empty = w.card(1, load=10_000), w.card(2, load=20_000), w.card(3, load=500)
    for c in (used, idle, empty):
        w.register_card(c)
    with w.engine.begin() as conn:  # the idle card's holder paid a deposit for it: owed back too
        conn.execute(insert(card_deposits).values(card_number=idle.number, move=DepositMove.TAKEN, amount=750))
    t.purchase(used, 100, NOW + 100 * DAY)
    t.purchase(empty, 500, NOW + 10)  # spent to zero: nothing owed, not listed
    w.process(t.close(w.tmp / "b.spb"))
    with w.engine.connect() as conn:
        rep = reports.dormant_report(conn, D0 + dt.timedelta(days=200), idle_days=180)
        assert [(r[0], r[2], r[3], r[7]) for r in rep.rows] == [(idle.number, 20_000, 750, "dormant")]
        assert rep.summary["balance"] == 20_000 and rep.summary["deposits"] == 750 and rep.rows[0][5] == 200
        later = reports.dormant_report(conn, D0 + dt.timedelta(days=400), idle_days=365)  # both past expiry
        assert [(r[0], r[7]) for r in later.rows] == [(used.number, "expired"), (idle.number, "expired")]
        assert reports.dormant_report(conn, D0 + dt.timedelta(days=30), idle_days=180).rows == []
    with pytest.raises(UserError, match="at least 1"):
        with w.engine.connect() as conn:
            reports.dormant_report(conn, None, idle_days=0)


def test_a_cancelled_prize_goes_back_to_the_prize_column(processing_db: World) -> None:
    """A purchase that won a prize took its points to the prize; its cancel gives them back there, so
    neither column is left with a negative lapse."""
    w = processing_db
    w.merchant(42)
    t = w.terminal(7, 42)
    card = w.card(1, load=50_000)
    t.add(synthetic.card_record(card, RecordType.PURCHASE, 100, 7, t.next_seq(), NOW + 1, program_id=5, earned=90))
    t.add(synthetic.card_record(card, RecordType.PURCHASE, 100, 7, t.next_seq(), NOW + 2, program_id=5, earned=10,
                                prizes=1, points_after=0))  # 100 points: the prize
    t.add(synthetic.card_record(card, RecordType.CANCEL, 100, 7, t.next_seq(), NOW + 3, program_id=5, earned=-10,
                                points_after=90))  # the cancel restores the 90 before it
    assert w.process(t.close(w.tmp / "b.spb")).accepted == 3
    with w.engine.connect() as conn:
        report = reports.points_report(conn, None, None)
    row = dict(zip([c.name for c in report.columns], report.rows[0], strict=True))
    assert (row["points_earned"], row["points_lapsed"], row["points_to_prizes"], row["points_closing"]) == \
        (90, 0, 0, 90)
    assert row["points_difference"] == 0

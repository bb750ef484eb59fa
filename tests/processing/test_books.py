"""The books out of the ledger: the trial balance balances, its closing card float is ``check``'s, the
journal re-adds to its turnover, the general ledger ends where it says, and a period opens where the one
before it closed; the command line writes them in every format."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from support.backoffice import DAY, NOW, World
from support.cli import fails, ok_json

from processing import books, ledger
from processing.check import run_check
from processing.settlement import settle

D0 = dt.date(2023, 11, 14)  # the UTC day of NOW


def _month(w: World) -> None:
    w.merchant(42, fee_bps=200)
    t = w.terminal(7, 42)
    a, b = w.card(1, load=100_000), w.card(2, load=50_000, when=NOW + DAY)
    t.purchase(a, 12_345, NOW + 10)
    t.purchase(b, 1_000, NOW + DAY + 10)
    t.purchase(a, 500, NOW + 2 * DAY)
    assert w.process(t.close(w.tmp / "b1.spb")).accepted == 3
    settle(w.engine, D0 + dt.timedelta(days=1))


def test_the_trial_balance_balances_and_agrees_with_check_and_the_journal(processing_db: World) -> None:
    w = processing_db
    _month(w)
    with w.engine.connect() as conn:
        tb = books.trial_balance_report(conn, None, None)
        journal = books.journal_report(conn, None, None)
        figures = run_check(conn).figures
        by_code = {row[0]: row for row in tb.rows}
        assert tb.summary["balances"] is True
        assert tb.totals is not None and tb.totals[5] == tb.totals[6] == journal.summary["debits"] == \
            journal.summary["credits"]
        assert by_code[ledger.CARD_FLOAT][8] == figures["card_float"] == 100_000 + 50_000 - 12_345 - 1_000 - 500
        for row in tb.rows:  # every account's closing balance is the ledger's
            assert row[7] - row[8] == ledger.balance(conn, row[0])
        assert {r[2] for r in journal.rows} == {"load", "batch", "settlement"}


def test_a_period_opens_where_the_one_before_closed(processing_db: World) -> None:
    w = processing_db
    _month(w)
    first, second = (None, D0), (D0 + dt.timedelta(days=1), None)
    with w.engine.connect() as conn:
        before = {r[0]: r for r in books.trial_balance_report(conn, *first).rows}
        after = {r[0]: r for r in books.trial_balance_report(conn, *second).rows}
        assert all((before[c][7], before[c][8]) == (after[c][3], after[c][4]) for c in before)
        float_ledger = books.ledger_report(conn, *second, account=ledger.CARD_FLOAT)
        assert float_ledger.rows[0][4] == "opening balance" and float_ledger.rows[0][7] == \
            before[ledger.CARD_FLOAT][7] - before[ledger.CARD_FLOAT][8]
        assert float_ledger.rows[-1][7] == ledger.balance(conn, ledger.CARD_FLOAT)


def test_the_books_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    w = World(f"sqlite:///{tmp_path / 'processing.db'}", tmp_path)  # the database the commands are pointed at
    _month(w)
    home = tmp_path / "home"
    (home).mkdir()
    monkeypatch.setenv("SMARTPURSE_HOME", str(home))
    monkeypatch.setenv("SMARTPURSE_DB", w.url)
    from purse.home import Home

    Home.open(home).create()
    out = tmp_path / "tb.csv"
    written = ok_json(capsys, "report", "trial-balance", "--format", "csv", "--out", str(out))
    assert written["summary"]["balances"] is True
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8-sig"))))
    assert rows[0][:3] == ["Account", "Account name", "Type"] and rows[0][3] == "Opening balance, debit, RUB"
    assert rows[-1][0] == "TOTAL"
    ok_json(capsys, "report", "journal", "--format", "xlsx", "--out", str(tmp_path / "journal.xlsx"))
    ok_json(capsys, "report", "ledger", "--account", "card_float", "--format", "json", "--out",
            str(tmp_path / "ledger.json"))
    fails(capsys, "no account 'nowhere'", "report", "ledger", "--account", "nowhere", "--format", "csv", "--out",
          str(tmp_path / "x.csv"))
    fails(capsys, "--to is before --from", "report", "journal", "--from", "2023-11-20", "--to", "2023-11-10",
          "--format", "csv", "--out", str(tmp_path / "y.csv"))

"""The payback report: the source document's own scenario gives its own table, the issuer's books give
theirs, and the command line writes it as a table, CSV, XLSX or JSON."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook
from support.backoffice import NOW, World
from support.cli import fails, ok_json

from processing import reports
from processing.payback import payback_lines, scenario_inputs
from purse.errors import UserError

# The document's parameters ("Оценка окупаемости", seed article 004), in cents.
DOCUMENT = dict(system_cost=750_000, deposit_per_card=750, rate_pct=Decimal(35), cash_cost_pct=Decimal("0.45"),
                margin_pct=Decimal(10), growth_pct=Decimal(20))


def _table(lines: list) -> dict[str, object]:
    return {line.item: line.value for line in lines}


def test_the_documents_scenario_gives_the_documents_numbers() -> None:
    table = _table(payback_lines(scenario_inputs(cards=200, monthly_load=10_000, left_pct=Decimal(20), **DOCUMENT)))
    assert table["average float per card"] == 6_000  # (100 + 20) x 0.5 = 60
    assert table["average float"] == 1_200_000  # 12,000
    assert table["interest saved a month"] == 35_000  # 350
    assert table["cash handling saved a month"] == 5_400  # 54: 0.45 % of the float, as the document does
    assert table["cash handling saved a month, on the cash loaded"] == 9_000  # 90: 0.45 % of the 20,000 loaded
    assert table["more regular customers"] == 40
    assert table["extra margin a month"] == 40_000  # 400
    assert table["benefit a month"] == 80_400  # 804
    assert table["card deposits"] == 150_000 and table["system cost less deposits"] == 600_000  # 6,000
    assert table["payback"] == Decimal("7.5")  # 6,000 / 804 = 7.46 months


def test_every_line_says_how_it_is_computed() -> None:
    lines = payback_lines(scenario_inputs(cards=200, monthly_load=10_000, left_pct=Decimal(20), **DOCUMENT))
    assert all(line.formula for line in lines)
    assert next(line for line in lines if line.item == "interest saved a month").formula == \
        "average float x 35 % a year / 12"


def test_bad_parameters_are_refused_in_one_line() -> None:
    with pytest.raises(UserError, match="at least one card"):
        scenario_inputs(cards=0, monthly_load=10_000, left_pct=Decimal(20), **DOCUMENT)
    with pytest.raises(UserError, match="margin must be 0 to 1000 per cent"):
        scenario_inputs(cards=1, monthly_load=1, left_pct=Decimal(0), **{**DOCUMENT, "margin_pct": Decimal(-1)})


def test_the_issuers_own_books_give_the_inputs(processing_db: World) -> None:
    """Two cards hold 12,000 between them for 30 days; 2 % of them spent: the float and the spend are the books'."""
    w = processing_db
    a, b = w.card(1, load=600_000), w.card(2, load=600_000)
    w.merchant(42)
    t = w.terminal(7, 42)
    t.purchase(a, 10_000, NOW + 5)
    t.purchase(b, 10_000, NOW + 6)
    w.process(t.close(w.tmp / "b.spb"))
    start = dt.date(2023, 11, 14)
    with w.engine.connect() as conn:
        inputs = reports.payback_inputs(conn, start, start + dt.timedelta(days=29), **DOCUMENT)
    assert inputs.cards == 2 and inputs.average_float == 1_180_000
    assert inputs.monthly_loads == 1_216_667  # 12,000 loaded in 30 days, per month of 365/12 days
    assert inputs.monthly_spend_per_card == 10_139
    table = _table(payback_lines(inputs))
    assert table["interest saved a month"] == 34_417  # 11,800 x 35 % / 12


def test_the_command_prints_and_writes_the_payback(personalization_home: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    scenario = ["report", "payback", "--system-cost", "7500", "--deposit", "7.50", "--rate", "35", "--cash-cost",
                "0.45", "--margin", "10", "--growth", "20", "--cards", "200", "--monthly-load", "100", "--left", "20"]
    shown = ok_json(capsys, *scenario)
    lines = {line["item"]: line for line in shown["lines"]}
    assert lines["benefit a month"]["amount"] == 80_400 and lines["payback"]["figure"] == "7.5"
    out = tmp_path / "payback.xlsx"
    ok_json(capsys, *scenario, "--format", "xlsx", "--out", str(out))
    sheet = load_workbook(out).active
    values = {row[0]: row[2] for row in sheet.iter_rows(min_row=2, values_only=True)}
    assert values["benefit a month"] == Decimal("804") and values["average float"] == Decimal("12000")
    as_json = tmp_path / "payback.json"
    ok_json(capsys, *scenario, "--format", "json", "--out", str(as_json))
    assert json.loads(as_json.read_text())["rows"][-1]["figure"] == "7.5"
    fails(capsys, "needs --system-cost", "report", "payback")
    fails(capsys, "not a percentage", *scenario[:-1], "twenty")
    fails(capsys, "no records in the period", "report", "payback", "--system-cost", "7500")

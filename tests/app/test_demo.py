"""The main job: ``smartpurse demo`` end to end, on SQLite and PostgreSQL, and repeatable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import load_workbook
from support import backoffice as processing_env

SMALL = ["--cards", "12", "--purchases", "160", "--terminals", "3", "--days", "5"]


def run_demo(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point's code path, in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-c", "import cli; cli.main()", "--json", "demo", "--out", str(out),
                           *SMALL, *extra], capture_output=True, text=True, timeout=300)


def summary(out: Path, *extra: str) -> dict:
    done = run_demo(out, *extra)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_demo_conserves_money_and_catches_the_clone(kind: str, tmp_path: Path) -> None:
    with processing_env.database(kind, tmp_path) as url:
        extra = ("--db", url) if kind == "postgresql" else ()
        data = summary(tmp_path / "demo", *extra)
    cons = data["conservation"]
    assert cons["holds"] is True
    assert cons["expected"] == cons["cards"] == cons["ledger_float"] == cons["shadow"] > 0
    money = data["money"]
    returned = data["returned"]  # two holders gave their cards back: balance and deposit paid out
    assert len(returned["cards"]) == 2 and returned["paid_out"] > 0 and returned["deposits_refunded"] == 2 * 750
    assert money["loaded"] - money["spent"] + money["cancelled"] - returned["paid_out"] == money["left_on_cards"]
    assert data["money"]["purchases"] == 160
    assert data["clone"]["caught"] and data["clone"]["hotlisted"]
    assert data["anomalies"].get("clone") == 1
    assert data["tear"]["card"] and data["tear"]["recovered"] == 1
    replaced = data["replacement"]  # its value reached the new card at the desk: conservation above counts it
    assert replaced["old"] and replaced["new"] and replaced["transferred"] > 0
    assert data["processing"]["rejected"] == 0
    msgs = data["messages"]  # delivered to the SMTP server and SMS gateway the demo started itself
    assert msgs["emails"] == msgs["sent"]["email"] > 0 and msgs["sms"] == msgs["sent"]["sms"] > 0
    assert msgs["sms_cost"] > 0 and msgs["failed"] == 0 and msgs["interrupted"] == 0
    reasons = " ".join(msgs["suppressed"])
    assert "no consent: the holder has not agreed to hear by email" in reasons and "stale:" in reasons
    box = tmp_path / "demo" / "messages" / "mailbox.mbox"
    assert box.read_text(encoding="utf-8").count("List-Unsubscribe-Post: List-Unsubscribe=One-Click") \
        == msgs["emails"]
    assert data["check_failures"] == []
    reports = tmp_path / "demo" / "reports"
    for kind_ in ("settlement", "float", "points", "anomalies", "statement", "journal", "trial-balance"):
        for fmt in ("csv", "xlsx", "json"):
            assert (reports / f"{kind_}.{fmt}").stat().st_size > 0
    floats = json.loads((reports / "float.json").read_text(encoding="utf-8"))["totals"]
    assert floats["loads"] == money["loaded"]  # one "loaded": the money taken at the desks, in both
    assert floats["transfer_loads"] == floats["replaced_cards"] == replaced["transferred"]
    balance = json.loads((reports / "trial-balance.json").read_text(encoding="utf-8"))
    assert balance["summary"]["balances"] is True
    assert next(r for r in balance["rows"] if r["account"] == "card_float")["closing_credit"] == cons["ledger_float"]
    assert next(r for r in balance["rows"] if r["account"] == "card_deposits")["closing_credit"] == \
        returned["deposits_taken"] - returned["deposits_refunded"]
    assert floats["cash_outs"] == returned["paid_out"]
    assert "<svg" in (reports / "dashboard.html").read_text(encoding="utf-8")


def _cells(path: Path) -> list[tuple]:
    return [tuple(row) for ws in load_workbook(path).worksheets for row in ws.iter_rows(values_only=True)]


@pytest.mark.slow
def test_same_seed_gives_identical_reports(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    summary(first, "--seed", "7")
    summary(second, "--seed", "7")
    names = sorted(p.name for p in (first / "reports").iterdir())
    assert names == sorted(p.name for p in (second / "reports").iterdir())
    for name in names:
        a, b = first / "reports" / name, second / "reports" / name
        if name.endswith(".xlsx"):  # the zip carries save times: compare what a reader sees
            assert _cells(a) == _cells(b), name
        else:
            assert a.read_bytes() == b.read_bytes(), name
    other = tmp_path / "other"
    summary(other, "--seed", "8")
    assert (other / "reports" / "settlement.csv").read_bytes() != (first / "reports" / "settlement.csv").read_bytes()


def test_demo_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    keep = tmp_path / "mine"
    keep.mkdir()
    (keep / "thesis.txt").write_text("do not delete")
    done = run_demo(keep)
    assert done.returncode == 6
    assert done.stderr.strip().count("\n") == 0 and "not made by the demo" in done.stderr
    assert (keep / "thesis.txt").read_text() == "do not delete"


@pytest.mark.parametrize("args,message", [(["--cards", "1"], "--cards"), (["--terminals", "abc"], "--terminals")])
def test_demo_bad_arguments_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-c", "import cli; cli.main()", "demo", "--out", str(tmp_path / "d"), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("seed", ["1", "2", "3", "4"])
def test_a_small_demo_runs_through_whatever_the_seed(tmp_path: Path, seed: str) -> None:
    """Few cards, many sales: the clone, the tear and the replacement still find cards with money on them."""
    data = summary(tmp_path / "demo", "--cards", "12", "--purchases", "150", "--seed", seed)
    assert data["conservation"]["holds"] is True and data["clone"]["caught"]

"""A holder gives the card back, as the desk and the accountant run it: ``cards issue --deposit``,
``cash-out``, then ``process``, ``check`` and the books (docs/books.md, "Deposits and cash-out")."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from support import pcsc as pcsc_env
from support.cli import fails, ok_json, run
from support.issuer import PASSPHRASE

from processing.db import open_database
from processing.schema.holders import RequestKind, request_once
from purse.cardaccess import open_card
from purse.home import Home
from purse.profiles import image_state
from purse.protocol import CardState
from purse.rolekeys import Role, open_role_keys
from purse.terminal import CreditTerminal
from purse.terminal_log import TerminalLog

REFERENCE, DESFIRE, THIRD = "6277000000000011", "6277000000000029", "6277000000000037"


def _trial_balance(path: Path) -> dict[str, tuple[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    return {r[0]: (r[7], r[8]) for r in rows[1:] if r and r[0] and r[0] != "TOTAL"}


def test_cards_are_returned_their_money_and_deposits_paid_out_and_booked(
        personalization_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for role in (["pos", "--terminal", "1", "--merchant", "1"], ["credit"], ["processing"]):
        ok_json(capsys, "keys", "export", "--role", *role)
    fails(capsys, "not an amount", "cards", "issue", "--count", "1", "--show-pins", "--deposit", "seven")
    issued = ok_json(capsys, "cards", "issue", "--count", "1", "--show-pins", "--deposit", "7.50")
    assert issued["deposit"] == 750
    ok_json(capsys, "cards", "issue", "--count", "2", "--profile", "desfire", "--deposit", "7.50")
    for number in (REFERENCE, DESFIRE, THIRD):
        ok_json(capsys, "load", number, "300.00")
    ok_json(capsys, "pos", "sell", REFERENCE, "120.00", "--terminal", "1")

    # The holder asked on their page for a payout at return (docs/portal.md): the desk sees it, cash-out fulfils it.
    with open_database(f"sqlite:///{personalization_home / 'smartpurse.db'}").begin() as conn:
        request_once(conn, REFERENCE, RequestKind.PAYOUT, None, 1_700_000_000, "self-service")
    code, out, _ = run(capsys, "cards", "show", REFERENCE)
    assert code == 0 and f"payout asked for 2023-11-14 22:13 (self-service): open: smartpurse cash-out {REFERENCE}" \
        in out
    paid = ok_json(capsys, "cash-out", REFERENCE)
    assert (paid["kind"], paid["amount"], paid["deposit"], paid["paid_out"], paid["balance"]) == (
        "cash_out", 180_00, 750, 187_50, 0)
    code, out, _ = run(capsys, "cash-out", DESFIRE)
    assert code == 0 and "PAY OUT 307.50: balance 300.00 + deposit 7.50" in out
    assert image_state((personalization_home / "cards" / f"{DESFIRE}.card").read_bytes()).state \
        == CardState.RETURNED

    # Paid once: the books refuse a second return before the card is touched; the card refuses the rest.
    err = fails(capsys, "balance paid out already", "cash-out", REFERENCE)
    assert run(capsys, "cash-out", REFERENCE)[0] == 6 and "returned on" in err
    fails(capsys, "returned and cashed out", "load", REFERENCE, "10.00")
    fails(capsys, "returned and cashed out", "cards", "block", DESFIRE)
    fails(capsys, "returned", "pos", "sell", DESFIRE, "1.00", "--terminal", "1")
    shown = ok_json(capsys, "cards", "show", REFERENCE)
    assert (shown["state"], shown["deposit"], shown["returned"]["balance_paid_out"],
            shown["returned"]["deposit_refunded"]) == ("returned", 750, 180_00, 750)
    assert shown["requests"]["payout"]["note"] == "paid out 18000 + deposit 750"
    code, out, _ = run(capsys, "cards", "show", REFERENCE)
    assert code == 0 and "paid out 180.00 and the deposit 7.50" in out and "(self-service): done" in out

    # A crash after the card paid out and before the desk wrote it down: the retry finds it on the card.
    keys = open_role_keys(Home.open(personalization_home), Role.CREDIT, PASSPHRASE)
    log = TerminalLog(tmp_path / "crashed-desk.db", terminal_id=0, merchant_id=0, log_key=None)
    desk = CreditTerminal(open_card(Home.open(personalization_home), THIRD), keys.sam(), log, terminal_id=0)
    assert desk.cash_out(THIRD).amount == 300_00
    again = ok_json(capsys, "cash-out", THIRD)
    assert (again["completed_before"], again["amount"], again["paid_out"]) == (True, 300_00, 307_50)

    ok_json(capsys, "pos", "batch", "--terminal", "1", "--out", "t1.spb")
    ok_json(capsys, "process", "t1.spb")
    checked = ok_json(capsys, "check")
    figures = checked["figures"]
    assert checked["ok"] and (figures["card_float"], figures["card_deposits"]) == (0, 0)
    assert (figures["deposits_to_post"], figures["cash_outs_to_post"]) == (0, 0)
    ok_json(capsys, "report", "trial-balance", "--format", "csv", "--out", "tb.csv")
    books = _trial_balance(tmp_path / "tb.csv")
    # cash: 900.00 loaded + 22.50 deposits − 780.00 paid out − 22.50 refunded = 120.00, what the sale took
    assert books["cash"] == ("120.00", "0.00") and books["card_deposits"] == ("0.00", "0.00")
    assert books["card_float"] == ("0.00", "0.00")
    report = ok_json(capsys, "report", "float", "--format", "json", "--out", "float.json")
    assert report["rows"] >= 1
    import json

    floated = json.loads((tmp_path / "float.json").read_text())
    assert floated["totals"]["cash_outs"] == 780_00 and floated["totals"]["loads"] == 900_00


def test_the_desk_refuses_another_card_on_the_reader(pcsc: pcsc_env.PcscEnv, personalization_home: Path,
                                                     tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Two cards on the desk, the wrong one on the reader: nothing is loaded or paid out on it."""
    monkeypatch.chdir(tmp_path)
    ok_json(capsys, "keys", "export", "--role", "credit")
    ok_json(capsys, "cards", "issue", "--count", "2", "--show-pins")
    other = personalization_home / "cards" / f"{DESFIRE}.card"  # the second reference card, this time
    pcsc.serve(other)
    code, _, err = run(capsys, "load", REFERENCE, "10.00", "--reader", pcsc.reader)
    assert code == 6 and f"the card presented is {DESFIRE}, not {REFERENCE}" in err
    code, _, err = run(capsys, "cash-out", REFERENCE, "--reader", pcsc.reader)
    assert code == 6 and f"the card presented is {DESFIRE}, not {REFERENCE}" in err
    assert ok_json(capsys, "load", DESFIRE, "10.00", "--reader", pcsc.reader)["balance"] == 10_00
    assert image_state(other.read_bytes()).balance == 10_00

"""A replaced card's value reaches the new chip: issuer staff, desk and processing, from the command line.

The card is issued, loaded with cash, used at a shop; it is damaged and replaced; processing
moves its value to ``replacement_payable`` once its last batch is in; the desk loads exactly
that value onto the new card without taking cash; processing posts it against the payable.
At the end the new chip, its shadow balance and the ledger agree, and cash is only the cash.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from support.backoffice import DAY, NOW, World
from support.cards import Issuer
from support.cli import fails, run
from support.cli import ok_json as ok

from processing import ledger
from processing.db import open_database
from processing.issuer_loads import load_at_desk
from processing.schema.loads import loads
from processing.transfers import post_due_transfers
from purse.card.applet import PurseApplet
from purse.terminal import TransactionInterrupted


@pytest.mark.slow
def test_the_value_of_a_replaced_card_is_loaded_onto_its_replacement(personalization_home: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for role in (["--role", "pos", "--terminal", "5", "--merchant", "9"], ["--role", "credit"],
                 ["--role", "processing"]):
        ok(capsys, "keys", "export", *role)
    (old,) = (c["card_number"] for c in ok(capsys, "cards", "issue", "--count", "1", "--show-pins")["cards"])
    ok(capsys, "load", old, "100.00")
    ok(capsys, "pos", "sell", old, "30.00", "--terminal", "5")
    batch = tmp_path / "shop.spb"
    ok(capsys, "pos", "batch", "--terminal", "5", "--out", str(batch))

    replaced = ok(capsys, "cards", "replace", old, "--reason", "damaged")
    new = replaced["new"]
    assert replaced["balance_on_card"] == 7_000
    fails(capsys, "is not transferred yet", "load", new, "--transfer")  # the shop's batch is still out
    fails(capsys, f"was replaced by {new}: load the new card", "load", old, "--transfer")
    fails(capsys, "or --transfer", "load", new, "70.00", "--transfer")

    processed = ok(capsys, "process", str(batch))
    assert processed["transfers"] == [{"from": old, "to": new, "amount": 7_000, "points": 0}]
    engine = open_database(f"sqlite:///{personalization_home / 'smartpurse.db'}")
    with engine.connect() as conn:
        assert (ledger.card_float(conn), ledger.replacement_payable(conn)) == (0, 7_000)

    code, shown, _ = run(capsys, "cards", "show", new)
    assert code == 0 and f"70.00 to load onto the new card at a desk (smartpurse load {new} --transfer)" in shown
    receipt = ok(capsys, "load", new, "--transfer")
    assert (receipt["amount"], receipt["balance"], receipt["transfer_from"]) == (7_000, 7_000, old)
    fails(capsys, "loaded onto card", "load", new, "--transfer")  # once

    ok(capsys, "process", str(batch))  # a duplicate batch; the run posts the desk's new loads
    checked = ok(capsys, "check")
    assert checked["ok"], checked
    assert (checked["figures"]["card_float"], checked["figures"]["replacement_payable"]) == (7_000, 0)
    assert ok(capsys, "pos", "read", new, "--terminal", "5")["balance"] == 7_000
    shown_json = ok(capsys, "cards", "show", new)
    assert shown_json["shadow_balance"]["balance"] == 7_000 and shown_json["transfer"]["loaded_at"]
    code, shown, _ = run(capsys, "cards", "show", old)
    assert code == 0 and "70.00 loaded onto the new card" in shown
    with engine.connect() as conn:
        assert ledger.balance(conn, ledger.CASH) == 10_000  # the 100.00 paid in; the transfer took no cash
    engine.dispose()


def test_a_card_pulled_during_the_transfer_load_gets_the_value_once(processing_db: World,
                                                                    purse_issuer: Issuer) -> None:
    """Tear the new card at every write of the desk's load: presented again, it ends with the value
    exactly once, and exactly one load names the transfer (the recovered one, or a new one)."""
    w = processing_db
    probe = purse_issuer.card()
    probe.storage.writes = 0
    purse_issuer.credit_terminal(probe).load(5_000)
    writes = probe.storage.writes
    outcomes = set()
    for k in range(1, writes + 1):
        old, new_number = w.card(100 + k, load=5_000), f"{6001000000100000 + k:016d}"
        w.lose_card(old, new_number, (1000 + k).to_bytes(7, "big"))
        with w.engine.begin() as conn:
            assert post_due_transfers(conn, NOW + 2 * DAY, DAY)[-1]["amount"] == 5_000
        card = purse_issuer.card(number=new_number)
        desk = purse_issuer.credit_terminal(card)
        card.tear_at(k)
        with pytest.raises(TransactionInterrupted):
            load_at_desk(w.engine, desk, new_number, None)
        card.connect()  # presented again
        committed = PurseApplet(card.storage).balance == 5_000
        done = load_at_desk(w.engine, desk, new_number, None)
        receipt, due = done.receipt, done.transfer
        assert done.completed_before == committed, k
        assert due is not None and receipt.balance == PurseApplet(card.storage).balance == 5_000, k
        with w.engine.connect() as conn:
            paid = conn.execute(select(loads.c.amount).where(loads.c.transfer_id == due.transfer_id)).scalars().all()
        assert paid == [5_000], k
        outcomes.add(committed)
    assert outcomes == {False, True}, "tearing should reach both: load done on the chip, and not done"

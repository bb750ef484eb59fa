"""DESFire cards from the command line, as issuer staff, a cashier and the back office run them:
``cards issue --profile desfire``, then the same ``load``, ``pos``, ``process``, ``check``, ``cards``
commands as for the reference card, with the one-line refusals for what a DESFire card cannot do."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import fails, ok_json, run

from purse.profiles import CardChip, image_chip, image_state

CARD, OTHER = "6277000000000011", "6277000000000029"


def test_a_desfire_card_from_issue_to_the_books(personalization_home: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    fails(capsys, "DESFire cards get no PIN", "cards", "issue", "--count", "1", "--profile", "desfire",
          "--show-pins")
    issued = ok_json(capsys, "cards", "issue", "--count", "2", "--profile", "desfire")
    assert issued["profile"] == "desfire" and [c["card_number"] for c in issued["cards"]] == [CARD, OTHER]
    assert all("pin" not in c for c in issued["cards"])
    image = personalization_home / "cards" / f"{CARD}.card"
    assert image_chip(image.read_bytes()) is CardChip.DESFIRE
    for role in (["pos", "--terminal", "1", "--merchant", "1"], ["credit"], ["processing"]):
        ok_json(capsys, "keys", "export", "--role", *role)

    assert ok_json(capsys, "load", CARD, "500.00")["balance"] == 500_00
    sold = ok_json(capsys, "pos", "sell", CARD, "120.00", "--terminal", "1")
    assert (sold["balance"], sold["counter"]) == (380_00, 2)
    assert ok_json(capsys, "pos", "cancel", CARD, "--terminal", "1")["balance"] == 500_00
    assert ok_json(capsys, "pos", "sell", CARD, "20.00", "--terminal", "1")["balance"] == 480_00
    fails(capsys, "insufficient funds", "pos", "sell", CARD, "900.00", "--terminal", "1")
    assert image_state(image.read_bytes()).balance == 480_00  # the refused sale wrote nothing

    ok_json(capsys, "pos", "batch", "--terminal", "1", "--out", "t1-b1.spb")
    processed = ok_json(capsys, "process", "t1-b1.spb")
    assert [(r["status"], r["accepted"], r["held"]) for r in processed["batches"]] == [("accepted", 3, 0)]
    checked = ok_json(capsys, "check")
    assert checked["ok"] and checked["figures"]["card_float"] == 480_00
    shown = ok_json(capsys, "cards", "show", CARD)
    assert shown["shadow_balance"]["balance"] == 480_00 and shown["profile"] == "desfire"

    fails(capsys, "has no PIN to reset", "cards", "pin-reset", CARD)
    replaced = ok_json(capsys, "cards", "replace", CARD, "--reason", "damaged")
    new = replaced["new"]
    assert image_chip((personalization_home / "cards" / f"{new}.card").read_bytes()) is CardChip.DESFIRE
    assert replaced["balance_on_card"] == 480_00
    ok_json(capsys, "process", "t1-b1.spb")  # processing settles the old card's value (the batch is a duplicate)
    moved = ok_json(capsys, "load", new, "--transfer")
    assert moved["balance"] == 480_00

    code, out, _ = run(capsys, "apdu", "--image", str(image), "906A000000")
    assert code == 0 and "9100 (DESFire: success)" in out

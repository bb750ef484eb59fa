"""The ``keys`` and ``cards`` commands end to end, as issuer staff run them (one-line errors, --json)."""

from __future__ import annotations

import csv
import json
import stat
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select
from support.cli import ok_json, run
from support.issuer import PASSPHRASE

from personalization.issuing import issuer_sam
from personalization.keyfiles import load_issuer
from processing.db import open_database
from processing.schema.registry import holders, merchants, terminals
from purse.home import Home
from purse.protocol import KeyRef
from purse.session import PurseSession
from purse.transport.virtual import VirtualTransport


def test_key_ceremony_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SMARTPURSE_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("SMARTPURSE_PASSPHRASE", PASSPHRASE)
    created = ok_json(capsys, "keys", "init")
    assert created["current_version"] == 1
    assert stat.S_IMODE((tmp_path / "h" / "keystore.json").stat().st_mode) == 0o600
    shown = ok_json(capsys, "keys", "show")
    store = load_issuer(Home.open(tmp_path / "h"), PASSPHRASE)
    assert shown["masters"]["DEBIT"]["1"] != store.masters["DEBIT"][1].hex()
    assert store.masters["DEBIT"][1].hex() not in json.dumps(shown)
    assert ok_json(capsys, "keys", "rotate")["current_version"] == 2
    monkeypatch.setenv("OTHER", "terminal passphrase")
    exported = ok_json(capsys, "keys", "export", "--role", "pos", "--terminal", "12", "--merchant", "5",
                       "--passphrase-env", "OTHER")
    assert exported["path"].endswith("keys/pos-12.key") and "DEBIT v1,2" in exported["holds"]
    engine = open_database(f"sqlite:///{tmp_path / 'h' / 'smartpurse.db'}")
    with engine.connect() as conn:
        assert conn.execute(select(terminals.c.merchant_id, terminals.c.log_key_version)).one() == (5, 2)
        assert conn.execute(select(merchants.c.fee_bps)).scalar() == 100
    code, _, err = run(capsys, "keys", "init")
    assert code == 6 and "already exists" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("SMARTPURSE_PASSPHRASE", "wrong")
    code, _, err = run(capsys, "keys", "show")
    assert code == 6 and err.strip().splitlines() == [err.strip()] and "wrong passphrase" in err


def test_issue_and_life_cycle_from_the_command_line(personalization_home: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    holders = tmp_path / "holders.csv"
    holders.write_text("name,phone,email\nAnna,+79120000000,anna@example.org\nBoris,+79120000001,b@example.org\n")
    issued = ok_json(capsys, "cards", "issue", "--from", str(holders), "--program", "3", "--show-pins")
    assert issued["issued"] == 2 and all(len(c["pin"]) == 4 for c in issued["cards"])
    again = ok_json(capsys, "cards", "issue", "--from", str(holders), "--show-pins")
    assert again["issued"] == 0 and again["already_issued"] == 2
    anna, boris = (c["card_number"] for c in issued["cards"])
    listed = ok_json(capsys, "cards", "list")
    assert [c["card_number"] for c in listed] == [anna, boris] and listed[0]["holder_name"] == "Anna"
    shown = ok_json(capsys, "cards", "show", anna)
    assert shown["state"] == "issued" and shown["program"] == 3 and shown["email"] == "anna@example.org"
    blocked = ok_json(capsys, "cards", "block", anna, "--reason", "stolen")
    assert blocked["state"] == "blocked" and blocked["reason"] == "stolen"
    assert [c["card_number"] for c in ok_json(capsys, "cards", "list", "--state", "blocked")] == [anna]
    assert ok_json(capsys, "cards", "unblock", anna)["state"] == "issued"
    code, _, err = run(capsys, "cards", "unblock", anna)
    assert code == 6 and "not blocked" in err
    reset = ok_json(capsys, "cards", "pin-reset", boris, "--pin", "8642")
    assert reset["pin"] == "8642"
    store = load_issuer(Home.open(personalization_home), PASSPHRASE)
    session = PurseSession(VirtualTransport.open(personalization_home / "cards" / f"{boris}.card"),
                           issuer_sam(store))
    session.select()
    session.open(KeyRef.DEBIT, 1)
    session.verify_pin("8642")
    replaced = ok_json(capsys, "cards", "replace", boris, "--reason", "damaged")
    assert ok_json(capsys, "cards", "show", boris)["replaced_by"] == replaced["new"]
    assert ok_json(capsys, "cards", "show", replaced["new"])["holder_name"] == "Boris"
    svg, png = tmp_path / "face.svg", tmp_path / "face.png"
    ok_json(capsys, "cards", "face", anna, "--out", str(svg))
    ok_json(capsys, "cards", "face", anna, "--out", str(png))
    assert " ".join(anna[i : i + 4] for i in range(0, 16, 4)) in svg.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A real decoder reads both symbols off the whole face, uncropped: a regular QR (zbar, like most
    # scanners, reads no Micro QR) and a Code 128 with its full quiet zone.
    decoded = subprocess.run(["zbarimg", "--quiet", "--raw", "-Sdisable", "-Sqrcode.enable", "-Scode128.enable",
                              str(png)], capture_output=True, text=True, timeout=60)
    assert decoded.returncode == 0, decoded.stderr
    assert sorted(decoded.stdout.split()) == [anna, anna]
    qr_only = subprocess.run(["zbarimg", "--quiet", "-Sdisable", "-Sqrcode.enable", str(png)],
                             capture_output=True, text=True, timeout=60)
    assert qr_only.stdout.strip() == f"QR-Code:{anna}"


def test_text_output_shows_the_summary_and_pins(personalization_home: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "cards", "issue", "--count", "2", "--batch", "t", "--show-pins")
    assert code == 0, err
    assert "batch t" in out and "issued now" in out and "6277 0000 0000 0011" in out
    pins = tmp_path / "pins.csv"
    code, out, err = run(capsys, "cards", "issue", "--count", "1", "--batch", "u", "--pins", str(pins))
    assert code == 0 and stat.S_IMODE(pins.stat().st_mode) == 0o600
    assert pins.read_text().splitlines()[1].startswith("6277000000000037,")


@pytest.mark.parametrize(("args", "message"), [
    (("cards", "issue"), "either --count N or --from"),
    (("cards", "issue", "--count", "1"), "say where the PINs go: --pins FILE"),
    (("cards", "issue", "--count", "1", "--pins", "p.csv", "--show-pins"), "say where the PINs go"),
    (("cards", "issue", "--count", "0"), "at least 1"),
    (("cards", "issue", "--from", "/nonexistent.csv"), "no such file"),
    (("cards", "issue", "--count", "1", "--show-pins", "--expiry", "2020-13"), "--expiry"),
    (("cards", "issue", "--count", "1", "--show-pins", "--expiry", "2001-01"), "future"),
    (("cards", "show", "1234"), "16 digits"),
    (("cards", "show", "6277000000000011"), "no card 6277000000000011"),
    (("cards", "block", "6277000000000012"), "check digit"),
    (("cards", "face", "6277000000000011", "--out", "x.gif"), "no card"),
    (("cards", "pin-reset", "6277000000000011"), "no card"),
    (("keys", "export", "--role", "pos"), "--terminal"),
    (("cards", "issue", "--count", "1", "--show-pins", "--reader", "Nonexistent Reader 99"), ""),
])
def test_bad_input_is_one_line_and_nonzero(personalization_home: Path, capsys: pytest.CaptureFixture[str],
                                           args: tuple[str, ...], message: str) -> None:
    code, out, err = run(capsys, *args)
    assert code != 0 and message in err and "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("insert a blank card")]
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_bad_csv_reports_each_row_and_issues_nothing(personalization_home: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("name,phone,email\nA,1,a@example.org\nB,+79120000001,bad\nC,+79120000002,c@example.org\n")
    code, out, err = run(capsys, "cards", "issue", "--from", str(bad), "--show-pins")
    lines = err.strip().splitlines()
    assert code == 6 and "row 2: bad phone" in lines[0] and "row 3: bad e-mail" in lines[1]
    assert lines[-1].startswith("error:") and "nothing issued" in lines[-1]
    assert ok_json(capsys, "cards", "list") == []


def test_the_pins_file_is_real_csv_and_no_cell_runs_as_a_formula(personalization_home: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A holder's name is the holder's: quoted where it holds a comma or a quote, never a formula."""
    holders = tmp_path / "holders.csv"
    holders.write_text('name,phone,email\n"=HYPERLINK(""http://x"")",+79120000000,a@example.org\n'
                       '"Smith, ""Jo""",+79120000001,b@example.org\n', encoding="utf-8")
    pins = tmp_path / "pins.csv"
    code, _, err = run(capsys, "cards", "issue", "--from", str(holders), "--pins", str(pins))
    assert code == 0, err
    rows = list(csv.reader(pins.read_text(encoding="utf-8-sig").splitlines()))
    assert rows[0] == ["number", "holder", "pin"]
    assert sorted(r[1] for r in rows[1:]) == ["'=HYPERLINK(\"http://x\")", 'Smith, "Jo"']
    assert all(r[2].isdigit() and len(r[2]) == 4 for r in rows[1:])


def test_digits_other_than_ascii_are_refused_before_anything_is_written(personalization_home: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``١٢٣٤`` and ``²³⁴⁵`` are digits to ``str.isdigit``; a PIN, tier or program must be 0-9."""
    bad = tmp_path / "bad.csv"
    bad.write_text("name,phone,email,program,tier,pin\n"
                   "A,+79120000001,a@example.org,,,1234\n"
                   "B,+79120000002,b@example.org,,,١٢٣٤\n"
                   "C,+79120000003,c@example.org,,²,\n"
                   "D,+79120000004,d@example.org,³,,\n"
                   "E,+7 912 000-00-05,e@example.org,,,\n"
                   "F,+٧٩١٢٠٠٠٠٠٠٦,f@example.org,,,\n", encoding="utf-8")
    code, _, err = run(capsys, "cards", "issue", "--from", str(bad), "--show-pins")
    lines = err.strip().splitlines()
    assert code == 6 and len(lines) == 5
    for line, expected in zip(lines, ("row 3: bad PIN", "row 4: bad tier", "row 5: bad program", "row 7: bad phone"),
                              strict=False):
        assert expected in line, (expected, line)
    assert "nothing issued" in lines[-1]
    assert ok_json(capsys, "cards", "list") == []
    engine = open_database(f"sqlite:///{personalization_home / 'smartpurse.db'}")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(holders)).scalar_one() == 0


def test_staff_find_a_holders_cards_by_phone_or_email(personalization_home: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    holders = tmp_path / "holders.csv"
    holders.write_text("name,phone,email\nAnna,+7 912 000-00-00,Anna@Example.org\nBoris,89120000001,b@example.org\n")
    issued = ok_json(capsys, "cards", "issue", "--from", str(holders), "--show-pins")
    anna, boris = (c["card_number"] for c in issued["cards"])
    for written in ("+79120000000", "8 (912) 000-00-00", "+7 912 000 00 00"):  # however the caller writes it
        assert [r["card_number"] for r in ok_json(capsys, "cards", "find", "--phone", written)] == [anna]
    assert [r["card_number"] for r in ok_json(capsys, "cards", "find", "--email", "ANNA@example.org")] == [anna]
    assert [r["card_number"] for r in ok_json(capsys, "cards", "find", "--phone", "+79120000001")] == [boris]
    assert ok_json(capsys, "cards", "find", "--email", "nobody@example.org") == []
    code, _, err = run(capsys, "cards", "find", "--phone", "12")
    assert code == 6 and "not a phone number" in err
    code, _, err = run(capsys, "cards", "find")
    assert code == 2 and "either --phone or --email" in err

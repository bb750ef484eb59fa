"""Merchants as counterparties, from the command line, as an accountant keeps them: details checked before
anything is stored, and the payout files a bank imports from the statements ``settle`` made."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import xmlschema
from openpyxl import load_workbook
from support.cli import fails, ok_json, run

from personalization.counterparty import BadDetails, check_ru_account
from processing.payouts import read_client_bank_exchange

CARD = "6277000000000011"
BIC = "044525225"


def _account(prefix: str, bic: str = BIC) -> str:
    """A settlement account at ``bic`` whose control key (its 9th digit) is right: the one of ten that checks."""
    for key in "0123456789":
        account = prefix[:8] + key + prefix[9:]
        try:
            return check_ru_account(bic, account)[1]
        except BadDetails:
            continue
    raise AssertionError("no control key fits")


def test_the_bank_of_russia_control_key() -> None:
    for bic, corr in (("044525225", "30101810400000000225"), ("044525187", "30101810700000000187"),
                      ("044525593", "30101810200000000593")):  # published correspondent accounts of three banks
        assert check_ru_account(bic, corr) == (bic, corr)
    account = _account("40702810000000001234")
    for i in range(20):  # a mistyped digit anywhere is caught
        wrong = account[:i] + str((int(account[i]) + 1) % 10) + account[i + 1 :]
        with pytest.raises(BadDetails, match="control key"):
            check_ru_account(BIC, wrong)


def test_merchants_are_checked_before_they_are_stored(personalization_home: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    account = _account("40702810000000004321")
    added = ok_json(capsys, "merchants", "add", "7", "--name", "Ромашка", "--legal-name", "ООО «Ромашка»", "--inn",
                    "7707083893", "--bic", BIC, "--account", account, "--bank", "ПАО Сбербанк", "--fee-bps", "150")
    assert (added["tax_number"], added["bank_account"], added["payout_schedule"]) == ("7707083893", account, "monthly")
    fails(capsys, "INN '7707083894' is not valid", "merchants", "add", "8", "--name", "X", "--inn", "7707083894")
    fails(capsys, "control key is wrong", "merchants", "edit", "7", "--account", account[:-1] + "9"
          if account[-1] != "9" else account[:-1] + "8")
    fails(capsys, "needs its bank's SWIFT BIC", "merchants", "edit", "7", "--account", "", "--bic", "",
          "--iban", "DE89370400440532013000")
    fails(capsys, "exists", "merchants", "add", "7", "--name", "again")
    assert ok_json(capsys, "merchants", "show", "7")["bank_account"] == account  # nothing half-written
    edited = ok_json(capsys, "merchants", "edit", "7", "--account", "", "--bic", "DEUTDEFF", "--iban",
                     "DE89 3704 0044 0532 0130 00")
    assert (edited["iban"], edited["bank_account"]) == ("DE89370400440532013000", None)
    listed = ok_json(capsys, "merchants", "list")
    assert [(m["merchant_id"], m["payable"]) for m in listed] == [(7, True)]
    code, _, err = run(capsys, "merchants", "show", "99")
    assert code == 6 and "no merchant 99" in err


def test_payout_files_from_the_statements(personalization_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    issuer_account = _account("40702810000000000777")
    (personalization_home / "smartpurse.toml").write_text(
        '[issuer]\nlegal_name = "ООО «Эмитент»"\ntax_number = "7707083893"\nbank_name = "ПАО Сбербанк"\n'
        f'bank_bic = "{BIC}"\nbank_account = "{issuer_account}"\n', encoding="utf-8")
    ok_json(capsys, "cards", "issue", "--count", "1", "--show-pins")
    for role in (["pos", "--terminal", "1", "--merchant", "1"], ["credit"], ["processing"]):
        ok_json(capsys, "keys", "export", "--role", *role)
    ok_json(capsys, "load", CARD, "500.00")
    ok_json(capsys, "pos", "sell", CARD, "120.00", "--terminal", "1")
    ok_json(capsys, "pos", "batch", "--terminal", "1", "--out", "t1.spb")
    ok_json(capsys, "process", "t1.spb")
    until = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)).isoformat()
    (statement,) = ok_json(capsys, "settle", "--until", until)
    listed = ok_json(capsys, "statements", "list")
    assert [(r["statement"], r["net"]) for r in listed] == [(statement["settlement_id"], statement["net"])]
    number = str(statement["settlement_id"])
    ok_json(capsys, "statements", "print", number, "--format", "xlsx", "--out", "statement.xlsx", "--locale", "ru")
    book = load_workbook(tmp_path / "statement.xlsx")
    assert f"№ {number}" in book.active["A1"].value and book.active["D2"].value == "Продажи, RUB"
    summary = {row[0]: row[1] for row in book["summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["Комиссия, RUB"] * 100 == statement["fee"]
    assert summary["К перечислению, RUB"] * 100 == statement["net"]
    first = ok_json(capsys, "statements", "print", number, "--format", "csv", "--out", "s1.csv")
    ok_json(capsys, "statements", "print", number, "--format", "csv", "--out", "s2.csv")
    assert first["statement"] == int(number)
    assert (tmp_path / "s1.csv").read_bytes() == (tmp_path / "s2.csv").read_bytes()  # the same document again
    fails(capsys, "no statement 999", "statements", "print", "999", "--format", "csv", "--out", "x.csv")
    fails(capsys, "has no legal name or bank details", "merchants", "payouts", "--until", until, "--format", "1c",
          "--out", "missing.txt")
    merchant_account = _account("40702810000000001111")
    ok_json(capsys, "merchants", "edit", "1", "--legal-name", "ООО «Ромашка»", "--inn", "7707083893", "--bic", BIC,
            "--account", merchant_account)
    written = ok_json(capsys, "merchants", "payouts", "--until", until, "--format", "1c", "--out", "payouts.txt")
    assert (written["payments"], written["total"]) == (1, statement["net"])
    data = (tmp_path / "payouts.txt").read_bytes()
    assert data.startswith("1CClientBankExchange\r\n".encode("cp1251"))
    (payment,) = read_client_bank_exchange(data)
    assert (payment.number, payment.amount, payment.payee.bank_account, payment.payee.tax_number) == (
        statement["settlement_id"], statement["net"], merchant_account, "7707083893")
    fails(capsys, "is never overwritten", "merchants", "payouts", "--until", until, "--format", "1c", "--out",
          "payouts.txt")
    fails(capsys, "the issuer has no IBAN", "merchants", "payouts", "--until", until, "--format", "pain.001",
          "--out", "p.xml")

    (personalization_home / "smartpurse.toml").write_text(
        '[issuer]\nlegal_name = "Emitent GmbH"\nbank_bic = "DEUTDEFF"\niban = "DE89370400440532013000"\n',
        encoding="utf-8")
    fails(capsys, "pain.001 pays IBANs only", "merchants", "payouts", "--until", until, "--format", "pain.001",
          "--out", "p.xml")
    ok_json(capsys, "merchants", "edit", "1", "--account", "", "--bic", "COBADEFFXXX", "--iban",
            "DE02120300000000202051")
    ok_json(capsys, "merchants", "payouts", "--until", until, "--format", "pain.001", "--out", "pain.xml")
    import sepaxml

    schema = xmlschema.XMLSchema(str(Path(sepaxml.__file__).parent / "schemas" / "pain.001.001.03.xsd"))
    document = (tmp_path / "pain.xml").read_bytes()
    schema.validate(document.decode())  # raises when the file does not conform
    amount = f'<InstdAmt Ccy="RUB">{statement["net"] // 100}.{statement["net"] % 100:02d}</InstdAmt>'.encode()
    assert amount in document and b"<IBAN>DE02120300000000202051</IBAN>" in document

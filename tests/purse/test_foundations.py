"""The one-per-concept helpers of the card side: settings, the card number, the atomic write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum import luhn

from purse import cardnumber
from purse.errors import UserError
from purse.files import PRIVATE, write_atomic
from purse.home import Home
from purse.settings import DEFAULTS, read_settings


def _settings(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "smartpurse.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_home_without_a_file_has_the_defaults(tmp_path: Path) -> None:
    assert Home.open(tmp_path / "home").settings == DEFAULTS
    assert DEFAULTS.issuer.currency_exponent == 2 and DEFAULTS.merchants.default_fee_bps == 100


def test_a_setting_overrides_only_itself(tmp_path: Path) -> None:
    s = read_settings(_settings(tmp_path, '[issuer]\niin = "62770012"\n[merchants]\ndefault_fee_bps = 150\n'))
    assert (s.issuer.iin, s.issuer.currency, s.merchants.default_fee_bps) == ("62770012", 643, 150)


@pytest.mark.parametrize(("text", "message"), [
    ("[isuer]\niin = '1'\n", "unknown section [isuer]"),
    ("[issuer]\nin = '627700'\n", "unknown setting 'in'"),
    ("[issuer]\ncurrency = 'RUB'\n", "currency must be a whole number"),
    ("[issuer]\nmax_balance = true\n", "max_balance must be a whole number"),
    ("[merchants]\ndefault_fee_bps = 1.5\n", "default_fee_bps must be a whole number"),
    ("[issuer\n", "not valid TOML"),
])
def test_a_wrong_setting_is_one_line_naming_it(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[")) as e:
        read_settings(_settings(tmp_path, text))
    assert "\n" not in str(e.value)


def test_the_card_number_contract() -> None:
    number = "6277000000000011"
    assert cardnumber.format(number) == "6277 0000 0000 0011"
    assert cardnumber.validate("6277 0000-0000 0011") == number == cardnumber.compact(cardnumber.format(number))
    assert cardnumber.is_valid(number) and not cardnumber.is_valid("6277000000000012")
    assert number == "627700000000001" + cardnumber.calc_check_digit("627700000000001")
    with pytest.raises(cardnumber.InvalidCardNumber, match="16 digits"):
        cardnumber.validate("12345")
    with pytest.raises(cardnumber.InvalidCardNumber, match="check digit is wrong"):
        cardnumber.validate("6277000000000012")


@given(st.text(max_size=40))
def test_junk_is_refused_in_one_line_never_an_exception_of_another_kind(text: str) -> None:
    """python-stdnum's robustness habit: every validator meets junk."""
    try:
        digits = cardnumber.validate(text)
    except cardnumber.InvalidCardNumber as e:
        assert "\n" not in str(e).replace(repr(text), "")
    else:
        assert len(digits) == cardnumber.LENGTH and luhn.is_valid(digits)


def test_write_atomic_keeps_the_mode_from_the_first_byte_and_leaves_no_temporary(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = write_atomic(tmp_path / "keys" / "pos-1.key", b"sealed", mode=PRIVATE)
    finally:
        os.umask(old)
    assert path.read_bytes() == b"sealed" and stat.S_IMODE(path.stat().st_mode) == 0o600
    write_atomic(path, b"again", mode=PRIVATE)
    assert path.read_bytes() == b"again"
    with pytest.raises(UserError, match="already exists"):
        write_atomic(path, b"never", overwrite=False)
    assert path.read_bytes() == b"again"
    assert sorted(p.name for p in path.parent.iterdir()) == ["pos-1.key"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.csv"
    target.write_bytes(b"old")
    (tmp_path / "report.csv.d").mkdir()
    with pytest.raises(UserError, match="cannot write"):
        write_atomic(tmp_path / "report.csv.d", b"new")  # a folder stands where the file should go
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.csv", "report.csv.d"]

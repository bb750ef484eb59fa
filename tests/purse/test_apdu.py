"""Short APDUs (ISO 7816-4 section 5.1) and the translation of status words into errors."""

from __future__ import annotations

import pytest

from purse import apdu
from purse.apdu import SW, ApduError, CommandApdu, MalformedApdu, ResponseApdu, raise_for_status


@pytest.mark.parametrize(("raw", "expected"), [
    ("80540000", CommandApdu(0x80, 0x54, 0, 0)),  # case 1
    ("00B20103" "00", CommandApdu(0x00, 0xB2, 1, 3, b"", 256)),  # case 2, Le=00 means 256
    ("00B20103" "48", CommandApdu(0x00, 0xB2, 1, 3, b"", 0x48)),
    ("00A4040003" "F05350", CommandApdu(0x00, 0xA4, 4, 0, bytes.fromhex("F05350"))),  # case 3
    ("00A4040003" "F05350" "00", CommandApdu(0x00, 0xA4, 4, 0, bytes.fromhex("F05350"), 256)),  # case 4
])
def test_parse_the_four_short_cases(raw: str, expected: CommandApdu) -> None:
    assert CommandApdu.parse(bytes.fromhex(raw)) == expected


@pytest.mark.parametrize("raw", ["", "80", "805400", "8054000003AABB", "8054000002AABBCCDD", "8054000000AABB"])
def test_malformed_commands_are_refused(raw: str) -> None:
    with pytest.raises(MalformedApdu):
        CommandApdu.parse(bytes.fromhex(raw))


def test_build_round_trip_and_le_zero() -> None:
    cmd = CommandApdu(0x80, 0x54, 1, 2, b"\x01\x02", 0)
    assert cmd.to_bytes() == bytes.fromhex("80540102020102" "00")
    assert CommandApdu.parse(cmd.to_bytes()) == CommandApdu(0x80, 0x54, 1, 2, b"\x01\x02", 256)
    assert CommandApdu(0x80, 0x54, 0, 0).to_bytes() == bytes.fromhex("80540000")


def test_more_than_255_bytes_is_not_a_short_apdu() -> None:
    with pytest.raises(MalformedApdu):
        CommandApdu(0x80, 0x54, 0, 0, bytes(256)).to_bytes()
    assert len(CommandApdu(0x80, 0x54, 0, 0, bytes(255)).to_bytes()) == 4 + 1 + 255


def test_malformed_apdu_is_a_user_facing_error() -> None:
    from purse.errors import SmartpurseError

    assert issubclass(MalformedApdu, SmartpurseError) and issubclass(MalformedApdu, ValueError)


def test_response_parse_and_build() -> None:
    r = ResponseApdu.parse(bytes.fromhex("0102" "9101"))
    assert r == ResponseApdu(b"\x01\x02", 0x9101)
    assert r.to_bytes() == bytes.fromhex("01029101")
    with pytest.raises(MalformedApdu):
        ResponseApdu.parse(b"\x90")


@pytest.mark.parametrize(("sw", "error"), [
    (0x6982, apdu.SecurityStatusNotSatisfied),
    (0x6983, apdu.PinBlocked),
    (0x6985, apdu.ConditionsNotSatisfied),
    (0x6A82, apdu.FileNotFound),
    (0x9101, apdu.InsufficientFunds),
    (0x9102, apdu.BalanceLimitExceeded),
    (0x9103, apdu.CardBlocked),
    (0x9104, apdu.CardExpired),
    (0x9105, apdu.NotPersonalized),
    (0x9106, apdu.AlreadyPersonalized),
    (0x9107, apdu.InsufficientPoints),
    (0x9108, apdu.PinRequired),
    (0x9109, apdu.NothingToCancel),
])
def test_known_status_words_become_domain_errors(sw: int, error: type[ApduError]) -> None:
    with pytest.raises(error) as info:
        raise_for_status(sw, b"xy")
    assert info.value.sw == sw and info.value.data == b"xy"
    assert f"{sw:04X}" in str(info.value)


@pytest.mark.parametrize("remaining", [0, 1, 2, 15])
def test_wrong_pin_carries_the_tries_left(remaining: int) -> None:
    with pytest.raises(apdu.WrongPin) as info:
        raise_for_status(0x63C0 | remaining)
    assert info.value.attempts_remaining == remaining
    assert info.value.sw == 0x63C0 | remaining


@pytest.mark.parametrize("sw", [0x6700, 0x6A86, 0x6D00, 0x6E00, 0x6F00, 0x9199, 0x1234])
def test_unknown_or_generic_status_words_stay_apdu_errors(sw: int) -> None:
    with pytest.raises(ApduError) as info:
        raise_for_status(sw)
    assert type(info.value) is ApduError and info.value.sw == sw


def test_ok_raises_nothing() -> None:
    assert raise_for_status(SW.OK) is None


def test_purse_status_words_are_in_the_91xx_class() -> None:
    own = [sw for sw in SW if sw.name in {"INSUFFICIENT_FUNDS", "BALANCE_LIMIT_EXCEEDED", "CARD_BLOCKED",
                                          "CARD_EXPIRED", "NOT_PERSONALIZED", "ALREADY_PERSONALIZED",
                                          "INSUFFICIENT_POINTS", "PIN_REQUIRED", "NOTHING_TO_CANCEL"}]
    assert len(own) == 9 and all(sw >> 8 == 0x91 for sw in own)

"""SMS length and parts as gateways bill them (3GPP TS 23.038): GSM-7 160/153, UCS-2 70/67."""

from __future__ import annotations

import pytest

from processing.holders.sms import sms_length


@pytest.mark.parametrize("text,encoding,units,parts", [
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("{}" * 80, "GSM-7", 320, 3),  # the extension table's characters take two septets each
    ("€" * 80, "GSM-7", 160, 1),
    ("Баланс" * 11 + "1234", "UCS-2", 70, 1),  # Cyrillic: the whole text goes as UCS-2
    ("я" * 71, "UCS-2", 71, 2),
    ("я" * 134, "UCS-2", 134, 2),
    ("я" * 135, "UCS-2", 135, 3),
    ("a" * 69 + "😀", "UCS-2", 71, 2),  # outside the BMP: two UTF-16 code units
    ("", "GSM-7", 0, 1),
])
def test_parts_are_counted_as_the_standard_says(text: str, encoding: str, units: int, parts: int) -> None:
    length = sms_length(text)
    assert (length.encoding, length.units, length.parts) == (encoding, units, parts)


def test_a_cyrillic_sms_is_counted_in_70_character_parts() -> None:
    one = sms_length("Кофейня: на карту **** 0011 зачислено 500,00 ₽, остаток 620,00 ₽.")
    assert (one.encoding, one.parts, one.per_part) == ("UCS-2", 1, 70)
    two = sms_length("Кофейня: " + "покупка " * 9)
    assert (two.parts, two.per_part) == (2, 67)

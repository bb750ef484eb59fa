"""The card number: one contract for every layer, in python-stdnum's shape.

ISO/IEC 7812 style: issuer identification number + account sequence + Luhn check digit,
16 digits because the card's ID file holds 16 BCD digits (docs/protocol.md, "ID file").
``compact`` / ``validate`` / ``is_valid`` / ``format`` / ``calc_check_digit`` mirror
``stdnum`` modules, and the check digit itself is ``stdnum.luhn``'s.
"""

from __future__ import annotations

from stdnum import luhn
from stdnum.exceptions import ValidationError

from purse.errors import UserError

__all__ = [
    "validate",
    "is_valid",
    "compact",
    "format",
    "calc_check_digit",
    "InvalidCardNumber",
    "LENGTH",
]

LENGTH = 16


class InvalidCardNumber(UserError):
    """Not one of the issuer's card numbers: wrong length, not digits, or a wrong check digit."""


def compact(number: str) -> str:
    """The digits only: spaces and dashes, as people type and print them, are dropped."""
    return str(number).replace(" ", "").replace("-", "").strip()


def calc_check_digit(body: str) -> str:
    """The Luhn digit that completes ``body`` (IIN + account sequence) into a card number."""
    return luhn.calc_check_digit(body)


def validate(number: str) -> str:
    """``number`` compacted, or ``InvalidCardNumber`` saying in one line what is wrong with it."""
    digits = compact(number)
    if len(digits) != LENGTH or not digits.isdigit():
        raise InvalidCardNumber(f"a card number has {LENGTH} digits, not {number!r}")
    try:
        luhn.validate(digits)
    except ValidationError:
        raise InvalidCardNumber(f"{number!r} is not a card number: its check digit is wrong") from None
    return digits


def is_valid(number: str) -> bool:
    """Whether ``number`` is a well-formed card number (length, digits, Luhn check digit)."""
    try:
        validate(number)
    except InvalidCardNumber:
        return False
    return True


def format(number: str) -> str:  # noqa: A001 - stdnum's name for it
    """Groups of four, as printed on the card face."""
    digits = compact(number)
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))

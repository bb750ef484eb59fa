"""Money as integer minor units, parsed from and printed as decimal strings.

Never float: "12.50" becomes 1250 exactly, "12.345" is an error, not a rounding.
"""

from __future__ import annotations

import re

from purse.errors import UserError

__all__ = [
    "parse_amount",
    "format_amount",
]

_AMOUNT = re.compile(r"^(\d{1,12})(?:\.(\d+))?$")


def parse_amount(text: str, exponent: int = 2, *, allow_zero: bool = False) -> int:
    """A decimal string in major units -> minor units, exactly, or a clear ``UserError``."""
    m = _AMOUNT.match(text.strip())
    if not m:
        raise UserError(f"not an amount: {text!r} (write it like 12.50)")
    whole, frac = m.group(1), m.group(2) or ""
    if len(frac) > exponent:
        raise UserError(f"{text!r} has more than {exponent} decimal places")
    value = int(whole) * 10**exponent + int(frac.ljust(exponent, "0") or "0")
    if value == 0 and not allow_zero:
        raise UserError(f"amount must be positive, got {text!r}")
    if value > 0xFFFFFFFF:
        raise UserError(f"amount {text!r} is too large")
    return value


def format_amount(minor: int, exponent: int = 2) -> str:
    """Minor units -> "1,234.50"-free plain decimal string ("1234.50"), sign kept."""
    sign = "-" if minor < 0 else ""
    q, r = divmod(abs(minor), 10**exponent)
    return f"{sign}{q}.{r:0{exponent}d}" if exponent else f"{sign}{q}"

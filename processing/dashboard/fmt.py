"""Numbers as an accountant reads them, computed from integers only.

Amounts arrive in minor units and are printed by integer division, so a figure on the
page is the stored figure to the last kopeck. Axis ticks are chosen in minor units too
(1-2-5 steps), which keeps tick labels exact; only their pixel positions are floats.
"""

from __future__ import annotations

# ISO 4217 numeric -> alphabetic, for the currencies a card issuer is likely to use.
# An unknown number is shown as the number itself rather than guessed.
_ISO_4217 = {
    "643": "RUB", "978": "EUR", "840": "USD", "826": "GBP", "756": "CHF", "985": "PLN",
    "203": "CZK", "348": "HUF", "946": "RON", "752": "SEK", "578": "NOK", "208": "DKK",
    "398": "KZT", "933": "BYN", "980": "UAH", "156": "CNY", "392": "JPY", "356": "INR",
    "949": "TRY", "124": "CAD", "036": "AUD", "986": "BRL",
}


def currency_code(currency: int | str) -> str:
    """``643`` or ``"643"`` -> ``"RUB"``; an alphabetic code or unknown number passes through."""
    text = str(currency).strip()
    if text.isdigit():
        return _ISO_4217.get(text.zfill(3), text.zfill(3))
    return text.upper()


def group(n: int) -> str:
    """An integer with thousands separators: 1234567 -> "1,234,567"."""
    return f"{n:,}"


def money(minor: int, exponent: int) -> str:
    """Minor units -> "1,234.50" (or "-7.00"); exact, never through float."""
    if not isinstance(minor, int):
        raise TypeError(f"amounts are integer minor units, got {type(minor).__name__}")
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole:,}.{frac:0{exponent}d}" if exponent else f"{sign}{whole:,}"


def nice_step(span: int, count: int = 5) -> int:
    """The 1-2-5 step that cuts ``span`` into at most ``count`` intervals."""
    raw = max(-(-max(int(span), 1) // count), 1)  # ceil
    magnitude = 10 ** (len(str(raw)) - 1)
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def nice_ticks(lo: int, hi: int, count: int = 5) -> list[int]:
    """Tick values covering ``lo..hi`` (and always 0) on a 1-2-5 step, in the unit of the data."""
    lo, hi = min(int(lo), 0), max(int(hi), 0)
    step = nice_step(hi - lo, count)
    first = (lo // step) * step
    last = -(-hi // step) * step
    if last == first:
        last = first + step
    return list(range(first, last + 1, step))


def _scaled(value: int, step: int, unit: int) -> str | None:
    """``value`` in millions or thousands of ``unit`` with one exact decimal, if ``step`` allows."""
    # Millions may show one decimal ("0.5M"); thousands only whole ("5k"), since "0.5k" reads badly.
    for scale, suffix, smallest_step in ((unit * 1_000_000, "M", unit * 100_000), (unit * 1_000, "k", unit * 1_000)):
        tenth_of_scale = scale // 10
        if step >= smallest_step and step % tenth_of_scale == 0:
            sign = "-" if value < 0 else ""
            whole, frac = divmod(abs(value), scale)
            tenth = frac // tenth_of_scale
            if whole == 0 and tenth == 0:
                return "0"
            return f"{sign}{whole:,}{'.' + str(tenth) if tenth else ''}{suffix}"
    return None


def axis_money(minor: int, exponent: int, step: int) -> str:
    """A tick label, as short as the step allows and still exact ("1.5M", "250k", "12.50")."""
    unit = 10**exponent
    scaled = _scaled(minor, step, unit)
    if scaled is not None:
        return scaled
    if step % unit == 0:
        return group(minor // unit)
    return money(minor, exponent)


def axis_count(n: int, step: int) -> str:
    """A tick label for counts such as points ("1.5M", "250k" or the plain number)."""
    return _scaled(n, step, 1) or group(n)

"""Money and numbers for people, in the issuer's currency and the reader's locale (Babel, pycountry).

Inside, money is integer minor units of the issuer's currency (``[issuer] currency``, ISO 4217 numeric);
what a person reads is major units with the currency: "1 234,50 ₽" in Russian, "1,234.50 RUB" in
English. A CSV for a Russian spreadsheet writes "1234,50" (decimal comma, no grouping) and ``;`` between
fields, which is what Excel and LibreOffice read in that locale.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from processing.labels import LANGUAGES
from purse.errors import UserError
from purse.settings import IssuerSettings

__all__ = ["Presentation"]

_LOCALES = {"en": "en_US", "ru": "ru_RU"}


@dataclass(frozen=True)
class Presentation:
    """How figures are shown: ``language`` ("en" or "ru"), the issuer's ``currency`` and its ``exponent``."""

    language: str = "en"
    currency: int = 643
    exponent: int = 2

    @classmethod
    def for_issuer(cls, issuer: IssuerSettings, language: str | None = None) -> Presentation:
        """The issuer's currency, in ``language`` or the issuer's ``locale``."""
        return cls(language or issuer.locale, issuer.currency, issuer.currency_exponent)

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise UserError(f"unknown locale {self.language!r} ({' or '.join(LANGUAGES)})")

    @property
    def currency_code(self) -> str:
        """ISO 4217 letters of the numeric code ("RUB" for 643)."""
        import pycountry

        found = pycountry.currencies.get(numeric=f"{self.currency:03d}")
        if found is None:
            raise UserError(f"[issuer] currency {self.currency} is not an ISO 4217 numeric code")
        return str(found.alpha_3)

    @property
    def locale(self) -> str:
        return _LOCALES[self.language]

    @property
    def csv_delimiter(self) -> str:
        return ";" if self.language == "ru" else ","

    def major(self, minor: int) -> Decimal:
        return Decimal(int(minor)).scaleb(-self.exponent)

    def money(self, minor: int) -> str:
        """An amount for a person: "1 234,50 ₽" (ru), "1,234.50 RUB" (en)."""
        from babel.numbers import format_currency

        digits = "." + "0" * self.exponent if self.exponent else ""
        pattern = None if self.language == "ru" else f"#,##0{digits} ¤¤"  # en: "1,234.50 RUB"
        return format_currency(self.major(minor), self.currency_code, format=pattern, locale=self.locale,
                               currency_digits=False)

    def plain(self, minor: int) -> str:
        """An amount for a spreadsheet cell read as text: major units, the locale's decimal sign, no grouping."""
        from babel.numbers import format_decimal

        pattern = "0." + "0" * self.exponent if self.exponent else "0"
        return format_decimal(self.major(minor), format=pattern, locale=self.locale)

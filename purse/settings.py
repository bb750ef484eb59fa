"""``smartpurse.toml``, read once into typed settings: every key known, every default in one place.

A home works with no configuration file at all (the defaults below are the embedded
ones). A file may override any of them; a key this module does not know, or a value of
the wrong type, is one ``UserError`` line naming it, so a typo never silently falls
back to a default (``[isuer] iin = …`` would otherwise issue cards under the wrong IIN).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from purse.errors import UserError


@dataclass(frozen=True)
class IssuerSettings:
    """Who issues the cards and what a new card gets."""

    iin: str = "627700"  # issuer identification number, the first digits of every card number
    issuer_id: int = 1
    system_identifier: str = "SMARTPURSE"  # AN10922 diversification input; at most 16 bytes are used
    name: str = ""  # shown on the dashboard; the system identifier when empty
    currency: int = 643  # ISO 4217 numeric (643 = RUB); amounts are in its minor unit
    currency_exponent: int = 2
    max_balance: int = 1_500_000  # minor units: 15,000.00
    card_deposit: int = 0  # minor units taken per card at issue and refunded at its return (750: 7.50); 0: none
    card_validity_years: int = 5
    pin_length: int = 4
    phone_region: str = "RU"  # ISO 3166 country a holder's phone number without + belongs to
    locale: str = "en"  # reports and text output for people: "en", or "ru" (Russian labels, ; and decimal comma)
    # The payer of merchant payouts (`smartpurse merchants payouts`): checked when a payout file is written.
    legal_name: str = ""
    tax_number: str = ""  # INN
    bank_name: str = ""
    bank_bic: str = ""  # a Russian BIC, or the SWIFT BIC of the IBAN's bank
    bank_account: str = ""  # the issuer's 20-digit Russian settlement account
    iban: str = ""  # or its IBAN (pain.001)

    @property
    def display_name(self) -> str:
        return self.name or self.system_identifier


@dataclass(frozen=True)
class MerchantSettings:
    """What a merchant registered with its first terminal starts with."""

    default_fee_bps: int = 100  # settlement fee in basis points (1.00 %)


@dataclass(frozen=True)
class Settings:
    issuer: IssuerSettings = field(default_factory=IssuerSettings)
    merchants: MerchantSettings = field(default_factory=MerchantSettings)


DEFAULTS = Settings()


def _section(cls: type[Any], raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise UserError(f"{where}: [{cls.__name__}] must be a table")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in names:
            raise UserError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(names))})")
        expected = hints[key]
        if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise UserError(f"{where}: {key} must be a whole number, not {value!r}")
        if expected is str and not isinstance(value, (str, int)):
            raise UserError(f"{where}: {key} must be text, not {value!r}")
        values[key] = str(value) if expected is str else value
    return cls(**values)


def parse_settings(document: dict[str, Any], source: str = "smartpurse.toml") -> Settings:
    """Typed settings from a parsed TOML document; unknown sections and keys are refused by name."""
    sections = {"issuer": IssuerSettings, "merchants": MerchantSettings}
    values: dict[str, Any] = {}
    for name, raw in document.items():
        if name not in sections:
            raise UserError(f"{source}: unknown section [{name}] (known: {', '.join(sections)})")
        values[name] = _section(sections[name], raw, f"{source} [{name}]")
    return Settings(**values)


def read_settings(path: Path) -> Settings:
    """The settings in ``path``, or the defaults when there is no such file."""
    if not path.is_file():
        return DEFAULTS
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    return parse_settings(document, str(path))

"""A merchant as a counterparty: who is paid, under which tax number, into which account, checked
before anything is stored.

* **INN** (the Russian tax number) with python-stdnum (``stdnum.ru.inn``): 10 digits for a company,
  12 for a person, each with its check digits.
* **A Russian bank account**: a 9-digit BIC and a 20-digit account, with the Bank of Russia's control
  key: the 3 digits that identify the account's bank (the BIC's last three, or ``0`` and its 5th and
  6th for a correspondent account or one held at the Bank of Russia itself), then the 20 digits,
  weighted 7, 1, 3, 7, 1, 3, ...: the sum ends in 0. A mistyped digit of either is caught before a payment goes astray.
* **Elsewhere**: an IBAN (``stdnum.iban``, mod 97) and a SWIFT BIC (``stdnum.bic``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from stdnum import bic as swift
from stdnum import iban as iban_number
from stdnum.exceptions import ValidationError
from stdnum.ru import inn as ru_inn

from purse.errors import UserError

__all__ = ["MerchantDetails", "check_inn", "check_ru_account", "check_bank", "BadDetails", "SCHEDULES"]

SCHEDULES = ("daily", "weekly", "monthly")
_WEIGHTS = (7, 1, 3)


class BadDetails(UserError):
    """A merchant's tax number or bank details that do not check out."""


def check_inn(text: str) -> str:
    """The INN, compact, or ``BadDetails``."""
    try:
        return str(ru_inn.validate(text))
    except ValidationError as e:
        raise BadDetails(f"INN {text!r} is not valid ({e})") from None


def check_ru_account(bic: str, account: str) -> tuple[str, str]:
    """A Russian BIC and account whose control key checks out, or ``BadDetails``."""
    bic, account = bic.strip(), account.replace(" ", "").strip()
    if len(bic) != 9 or not bic.isascii() or not bic.isdigit():
        raise BadDetails(f"BIC {bic!r} is not 9 digits")
    if len(account) != 20 or not account.isascii() or not account.isdigit():
        raise BadDetails(f"account {account!r} is not 20 digits")
    # The bank's 3 digits: a correspondent account (30101...) and an account held at the Bank of Russia
    # (a BIC ending 000-002) take 0 and the BIC's 5th and 6th digits; a client's account its last three.
    bank = "0" + bic[4:6] if account.startswith("30101") or bic[6:] in ("000", "001", "002") else bic[6:]
    digits = bank + account
    if sum(int(d) * _WEIGHTS[i % 3] for i, d in enumerate(digits)) % 10:
        raise BadDetails(f"account {account} does not belong to BIC {bic}: its control key is wrong "
                         "(a mistyped digit?)")
    return bic, account


def _check_iban(text: str) -> str:
    try:
        return str(iban_number.validate(text))
    except ValidationError as e:
        raise BadDetails(f"IBAN {text!r} is not valid ({e})") from None


def _check_swift(text: str) -> str:
    try:
        return str(swift.validate(text))
    except ValidationError as e:
        raise BadDetails(f"BIC {text!r} is not a SWIFT BIC ({e})") from None


def check_bank(bic: str | None, account: str | None, iban: str | None) -> tuple[str | None, str | None, str | None]:
    """(BIC, account, IBAN) checked and compact: a Russian BIC and account, or an IBAN and SWIFT BIC, or none."""
    if iban:
        if not bic:
            raise BadDetails("an IBAN needs its bank's SWIFT BIC (--bic)")
        if account:
            raise BadDetails("give either an IBAN or a Russian account, not both")
        return _check_swift(bic), None, _check_iban(iban)
    if bic or account:
        if not (bic and account):
            raise BadDetails("a Russian account needs both --bic and --account")
        return (*check_ru_account(bic, account), None)
    return None, None, None


@dataclass(frozen=True)
class MerchantDetails:
    """What the registry keeps of a merchant; ``checked`` validates and normalises it as a whole."""

    merchant_id: int
    name: str
    fee_bps: int
    legal_name: str | None = None
    tax_number: str | None = None
    bank_name: str | None = None
    bank_bic: str | None = None
    bank_account: str | None = None
    iban: str | None = None
    payout_schedule: str = "monthly"

    def checked(self) -> MerchantDetails:
        if not 0 < self.merchant_id < 2**32:
            raise BadDetails(f"merchant number {self.merchant_id} is not 1..{2**32 - 1}")
        if not self.name.strip():
            raise BadDetails("a merchant needs a name")
        if not 0 <= self.fee_bps <= 10_000:
            raise BadDetails(f"fee {self.fee_bps} bp is not 0..10000 basis points (0..100 %)")
        if self.payout_schedule not in SCHEDULES:
            raise BadDetails(f"payout schedule {self.payout_schedule!r} is not one of {', '.join(SCHEDULES)}")
        out = replace(self, name=self.name.strip(), legal_name=(self.legal_name or "").strip() or None)
        if self.tax_number:
            out = replace(out, tax_number=check_inn(self.tax_number))
        bic, account, iban = check_bank(self.bank_bic, self.bank_account, self.iban)
        return replace(out, bank_bic=bic, bank_account=account, iban=iban)

    @property
    def payable(self) -> bool:
        """Whether a payment to this merchant can be written: a legal name, an INN or an IBAN, and an account."""
        return bool(self.legal_name and (self.bank_account or self.iban) and (self.tax_number or self.iban))

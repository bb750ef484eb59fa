"""What a holder logs in with: a card number or a phone number, read the one way the registry stores them.

The lock-out counts wrong codes per ``subject``, SHA-256 of the normalized identifier, so one card
is one subject however it was typed ("6277 0000 0000 0011" or "6277000000000011"), and the tables
never hold the list of identifiers people tried.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from stdnum import luhn

from personalization.holders_csv import ascii_digits, normalize_phone

__all__ = ["Subject", "read_subject"]


@dataclass(frozen=True)
class Subject:
    kind: str  # "card" or "phone"
    value: str  # the card number, or the phone in E.164

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.kind}:{self.value}".encode()).hexdigest()

    @property
    def masked(self) -> str:
        """For the security log: enough to tell two apart, not enough to use."""
        return f"{self.kind} …{self.value[-4:]}"


def read_subject(text: str, phone_region: str) -> Subject | None:
    """A card number (12-19 digits passing the Luhn check) or a valid phone; None for anything else."""
    compact = "".join(text.split()).replace("-", "")
    if ascii_digits(compact) and 12 <= len(compact) <= 19 and luhn.is_valid(compact):
        return Subject("card", compact)
    phone = normalize_phone(text.strip(), phone_region) if len(text) <= 40 else None
    return Subject("phone", phone) if phone else None


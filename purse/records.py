"""The transaction record and the points slot: the bytes every layer agrees on.

A record is what the card logs, certifies under its TXN key, hands to the terminal,
and what batches carry to processing (docs/protocol.md, "Transaction record"). The
certificate covers the first 64 bytes, so the record keeps its raw bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from purse.protocol import POINTS_SLOT_SIZE, RecordType

RECORD = struct.Struct(">BB7s8sIIIHHIIiiBBIII B 8s".replace(" ", ""))
RECORD_SIZE = RECORD.size  # 72
CERTIFIED_SIZE = RECORD_SIZE - 8  # 64


def number_to_bcd(number: str) -> bytes:
    """A 16-digit card number as 8 packed BCD bytes."""
    if len(number) != 16 or not number.isdigit():
        raise ValueError(f"a card number has 16 digits, not {number!r}")
    return bytes.fromhex(number)


def bcd_to_number(raw: bytes) -> str:
    """8 packed BCD bytes as 16 digits; a nibble above 9 is not a card number."""
    number = raw.hex()
    if not number.isdigit():
        raise ValueError(f"not a BCD card number: {number}")
    return number


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    """One card transaction, as certified by the card (layout: docs/protocol.md)."""

    record_type: RecordType
    key_version: int
    uid: bytes
    card_number: str
    counter: int
    amount: int
    balance_after: int
    currency: int
    program_id: int
    points_before: int
    points_after: int
    points_earned: int
    points_redeemed: int
    prizes: int
    tier: int
    terminal_id: int
    terminal_seq: int
    time: int
    flags: int = 0
    certificate: bytes = bytes(8)

    def to_bytes(self) -> bytes:
        return RECORD.pack(
            self.record_type, self.key_version, self.uid, number_to_bcd(self.card_number),
            self.counter, self.amount, self.balance_after, self.currency, self.program_id,
            self.points_before, self.points_after, self.points_earned, self.points_redeemed,
            self.prizes, self.tier, self.terminal_id, self.terminal_seq, self.time,
            self.flags, self.certificate,
        )

    def certified_bytes(self) -> bytes:
        return self.to_bytes()[:CERTIFIED_SIZE]

    @classmethod
    def from_bytes(cls, raw: bytes) -> TransactionRecord:
        if len(raw) != RECORD_SIZE:
            raise ValueError(f"a transaction record is {RECORD_SIZE} bytes, not {len(raw)}")
        f = RECORD.unpack(raw)
        try:
            kind = RecordType(f[0])
        except ValueError:
            raise ValueError(f"unknown record type {f[0]}") from None
        return cls(kind, f[1], f[2], bcd_to_number(f[3]), *f[4:])

    @property
    def balance_before(self) -> int:
        """Derived, not stored: the chain check compares it with the previous record."""
        if self.record_type == RecordType.PURCHASE:
            return self.balance_after + self.amount
        if self.record_type in (RecordType.LOAD, RecordType.CANCEL):
            return self.balance_after - self.amount
        return self.balance_after


SLOT = struct.Struct(">HIBBIIIIHHI")
assert SLOT.size == POINTS_SLOT_SIZE


@dataclass(frozen=True, slots=True)
class PointsSlot:
    """One loyalty program's state on the card (32 bytes).

    The card interprets only ``program_id``, ``points`` and ``tier``; the rest belongs to
    the program's rules, which run in the terminal (``purse.loyalty``).
    """

    program_id: int = 0
    points: int = 0
    tier: int = 0
    flags: int = 0
    visits: int = 0
    cumulative_spend: int = 0
    last_visit: int = 0
    period_start: int = 0
    period_visits: int = 0
    prizes_won: int = 0
    reserved: int = 0

    def to_bytes(self) -> bytes:
        return SLOT.pack(
            self.program_id, self.points, self.tier, self.flags, self.visits,
            self.cumulative_spend, self.last_visit, self.period_start,
            self.period_visits, self.prizes_won, self.reserved,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> PointsSlot:
        return cls(*SLOT.unpack(raw))

    @property
    def is_empty(self) -> bool:
        return self.program_id == 0

"""The transaction record and the points slot: the bytes every layer agrees on.

A record is what the card logs, certifies under its TXN key, hands to the terminal,
and what batches carry to processing (docs/protocol.md, "Transaction record"). The
certificate covers the first 64 bytes, so the record keeps its raw bytes.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from enum import IntFlag
from typing import NamedTuple

from purse.protocol import POINTS_SLOT_SIZE, RecordType


@dataclass(frozen=True)
class Field:
    """One field of a fixed binary layout: its name (as docs/protocol.md spells it) and struct code."""

    name: str
    code: str  # big-endian struct code: B H I (unsigned), i (signed), Ns (N raw bytes)

    @property
    def size(self) -> int:
        return struct.calcsize(">" + self.code)


class Layout:
    """A fixed big-endian layout defined once by its field table; every view of it derives from here.

    ``struct`` packs and unpacks it, ``offset``/``at`` name where each field is, ``sparse``
    builds a struct that reads only some fields (skipping the rest with pad bytes), and
    ``processing.columns`` builds its numpy dtype from ``fields`` and ``offset``. No module
    writes an offset of this layout by hand (docs/architecture.md, "One record layout").
    """

    def __init__(self, *fields: Field) -> None:
        self.fields = fields
        self.struct = struct.Struct(">" + "".join(f.code for f in fields))
        self.size = self.struct.size
        self.offset: dict[str, int] = {}
        self.field: dict[str, Field] = {}
        at = 0
        for f in fields:
            self.offset[f.name], self.field[f.name] = at, f
            at += f.size
        assert at == self.size

    def at(self, name: str) -> slice:
        """Where field ``name`` is, as a slice of the layout's bytes."""
        start = self.offset[name]
        return slice(start, start + self.field[name].size)

    def extended(self, *fields: Field) -> Layout:
        """This layout followed by ``fields`` (a batch entry is a record and its chain MAC)."""
        return Layout(*self.fields, *fields)

    def sparse(self, names: tuple[str, ...], size: int | None = None) -> struct.Struct:
        """A struct reading only ``names`` (in layout order) from ``size`` bytes (default the layout's)."""
        end = self.size if size is None else size
        codes, at = [], 0
        for f in self.fields:
            if f.name not in names:
                continue
            if self.offset[f.name] > at:
                codes.append(f"{self.offset[f.name] - at}x")
            codes.append(f.code)
            at = self.offset[f.name] + f.size
        if end > at:
            codes.append(f"{end - at}x")
        if [f.name for f in self.fields if f.name in names] != list(names):
            raise ValueError(f"fields {names} are not all in this layout, in its order")
        return struct.Struct(">" + "".join(codes))


class RecordFlag(IntFlag):
    """The record's ``flags`` byte: which card profile made it, so processing knows how to verify it."""

    DESFIRE = 0x01  # a MIFARE DESFire card's record: ``certificate`` is its Transaction MAC Value (docs/desfire.md)


@dataclass(frozen=True, slots=True)
class CardWrite:
    """What a DESFire transaction wrote to the card's points file besides its record: the back office
    needs these bytes, with the record, to rebuild the card's Transaction MAC (docs/desfire.md)."""

    offset: int
    data: bytes

    SIZE = 64  # at most one program's entry: its slot now and the slot before

    def to_bytes(self) -> bytes:
        """offset (2, big-endian), length (1), data, zero-padded to 3 + SIZE bytes."""
        if not 0 < len(self.data) <= self.SIZE or not 0 <= self.offset < 1 << 16:
            raise ValueError("a card write is 1 to 64 bytes at an offset below 65536")
        return self.offset.to_bytes(2, "big") + bytes((len(self.data),)) + self.data.ljust(self.SIZE, b"\x00")

    @classmethod
    def from_bytes(cls, raw: bytes) -> CardWrite:
        length = raw[2] if len(raw) == 3 + cls.SIZE else 0
        if not 0 < length <= cls.SIZE:
            raise ValueError("not a card write")
        return cls(int.from_bytes(raw[:2], "big"), raw[3 : 3 + length])


# The transaction record (docs/protocol.md §7): what the card logs and certifies, what batches carry.
RECORD_LAYOUT = Layout(
    Field("record_type", "B"), Field("key_version", "B"), Field("uid", "7s"), Field("card_number", "8s"),
    Field("counter", "I"), Field("amount", "I"), Field("balance_after", "I"), Field("currency", "H"),
    Field("program_id", "H"), Field("points_before", "I"), Field("points_after", "I"), Field("points_earned", "i"),
    Field("points_redeemed", "i"), Field("prizes", "B"), Field("tier", "B"), Field("terminal_id", "I"),
    Field("terminal_seq", "I"), Field("time", "I"), Field("flags", "B"), Field("certificate", "8s"),
)
RECORD = RECORD_LAYOUT.struct
RECORD_SIZE = RECORD_LAYOUT.size  # 72
CERTIFIED_SIZE = RECORD_LAYOUT.offset["certificate"]  # 64: the certificate covers everything before it


class RecordDetails(NamedTuple):
    """The fields of a stored record that processing reads back from its raw bytes (balance_after..time)."""

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


_DETAILS = RECORD_LAYOUT.sparse(RecordDetails._fields)  # raises unless these are layout fields, in layout order


def record_details(raw: bytes) -> RecordDetails:
    """The details of a 72-byte record, by name."""
    return RecordDetails._make(_DETAILS.unpack(raw))


def money_effect(kind: int, amount: int) -> int:
    """What a record does to the money on the card: + for a load or a cancel, − for a purchase or a cash-out,
    0 for a block.

    The one definition: ``MONEY_SIGN`` is what processing's numpy columns and SQL build theirs from.
    """
    return MONEY_SIGN[kind] * amount


MONEY_SIGN: dict[int, int] = {RecordType.LOAD: 1, RecordType.PURCHASE: -1, RecordType.CANCEL: 1, RecordType.BLOCK: 0,
                              RecordType.CASH_OUT: -1}


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
        return self.balance_after - money_effect(self.record_type, self.amount)


# The typed record is the field table read in Python: same names, same order (checked here, at import).
assert tuple(f.name for f in dataclasses.fields(TransactionRecord)) == tuple(f.name for f in RECORD_LAYOUT.fields)


# The points slot (docs/protocol.md §8): one loyalty program's state on the card.
SLOT_LAYOUT = Layout(
    Field("program_id", "H"), Field("points", "I"), Field("tier", "B"), Field("flags", "B"), Field("visits", "I"),
    Field("cumulative_spend", "I"), Field("last_visit", "I"), Field("period_start", "I"), Field("period_visits", "H"),
    Field("prizes_won", "H"), Field("reserved", "I"),
)
SLOT = SLOT_LAYOUT.struct
assert SLOT.size == POINTS_SLOT_SIZE
SLOT_POINTS = SLOT_LAYOUT.at("points")


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


assert tuple(f.name for f in dataclasses.fields(PointsSlot)) == tuple(f.name for f in SLOT_LAYOUT.fields)

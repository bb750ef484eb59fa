"""A chunk of batch entries read as columns, for the import's hot path.

``purse.batch`` (construct) defines and documents the entry layout byte by byte; the
import of a large batch reads the same bytes with one numpy dtype instead, so that a
chunk of 32,768 records becomes a handful of arrays rather than 32,768 parsed tuples.
From the columns it builds, without a Python loop per record: PostgreSQL's binary
``COPY`` payload for the whole chunk, the batch totals and the per-day sales. Python
objects per record are made only where Python must look at each record anyway (the
reconciler's walk) or where the driver wants them (SQLite's ``executemany``).

Only entries a verifying worker checks in parallel come here, so nothing is validated:
``tests/test_processing_columns.py`` proves (hypothesis) that every column and storage row
equals construct's parse, and that PostgreSQL reads the ``COPY`` payload back as those rows.
"""

from __future__ import annotations

import struct
from functools import cached_property
from typing import Any

import numpy as np

from processing.rows import ROW_FIELDS, Row, StoredRow
from purse.batch import ENTRY_LAYOUT, ENTRY_SIZE
from purse.protocol import RecordType
from purse.records import MONEY_SIGN, RECORD_SIZE

# as plain ints: compared per record
LOAD, PURCHASE, CANCEL, BLOCK = (int(t) for t in (RecordType.LOAD, RecordType.PURCHASE, RecordType.CANCEL,
                                                  RecordType.BLOCK))

_NUMPY = {"B": "u1", "H": ">u2", "I": ">u4", "i": ">i4"}  # struct code -> numpy type, big-endian as on the wire


def entry_dtype(names: tuple[str, ...]) -> np.dtype[np.void]:
    """A numpy view of whole batch entries exposing the integer fields ``names`` (purse.batch.ENTRY_LAYOUT)."""
    fields = [ENTRY_LAYOUT.field[n] for n in names]
    return np.dtype({"names": list(names), "formats": [_NUMPY[f.code] for f in fields],
                     "offsets": [ENTRY_LAYOUT.offset[n] for n in names], "itemsize": ENTRY_SIZE})


# The fields the import reads as columns.
ENTRY_DTYPE = entry_dtype(("record_type", "counter", "amount", "balance_after", "program_id", "terminal_id",
                           "terminal_seq", "time"))
CARD = ENTRY_LAYOUT.at("card_number")  # 8 bytes of packed BCD
# What a storage row needs from an entry (type, card number, counter, amount, terminal sequence, time),
# skipping the other fields: for SQLite's rows, struct makes the Python values faster than numpy.
ROW_PARSE = ENTRY_LAYOUT.sparse(("record_type", "card_number", "counter", "amount", "terminal_seq", "time"))
assert ROW_PARSE.size == ENTRY_SIZE
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# MONEY_SIGN (purse.records, the one definition of what a record does to the money) as a lookup table.
_SIGN = np.zeros(256, dtype=np.int64)
for _kind, _sign in MONEY_SIGN.items():
    _SIGN[_kind] = _sign

# One row of PostgreSQL's binary COPY format in processing.rows.ROW_FIELDS order: a field count,
# then each field as a length and its big-endian bytes (card_number as text, raw as bytea).
_COPY_FORMAT = {"card_number": (np.uint8, 16), "counter": ">i8", "record_type": ">i2", "amount": ">i8",
                "terminal_id": ">i8", "terminal_seq": ">i8", "day": ">i4", "merchant_id": ">i8", "batch_id": ">i4",
                "entry_id": ">i4", "raw": (np.uint8, RECORD_SIZE)}
_COPY_FIELDS = [(name, _COPY_FORMAT[name]) for name in ROW_FIELDS]
COPY_ROW = np.dtype([("fields", ">i2")] + [x for name, fmt in _COPY_FIELDS for x in ((f"{name}_len", ">i4"),
                                                                                     (name, fmt))])
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)


class EntryColumns:
    """The entries of one chunk (``data``: whole entries) of a merchant's batch, as columns."""

    def __init__(self, data: bytes, terminal_id: int, merchant_id: int, batch_id: int, entry_id: int) -> None:
        if len(data) % ENTRY_SIZE:
            raise ValueError(f"a chunk holds whole {ENTRY_SIZE}-byte entries, not {len(data)} bytes")
        self.data = data
        self.terminal_id, self.merchant_id, self.batch_id, self.entry_id = terminal_id, merchant_id, batch_id, entry_id
        self.a = np.frombuffer(data, ENTRY_DTYPE)
        self.n = len(self.a)

    def __len__(self) -> int:
        return self.n

    # -- arrays ------------------------------------------------------------------------------------
    @cached_property
    def _bytes(self) -> np.ndarray:
        return np.frombuffer(self.data, dtype=np.uint8).reshape(self.n, ENTRY_SIZE)

    @cached_property
    def card_ascii(self) -> np.ndarray:
        """(n, 16) ASCII digits of each card number, from its packed BCD."""
        bcd = self._bytes[:, CARD]
        out = np.empty((self.n, 2 * bcd.shape[1]), dtype=np.uint8)
        out[:, 0::2] = _HEX[bcd >> 4]
        out[:, 1::2] = _HEX[bcd & 15]
        return out

    @cached_property
    def card_keys(self) -> np.ndarray:
        """Each card number's packed BCD read as one big-endian integer: its hex digits are the card number
        (``f"{key:016x}"``), and integers sort and compare far faster than strings."""
        return np.ascontiguousarray(self._bytes[:, CARD]).view(">u8").ravel()

    @cached_property
    def days(self) -> np.ndarray:
        return (self.a["time"] // 86400).astype(np.int64)

    @cached_property
    def signed(self) -> np.ndarray:
        """What each record does to the money on the card (purse.records.money_effect, vectorized)."""
        return self.a["amount"].astype(np.int64) * _SIGN[self.a["record_type"]]

    # -- Python values, made once per record ----------------------------------------------------
    @cached_property
    def numbers(self) -> list[str]:
        return self.card_ascii.view("S16").ravel().astype("U16").tolist()  # type: ignore[no-any-return]

    def walk_columns(self) -> tuple[list[Any], ...]:
        """(numbers, counters, signed amounts, balances after, programs, times): what the walk reads."""
        a = self.a
        return (self.numbers, a["counter"].tolist(), self.signed.tolist(), a["balance_after"].tolist(),
                a["program_id"].tolist(), a["time"].tolist())

    def row(self, i: int) -> Row:
        """Entry ``i`` as a storage row (a ``processing.rows.StoredRow`` tuple)."""
        a = self.a[i]
        pos = i * ENTRY_SIZE
        return tuple(StoredRow(self.numbers[i], int(a["counter"]), int(a["record_type"]), int(a["amount"]),
                               self.terminal_id, int(a["terminal_seq"]), int(a["time"]) // 86400, self.merchant_id,
                               self.batch_id, self.entry_id, self.data[pos : pos + RECORD_SIZE]))

    @cached_property
    def rows(self) -> list[Row]:
        """Every entry as a storage row: what SQLite's ``executemany`` binds."""
        t, m, b, e, data = self.terminal_id, self.merchant_id, self.batch_id, self.entry_id, self.data
        rows: list[Row] = []
        append = rows.append
        pos = 0
        for kind, bcd, counter, amount, seq, when in ROW_PARSE.iter_unpack(data):
            append((bcd.hex(), counter, kind, amount, t, seq, when // 86400, m, b, e, data[pos : pos + RECORD_SIZE]))
            pos += ENTRY_SIZE
        return rows

    # -- whole-chunk products -------------------------------------------------------------------
    def copy_rows(self) -> memoryview:
        """The chunk's rows in binary ``COPY … FROM STDIN (FORMAT BINARY)`` format: send ``COPY_SIGNATURE``
        before the first chunk and ``COPY_TRAILER`` after the last.

        The view is into a buffer reused by the next chunk (a fresh 6 MB array per chunk cost more in
        page faults than filling it): send it before building the next one."""
        a, out = self.a, _copy_buffer(self.n)
        out["card_number"] = self.card_ascii
        out["counter"] = a["counter"]
        out["record_type"] = a["record_type"]
        out["amount"] = a["amount"]
        out["terminal_id"] = self.terminal_id
        out["terminal_seq"] = a["terminal_seq"]
        out["day"] = self.days
        out["merchant_id"] = self.merchant_id
        out["batch_id"] = self.batch_id
        out["entry_id"] = self.entry_id
        out["raw"] = self._bytes[:, :RECORD_SIZE]
        return out.view(np.uint8).data

    def totals(self) -> tuple[int, int, int]:
        """(purchases, cancellations, loads): the sums of the chunk's amounts per kind."""
        amount, kind = self.a["amount"].astype(np.int64), self.a["record_type"]
        return tuple(int(amount[kind == k].sum()) for k in (PURCHASE, CANCEL, LOAD))  # type: ignore[return-value]

    def load_rows(self) -> list[Row]:
        """The rows of the chunk's load records (rare in a merchant's batch: each is matched to a desk)."""
        return [self.row(int(i)) for i in np.flatnonzero(self.a["record_type"] == LOAD)]

    def sales_by_day(self) -> dict[int, list[int]]:
        """day -> [purchase count, purchase total, cancel count, cancel total] (processing.sales)."""
        kind, days, amount = self.a["record_type"], self.days, self.a["amount"].astype(np.int64)
        out: dict[int, list[int]] = {}
        for k, offset in ((PURCHASE, 0), (CANCEL, 2)):
            mask = kind == k
            if not mask.any():
                continue
            d, inverse = np.unique(days[mask], return_inverse=True)
            counts = np.bincount(inverse)
            totals = _sum_by(inverse, amount[mask], len(d))
            for day, c, t in zip(d.tolist(), counts.tolist(), totals.tolist(), strict=True):
                entry = out.setdefault(day, [0, 0, 0, 0])
                entry[offset] += c
                entry[offset + 1] += t
        return out


def distinct_card_numbers(data: bytes) -> list[str]:
    """The card numbers of a chunk, each once: the BCD bytes read as one big-endian integer are the digits."""
    bcd = np.frombuffer(data, dtype=np.uint8).reshape(-1, ENTRY_SIZE)[:, CARD]
    return [f"{key:016x}" for key in np.unique(np.ascontiguousarray(bcd).view(">u8").ravel()).tolist()]


_COPY_BUFFER: list[np.ndarray] = []


def _copy_buffer(n: int) -> np.ndarray:
    """``n`` COPY rows with the field count and every length already in place (they never change)."""
    if not _COPY_BUFFER or len(_COPY_BUFFER[0]) < n:
        out = np.zeros(n, dtype=COPY_ROW)
        out["fields"] = len(_COPY_FIELDS)
        for name, _ in _COPY_FIELDS:
            out[f"{name}_len"] = COPY_ROW[name].itemsize
        _COPY_BUFFER[:] = [out]
    return _COPY_BUFFER[0][:n]


def _sum_by(groups: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """Integer sums of ``values`` per group (``np.bincount`` would sum in float64)."""
    out = np.zeros(size, dtype=np.int64)
    np.add.at(out, groups, values)
    return out

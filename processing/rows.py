"""The storage row: one record as the ``records`` table holds it, in one definition.

``StoredRow`` names the fields and their order (the ``records`` columns that storage binds,
``processing.schema.processing.records``); everything else derives from it: ``ROW_FIELDS``
for the SQL column lists and the index of each field. The hot paths (verifying, storing and
walking a million records) keep rows as plain tuples in this order, because a NamedTuple per
record costs 0.5 us, ten times a tuple; they read them with the indexes below, never with a
literal position. A rare path (an anomaly's evidence) may wrap a tuple with ``StoredRow._make``.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class StoredRow(NamedTuple):
    card_number: str
    counter: int
    record_type: int
    amount: int
    terminal_id: int
    terminal_seq: int
    day: int  # the record's time // 86400 (UTC days): what settlement and the sales aggregates group by
    merchant_id: int | None  # None for a desk's load
    batch_id: int | None
    entry_id: int  # the journal entry that posted it
    raw: bytes  # the 72 certified bytes, kept whole so the certificate can be checked again


Row = tuple[Any, ...]  # a StoredRow's values as a plain tuple (see the module docstring)
ROW_FIELDS: tuple[str, ...] = StoredRow._fields
_AT = {name: i for i, name in enumerate(ROW_FIELDS)}
CARD_NUMBER = _AT["card_number"]
COUNTER = _AT["counter"]
RECORD_TYPE = _AT["record_type"]
AMOUNT = _AT["amount"]
TERMINAL_ID = _AT["terminal_id"]
TERMINAL_SEQ = _AT["terminal_seq"]
DAY = _AT["day"]
BATCH_ID = _AT["batch_id"]
ENTRY_ID = _AT["entry_id"]
RAW = _AT["raw"]

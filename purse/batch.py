"""The terminal batch file: header, chained records, trailer (docs/protocol.md, section 9).

Defined with construct, which is also the reference parser; processing may parse the
hot path faster, and a test proves both agree on every field. A batch carries its own
integrity: each record's chain MAC, the previous batch's final MAC in the header, and
a batch MAC over header and trailer under the terminal log key.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from construct import Bytes, Const, Int8ub, Int32ub, Int64ub, Struct

from purse import crypto
from purse.crypto import MAC_SIZE
from purse.errors import UserError
from purse.files import write_atomic
from purse.protocol import RecordType
from purse.records import RECORD_LAYOUT, RECORD_SIZE, CardWrite, Field
from purse.terminal_log import FIRST_LOG_ID, LOG_ID_SIZE, ClosedBatch, TerminalLog, TerminalLogError

__all__ = [
    "export_batch",
    "BatchSummary",
    "Totals",
    "parse_batch",
    "ParsedBatch",
    "BatchFormatError",
    "write_batch",
    "write_batch_file",
    "batch_mac",
    "BatchHeader",
    "BatchHeaderV1",
    "BatchHeaderV2",
    "BatchWritten",
    "WRITTEN_SIZE",
    "BatchEntry",
    "BatchTrailer",
    "FORMAT_VERSION",
    "BATCH_MAGIC",
    "HEADER_SIZE",
    "HEADER_SIZES",
    "ENTRY_SIZE",
    "TRAILER_SIZE",
    "ENTRY_LAYOUT",
]

FORMAT_VERSION = 3  # 2 added the log identity, 3 the card writes of DESFire records; 1 and 2 are still read
BATCH_MAGIC = b"SPBT"  # a batch file's first four bytes

_HEADER_FIELDS = (
    "magic" / Const(BATCH_MAGIC),
    "format_version" / Int8ub,
    "log_key_version" / Int8ub,
    "reserved" / Const(b"\x00\x00"),
    "terminal_id" / Int32ub,
    "merchant_id" / Int32ub,
    "batch_seq" / Int32ub,
    "first_index" / Int32ub,
    "record_count" / Int32ub,
    "created" / Int32ub,
    "prev_chain_mac" / Bytes(MAC_SIZE),
)
# The log identity: random bytes a terminal log draws when it is created. Batch and terminal
# sequence numbers count within one log, so a log that starts again (a new file, a new device)
# numbers its batches and records from 1 under a new identity, and processing does not take
# its genuine records for another log's (docs/batch-format.md).
BatchHeaderV2 = Struct(*_HEADER_FIELDS, "log_id" / Bytes(LOG_ID_SIZE))
BatchHeaderV1 = Struct(*_HEADER_FIELDS)
# Format 3 counts the card writes that follow the entries: what a DESFire transaction wrote to the
# card's points file besides its record (purse.records.CardWrite), without which processing cannot
# rebuild that card's Transaction MAC (docs/desfire.md). A batch of reference cards has none.
BatchHeader = Struct(*_HEADER_FIELDS, "log_id" / Bytes(LOG_ID_SIZE), "written_count" / Int32ub)
BatchWritten = Struct(
    "index" / Int32ub,  # the 0-based entry of the batch whose transaction wrote it
    "write" / Bytes(3 + CardWrite.SIZE),  # CardWrite.to_bytes(): offset, length, data (zero-padded)
    "reserved" / Const(b"\x00"),
)
BatchEntry = Struct(
    "record" / Bytes(RECORD_SIZE),
    "chain_mac" / Bytes(MAC_SIZE),
)
BatchTrailer = Struct(
    "magic" / Const(b"SPTR"),
    "record_count" / Int32ub,
    "purchase_count" / Int32ub,
    "purchase_total" / Int64ub,
    "cancel_count" / Int32ub,
    "cancel_total" / Int64ub,
    "load_count" / Int32ub,
    "load_total" / Int64ub,
    "block_count" / Int32ub,
    "final_chain_mac" / Bytes(MAC_SIZE),
    "batch_mac" / Bytes(MAC_SIZE),
)
# The same entry as a field table (purse.records.Layout): what the fast parsers of processing derive from.
ENTRY_LAYOUT = RECORD_LAYOUT.extended(Field("chain_mac", f"{MAC_SIZE}s"))
HEADER_SIZE = BatchHeader.sizeof()  # 52
HEADER_SIZES = {1: BatchHeaderV1.sizeof(), 2: BatchHeaderV2.sizeof(), FORMAT_VERSION: HEADER_SIZE}  # by version
HEADERS_BY_VERSION = {1: BatchHeaderV1, 2: BatchHeaderV2, FORMAT_VERSION: BatchHeader}
WRITTEN_SIZE = BatchWritten.sizeof()  # 72
ENTRY_SIZE = BatchEntry.sizeof()  # 80
assert ENTRY_SIZE == ENTRY_LAYOUT.size
_KIND, _AMOUNT = RECORD_LAYOUT.offset["record_type"], RECORD_LAYOUT.at("amount")
TRAILER_SIZE = BatchTrailer.sizeof()  # 64


@dataclass
class Totals:
    """Per-type counts and sums; the trailer carries them so processing can cross-check."""

    purchase_count: int = 0
    purchase_total: int = 0
    cancel_count: int = 0
    cancel_total: int = 0
    load_count: int = 0
    load_total: int = 0
    block_count: int = 0

    def add(self, record: bytes) -> None:
        kind = record[_KIND]
        amount = int.from_bytes(record[_AMOUNT], "big")
        if kind == RecordType.PURCHASE:
            self.purchase_count += 1
            self.purchase_total += amount
        elif kind == RecordType.CANCEL:
            self.cancel_count += 1
            self.cancel_total += amount
        elif kind == RecordType.LOAD:
            self.load_count += 1
            self.load_total += amount
        elif kind == RecordType.BLOCK:
            self.block_count += 1


def batch_mac(log_key: bytes, header: bytes, trailer_without_mac: bytes, written: bytes = b"") -> bytes:
    """MAC binding header, card writes and trailer, so neither the merchant, a total nor a write can be edited."""
    return crypto.mac8(log_key, header + written + trailer_without_mac)


def write_batch(out: BinaryIO, batch: ClosedBatch, *, terminal_id: int, merchant_id: int,
                log_key: bytes, log_key_version: int, log_id: bytes) -> Totals:
    """Stream a closed batch to ``out``; returns the trailer totals."""
    header = BatchHeader.build(dict(
        format_version=FORMAT_VERSION, log_key_version=log_key_version, terminal_id=terminal_id,
        merchant_id=merchant_id, batch_seq=batch.batch_seq, first_index=batch.first_index,
        record_count=len(batch.entries), created=batch.created, prev_chain_mac=batch.prev_mac, log_id=log_id,
        written_count=len(batch.written),
    ))
    out.write(header)
    totals = Totals()
    for record, chain_mac in batch.entries:
        totals.add(record)
        out.write(record + chain_mac)
    written = b"".join(BatchWritten.build(dict(index=i, write=batch.written[i])) for i in sorted(batch.written))
    out.write(written)
    fields = dict(record_count=len(batch.entries), final_chain_mac=batch.final_mac, batch_mac=bytes(MAC_SIZE),
                  **totals.__dict__)
    trailer = BatchTrailer.build(fields)[:-MAC_SIZE]
    out.write(trailer + batch_mac(log_key, header, trailer, written))
    return totals


def write_batch_file(path: Path, batch: ClosedBatch, **kwargs: object) -> Totals:
    """Write atomically and durably: a half-written batch file must never look like a batch."""
    out = io.BytesIO()
    totals = write_batch(out, batch, **kwargs)  # type: ignore[arg-type]
    write_atomic(path, out.getvalue(), overwrite=False)
    return totals


@dataclass(frozen=True)
class BatchSummary:
    path: Path
    batch_seq: int
    records: int
    totals: Totals


def export_batch(log: TerminalLog, path: Path, *, batch_seq: int | None = None) -> BatchSummary:
    """Close every record of ``log`` not yet batched into the batch file ``path``; no card is involved.

    A function of the log and the batch format only, so a terminal closes its day without a
    card in the field. The file is written whole and durably (``write_atomic``) inside the log's
    transaction that closes the batch: when the write fails (a missing folder, a full disk), the
    batch stays open and its records go into the next export. The batch is signed with the log
    key version its records were chained with (``ClosedBatch.key_version``), which after a key
    rotation is the older one until this batch is out. ``batch_seq`` exports an already closed
    batch again, byte for byte. Raises ``UserError`` when ``path`` exists (a batch is never
    overwritten) or cannot be written, ``TerminalLogError`` for a batch the log never closed or a
    log without keys.
    """
    path = Path(path)
    if path.exists():
        raise UserError(f"{path} exists: choose another file, a batch is never overwritten")
    keys = log.keys
    if keys is None:
        raise TerminalLogError(f"{log.path} has no log key: it cannot sign a batch")
    totals: list[Totals] = []

    def write(batch: ClosedBatch) -> None:
        totals.append(write_batch_file(path, batch, terminal_id=log.terminal_id, merchant_id=log.merchant_id,
                                       log_key=keys.key(batch.key_version), log_key_version=batch.key_version,
                                       log_id=log.log_id))

    if batch_seq is not None:
        batch = log.closed_batch(batch_seq)
        write(batch)
    else:
        batch = log.close_batch(write)
    return BatchSummary(path, batch.batch_seq, len(batch.entries), totals[0])


class BatchFormatError(ValueError):
    """The file is not a well-formed batch (wrong magic, version, size)."""


@dataclass(frozen=True)
class ParsedBatch:
    header: dict[str, object]
    header_bytes: bytes
    trailer: dict[str, object]
    trailer_bytes: bytes
    entries: list[tuple[bytes, bytes]]
    written: dict[int, bytes]  # 0-based entry index -> CardWrite bytes (format 3)
    written_bytes: bytes  # the section as it is in the file (the batch MAC covers it)


def _plain(container: object) -> dict[str, object]:
    return {k: v for k, v in dict(container).items() if not k.startswith("_")}  # type: ignore[call-overload]


def parse_batch(data: bytes) -> ParsedBatch:
    """Reference parser (construct): structure only, no MAC checks (processing does those).

    Versions 1 and 2 are read too: a version 1 header gets ``log_id`` = ``FIRST_LOG_ID``, both
    ``written_count`` 0."""
    version = data[4] if len(data) > 4 else FORMAT_VERSION
    header_size = HEADER_SIZES.get(version, HEADER_SIZE)
    if len(data) < header_size + TRAILER_SIZE:
        raise BatchFormatError(f"file too short for a batch ({len(data)} bytes)")
    try:
        header = HEADERS_BY_VERSION.get(version, BatchHeader).parse(data[:header_size])
    except Exception as e:
        raise BatchFormatError(f"bad batch header: {e}") from None
    if header.format_version not in HEADER_SIZES:
        raise BatchFormatError(f"batch format version {header.format_version} is not supported")
    if version == 1:
        header.log_id = FIRST_LOG_ID
    if version < 3:
        header.written_count = 0
    written_size = header.written_count * WRITTEN_SIZE
    body = len(data) - header_size - TRAILER_SIZE - written_size
    if body < 0 or body % ENTRY_SIZE or body // ENTRY_SIZE != header.record_count:
        raise BatchFormatError(
            f"header announces {header.record_count} records but the file holds {body / ENTRY_SIZE:g}"
        )
    offsets = range(header_size, header_size + body, ENTRY_SIZE)
    parsed = (BatchEntry.parse(data[p : p + ENTRY_SIZE]) for p in offsets)
    entries = [(bytes(e.record), bytes(e.chain_mac)) for e in parsed]
    section = data[header_size + body : header_size + body + written_size]
    try:
        writes = [BatchWritten.parse(section[p : p + WRITTEN_SIZE]) for p in range(0, written_size, WRITTEN_SIZE)]
    except Exception as e:
        raise BatchFormatError(f"bad card write: {e}") from None
    written = {int(w.index): bytes(w.write) for w in writes}
    if len(written) != len(writes) or any(i >= header.record_count for i in written):
        raise BatchFormatError("card writes name an entry twice or one the batch does not hold")
    tb = data[-TRAILER_SIZE:]
    try:
        trailer = BatchTrailer.parse(tb)
    except Exception as e:
        raise BatchFormatError(f"bad batch trailer: {e}") from None
    return ParsedBatch(_plain(header), data[:header_size], _plain(trailer), tb, entries, written, section)

"""Reading batch files fast: header and trailer first, then entries in bounded chunks.

``purse.batch`` (construct) defines the format and stays the reference parser; this
module reads the same bytes with ``struct`` so a million-record file is parsed in a
second and never held in memory whole. tests/test_processing_parse.py proves both
agree on every field (docs/batch-format.md).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from purse.batch import (
    BATCH_MAGIC,
    ENTRY_LAYOUT,
    ENTRY_SIZE,
    FIRST_LOG_ID,
    FORMAT_VERSION,
    HEADER_SIZE,
    HEADER_SIZES,
    TRAILER_SIZE,
    WRITTEN_SIZE,
)
from purse.errors import SmartpurseError

# By format version: 3 ends with the count of card writes, 2 with the log identity, 1 had none
# (read as FIRST_LOG_ID); 1 and 2 hold no card writes.
HEADERS = {1: struct.Struct(">4sBB2sIIIIII8s"), 2: struct.Struct(">4sBB2sIIIIII8s8s"),
           3: struct.Struct(">4sBB2sIIIIII8s8sI")}
WRITTEN = struct.Struct(">I67sx")  # entry index, CardWrite bytes, reserved
assert WRITTEN.size == WRITTEN_SIZE
TRAILER = struct.Struct(">4sIIQIQIQI8s8s")
# One entry: the 72-byte record's fields, then the 8-byte chain MAC.
ENTRY = ENTRY_LAYOUT.struct
assert {v: h.size for v, h in HEADERS.items()} == HEADER_SIZES and HEADERS[FORMAT_VERSION].size == HEADER_SIZE
assert TRAILER.size == TRAILER_SIZE and ENTRY.size == ENTRY_SIZE

CHUNK_RECORDS = 32_768


class BatchRejected(SmartpurseError):
    """The batch fails a check; ``check`` names it, ``record`` is the 1-based entry if any."""

    def __init__(self, check: str, detail: str, record: int | None = None) -> None:
        self.check = check
        self.detail = detail
        self.record = record
        where = f"record {record}: " if record is not None else ""
        super().__init__(f"{where}{check}: {detail}")


class Header(NamedTuple):
    format_version: int
    log_key_version: int
    terminal_id: int
    merchant_id: int
    batch_seq: int
    first_index: int
    record_count: int
    created: int
    prev_chain_mac: bytes
    log_id: bytes  # which of the terminal's logs made the batch (FIRST_LOG_ID in format 1)
    written_count: int = 0  # card writes after the entries (format 3)


class Trailer(NamedTuple):
    record_count: int
    purchase_count: int
    purchase_total: int
    cancel_count: int
    cancel_total: int
    load_count: int
    load_total: int
    block_count: int
    final_chain_mac: bytes
    batch_mac: bytes


@dataclass(frozen=True)
class BatchFile:
    """A batch whose envelope has been read; entries are streamed with ``chunks``."""

    path: Path
    size: int
    header: Header
    header_bytes: bytes
    trailer: Trailer
    trailer_bytes: bytes
    written: dict[int, bytes]  # 0-based entry index -> CardWrite bytes of a DESFire transaction
    written_bytes: bytes  # the section as it is in the file (covered by the batch MAC)

    def chunks(self, chunk_records: int = CHUNK_RECORDS) -> Iterator[tuple[int, bytes]]:
        """(0-based index of the chunk's first entry, the chunk's bytes), in file order."""
        with open(self.path, "rb") as f:
            f.seek(len(self.header_bytes))
            index = 0
            remaining = self.header.record_count
            while remaining:
                n = min(chunk_records, remaining)
                data = _read_exactly(f, n * ENTRY_SIZE)
                yield index, data
                index += n
                remaining -= n


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise BatchRejected("structure", "the file changed while it was read (truncated)")
    return data


def header_size(start: bytes) -> int:
    """The header's size from the file's first bytes (magic and format version), or ``BatchRejected``."""
    if start[:4] != BATCH_MAGIC:
        raise BatchRejected("structure", f"not a batch file (magic {start[:4]!r}, expected {BATCH_MAGIC!r})")
    version = start[4] if len(start) > 4 else None
    if version not in HEADER_SIZES:
        raise BatchRejected("structure", f"batch format version {version} is not supported "
                            f"(only {', '.join(map(str, HEADER_SIZES))})")
    return HEADER_SIZES[version]


def parse_header(raw: bytes) -> Header:
    if len(raw) != header_size(raw):
        raise BatchRejected("structure", "the header is cut short")
    magic, version, key_version, reserved, *rest = HEADERS[raw[4]].unpack(raw)
    if reserved != b"\x00\x00":
        raise BatchRejected("structure", "reserved header bytes are not zero")
    if version == 1:
        rest.append(FIRST_LOG_ID)
    return Header(version, key_version, *rest)


def parse_written(section: bytes, record_count: int) -> dict[int, bytes]:
    """The card writes section: entry index -> CardWrite bytes; ``BatchRejected`` when malformed."""
    written: dict[int, bytes] = {}
    for index, write, in (w[:2] for w in WRITTEN.iter_unpack(section)):
        if index >= record_count or index in written:
            raise BatchRejected("structure", f"a card write names entry {index + 1}, which the batch does not hold "
                                "or which has one already")
        written[index] = write
    return written


def parse_trailer(raw: bytes) -> Trailer:
    magic, *rest = TRAILER.unpack(raw)
    if magic != b"SPTR":
        raise BatchRejected("structure", f"trailer magic is {magic!r}, expected b'SPTR' (truncated or altered)")
    return Trailer(*rest)


def open_batch(path: Path) -> BatchFile:
    """Read and structurally check header and trailer; sizes must match exactly."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            start = f.read(5)
            if size < min(HEADER_SIZES.values()) + TRAILER_SIZE:
                raise BatchRejected("structure", f"file too short for a batch ({size} bytes; truncated?)")
            head_size = header_size(start)
            if size < head_size + TRAILER_SIZE:
                raise BatchRejected("structure", f"file too short for a batch ({size} bytes; truncated?)")
            f.seek(0)
            header_bytes = f.read(head_size)
            f.seek(size - TRAILER_SIZE)
            trailer_bytes = f.read(TRAILER_SIZE)
            header = parse_header(header_bytes)
            written_size = header.written_count * WRITTEN_SIZE
            f.seek(max(head_size, size - TRAILER_SIZE - written_size))
            written_bytes = f.read(written_size) if size - TRAILER_SIZE - written_size >= head_size else b""
    except OSError as e:
        raise BatchRejected("file", f"cannot read {path}: {e.strerror}") from None
    body = size - head_size - TRAILER_SIZE - written_size
    if body < 0 or body % ENTRY_SIZE or body // ENTRY_SIZE != header.record_count:
        raise BatchRejected(
            "structure",
            f"header announces {header.record_count} records but the file holds {body / ENTRY_SIZE:g} "
            "(truncated or padded)")
    trailer = parse_trailer(trailer_bytes)
    if trailer.record_count != header.record_count:
        raise BatchRejected("trailer", f"trailer counts {trailer.record_count} records, header "
                            f"{header.record_count}")
    written = parse_written(written_bytes, header.record_count)
    return BatchFile(Path(path), size, header, header_bytes, trailer, trailer_bytes, written, written_bytes)

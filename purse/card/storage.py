"""Persistent memory of the virtual card, with an atomic multi-write commit.

A real purse card commits purse, points and log in one atomic step or not at all; this
module gives the virtual card the same property (docs/protocol.md, "Anti-tearing").
A commit is: (1) one write of a journal holding every region write plus a CRC,
(2) one write per region into the image, (3) one write clearing the journal. At
power-up a journal with a good CRC is rolled forward; a torn one fails its CRC and is
dropped, leaving the image as it was. ``tear_at`` simulates pulling the card at the
k-th persistent write: only a prefix of that write reaches memory.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

from purse.errors import ExitCode, SmartpurseError
from purse.files import PRIVATE, write_atomic

MAGIC = b"SPCARD01"
JOURNAL_HEADER = struct.Struct(">IHI")  # crc32 of the rest, entry count, body length
ENTRY_HEADER = struct.Struct(">HH")  # offset, length


class CardTorn(Exception):
    """The card left the field during a persistent write: the command got no answer."""


class CardImageError(SmartpurseError):
    """The card image file is not a card image (wrong magic or size)."""

    exit_code = ExitCode.BAD_INPUT


class Storage:
    """Memory of ``size`` bytes for the application plus a journal area after it.

    Subclasses choose where the bytes live; this class owns the commit protocol and the
    tear hook, so that both backends tear the same way.
    """

    def __init__(self, size: int, journal_size: int) -> None:
        self.size = size
        self.journal_size = journal_size
        self.writes = 0
        self.tear_at: int | None = None
        self.commits = 0  # completed commits and recoveries: tells a cached applet it is current

    # backend primitives -------------------------------------------------------------
    def _read(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def _write(self, offset: int, data: bytes) -> None:
        raise NotImplementedError

    # protocol -----------------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        return self._read(len(MAGIC) + offset, length)

    def _persist(self, offset: int, data: bytes) -> None:
        """One persistent write, counted; tears here when asked to."""
        self.writes += 1
        if self.tear_at is not None and self.writes >= self.tear_at:
            self.tear_at = None
            self._write(offset, data[: len(data) // 2])
            raise CardTorn(f"card torn at persistent write {self.writes}")
        self._write(offset, data)

    @property
    def _journal_offset(self) -> int:
        return len(MAGIC) + self.size

    def commit(self, writes: Sequence[tuple[int, bytes]]) -> None:
        """Apply all ``writes`` (offset into application memory, bytes) atomically."""
        body = b"".join(ENTRY_HEADER.pack(off, len(data)) + data for off, data in writes)
        if JOURNAL_HEADER.size + len(body) > self.journal_size:
            raise ValueError("transaction larger than the card's journal")
        head = struct.pack(">HI", len(writes), len(body))
        crc = zlib.crc32(head + body)
        self._persist(self._journal_offset, struct.pack(">I", crc) + head + body)
        base = len(MAGIC)
        for off, data in writes:
            self._persist(base + off, data)
        self._persist(self._journal_offset, bytes(JOURNAL_HEADER.size))
        self.commits += 1

    def recover(self) -> bool:
        """Roll a complete journal forward; drop a torn one. True if it rolled forward."""
        raw = self._read(self._journal_offset, self.journal_size)
        crc, count, length = JOURNAL_HEADER.unpack_from(raw)
        if count == 0 and length == 0:
            return False
        if length > self.journal_size - JOURNAL_HEADER.size:
            self._write(self._journal_offset, bytes(JOURNAL_HEADER.size))
            return False
        body = raw[JOURNAL_HEADER.size : JOURNAL_HEADER.size + length]
        if zlib.crc32(raw[4:JOURNAL_HEADER.size] + body) != crc:
            self._write(self._journal_offset, bytes(JOURNAL_HEADER.size))
            return False
        pos = 0
        base = len(MAGIC)
        for _ in range(count):
            off, n = ENTRY_HEADER.unpack_from(body, pos)
            pos += ENTRY_HEADER.size
            self._write(base + off, body[pos : pos + n])
            pos += n
        self._write(self._journal_offset, bytes(JOURNAL_HEADER.size))
        self.commits += 1
        return True

    def image_bytes(self) -> bytes:
        return self._read(0, len(MAGIC) + self.size + self.journal_size)


class MemoryStorage(Storage):
    """The card's memory in RAM: for benchmarks, tests and batch personalization."""

    def __init__(self, size: int, journal_size: int, image: bytes | None = None) -> None:
        super().__init__(size, journal_size)
        total = len(MAGIC) + size + journal_size
        if image is None:
            self._mem = bytearray(MAGIC + bytes(total - len(MAGIC)))
        else:
            _check_image(image, total)
            self._mem = bytearray(image)

    def _read(self, offset: int, length: int) -> bytes:
        return bytes(self._mem[offset : offset + length])

    def _write(self, offset: int, data: bytes) -> None:
        self._mem[offset : offset + len(data)] = data

    def save(self, path: Path) -> None:
        """Write the image to ``path`` atomically (temporary file, fsync, rename)."""
        write_image_file(path, bytes(self._mem))


class FileStorage(Storage):
    """The card's memory in a card-image file; every persistent write is pwrite + fsync."""

    def __init__(self, path: Path, size: int, journal_size: int, *, durable: bool = True) -> None:
        super().__init__(size, journal_size)
        self.path = Path(path)
        self.durable = durable
        total = len(MAGIC) + size + journal_size
        try:
            self._fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            raise CardImageError(f"no card image at {self.path}") from None
        except IsADirectoryError:
            raise CardImageError(f"{self.path} is a folder, not a card image") from None
        head = os.pread(self._fd, len(MAGIC), 0)
        actual = os.fstat(self._fd).st_size
        if head != MAGIC or actual != total:
            os.close(self._fd)
            raise CardImageError(f"{self.path} is not a smartpurse card image")
        # The whole image is small (a few KiB): keep a read cache, write through.
        self._cache = bytearray(os.pread(self._fd, total, 0))

    def _read(self, offset: int, length: int) -> bytes:
        return bytes(self._cache[offset : offset + length])

    def _write(self, offset: int, data: bytes) -> None:
        self._cache[offset : offset + len(data)] = data
        os.pwrite(self._fd, data, offset)
        if self.durable:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _check_image(image: bytes, total: int) -> None:
    if image[: len(MAGIC)] != MAGIC or len(image) != total:
        raise CardImageError("not a smartpurse card image")


def write_image_file(path: Path, image: bytes) -> None:
    """Create or replace a card image atomically, so a crash never leaves half a card."""
    write_atomic(path, image, mode=PRIVATE)

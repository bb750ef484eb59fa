"""What a DESFire EV2 card remembers: its UID, PICC master key, applications, keys and files.

The model follows the data sheet's file system: a PICC level with one master key, up to 28
applications (3-byte AIDs) each with up to 14 AES keys, and in each application up to 32
files of six kinds (standard and backup data, value, linear and cyclic record, Transaction
MAC). ``to_bytes``/``from_bytes`` give the persistent image; every field has a fixed width
once its file is created, so a data change rewrites only the bytes that changed and a
commit journals a few pages, as EEPROM would.
"""

from __future__ import annotations

import copy
import struct
from dataclasses import dataclass, field
from enum import IntEnum

MAGIC = b"DFEV2img"
KEY_SIZE = 16
FREE = 0xE  # an access right anyone has, authenticated or not
NEVER = 0xF  # an access right nobody has


class FileType(IntEnum):
    """The file type byte of GetFileSettings."""

    STANDARD = 0
    BACKUP = 1
    VALUE = 2
    LINEAR_RECORD = 3
    CYCLIC_RECORD = 4
    TRANSACTION_MAC = 5


class Comm(IntEnum):
    """A file's communication mode (FileOption bits 1-0)."""

    PLAIN = 0
    MAC = 1
    FULL = 3


@dataclass
class Key:
    value: bytes = bytes(KEY_SIZE)
    version: int = 0


@dataclass(frozen=True)
class Access:
    """The four access rights of a file, each a key number, FREE or NEVER."""

    read: int
    write: int
    read_write: int
    change: int

    def to_bytes(self) -> bytes:
        """On the wire: ``RW|Change`` then ``Read|Write`` (the 16-bit value, least significant byte first)."""
        return bytes(((self.read_write << 4) | self.change, (self.read << 4) | self.write))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Access:
        return cls(raw[1] >> 4, raw[1] & 0xF, raw[0] >> 4, raw[0] & 0xF)


@dataclass
class DataBody:
    """A standard or backup data file: ``size`` bytes."""

    data: bytearray


@dataclass
class ValueBody:
    lower: int
    upper: int
    value: int
    limited_credit: bool
    limited_credit_value: int = 0  # what LimitedCredit may give back: the debits of the last committed transaction


@dataclass
class RecordBody:
    record_size: int
    max_records: int
    records: list[bytes] = field(default_factory=list)  # oldest first


@dataclass
class TmacBody:
    key: Key
    counter: int = 0  # TMC: committed transactions with a Transaction MAC
    value: bytes = bytes(8)  # TMV of the last one
    limit: int = 0xFFFFFFFF


Body = DataBody | ValueBody | RecordBody | TmacBody


@dataclass
class File:
    type: FileType
    comm: Comm
    access: Access
    body: Body

    @property
    def transactional(self) -> bool:
        """Backup, value and record files change only at CommitTransaction."""
        return self.type not in (FileType.STANDARD, FileType.TRANSACTION_MAC)


@dataclass
class Application:
    key_settings: int
    keys: list[Key]
    files: dict[int, File] = field(default_factory=dict)

    def tmac_file(self) -> File | None:
        return next((f for f in self.files.values() if f.type is FileType.TRANSACTION_MAC), None)


@dataclass
class Picc:
    uid: bytes
    master_key: Key = field(default_factory=Key)
    key_settings: int = 0x0F  # factory: listing and creating without the master key, master key changeable
    apps: dict[int, Application] = field(default_factory=dict)

    def clone(self) -> Picc:
        return copy.deepcopy(self)

    # -- the persistent image ------------------------------------------------------------
    def to_bytes(self) -> bytes:
        out = bytearray(MAGIC)
        out += self.uid + _key(self.master_key) + bytes((self.key_settings, len(self.apps)))
        for aid in sorted(self.apps):
            app = self.apps[aid]
            out += aid.to_bytes(3, "little") + bytes((app.key_settings, len(app.keys)))
            for key in app.keys:
                out += _key(key)
            out.append(len(app.files))
            for number in sorted(app.files):
                f = app.files[number]
                out += bytes((number, f.type, f.comm)) + f.access.to_bytes() + _body(f.body)
        return bytes(out)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Picc:
        r = _Reader(raw)
        if r.take(len(MAGIC)) != MAGIC:
            raise ValueError("not a DESFire card image")
        picc = cls(r.take(7), _read_key(r), r.byte())
        for _ in range(r.byte()):
            aid = int.from_bytes(r.take(3), "little")
            settings, n_keys = r.byte(), r.byte()
            app = Application(settings, [_read_key(r) for _ in range(n_keys)])
            for _ in range(r.byte()):
                number, kind, comm = r.byte(), FileType(r.byte()), Comm(r.byte())
                access = Access.from_bytes(r.take(2))
                app.files[number] = File(kind, comm, access, _read_body(r, kind))
            picc.apps[aid] = app
        return picc


def _key(key: Key) -> bytes:
    return key.value + bytes((key.version,))


def _read_key(r: _Reader) -> Key:
    return Key(r.take(KEY_SIZE), r.byte())


_VALUE = struct.Struct("<iiiBi")
_RECORD_HEAD = struct.Struct("<HHH")
_TMAC = struct.Struct("<I8sI")


def _body(body: Body) -> bytes:
    if isinstance(body, DataBody):
        return len(body.data).to_bytes(3, "little") + bytes(body.data)
    if isinstance(body, ValueBody):
        return _VALUE.pack(body.lower, body.upper, body.value, body.limited_credit, body.limited_credit_value)
    if isinstance(body, RecordBody):
        slots = b"".join(body.records) + bytes((body.max_records - len(body.records)) * body.record_size)
        return _RECORD_HEAD.pack(body.record_size, body.max_records, len(body.records)) + slots
    return _key(body.key) + _TMAC.pack(body.counter, body.value, body.limit)


def _read_body(r: _Reader, kind: FileType) -> Body:
    if kind in (FileType.STANDARD, FileType.BACKUP):
        return DataBody(bytearray(r.take(int.from_bytes(r.take(3), "little"))))
    if kind is FileType.VALUE:
        lower, upper, value, limited, limited_value = _VALUE.unpack(r.take(_VALUE.size))
        return ValueBody(lower, upper, value, bool(limited), limited_value)
    if kind in (FileType.LINEAR_RECORD, FileType.CYCLIC_RECORD):
        size, most, count = _RECORD_HEAD.unpack(r.take(_RECORD_HEAD.size))
        slots = r.take(size * most)
        return RecordBody(size, most, [slots[i * size : (i + 1) * size] for i in range(count)])
    key = _read_key(r)
    counter, value, limit = _TMAC.unpack(r.take(_TMAC.size))
    return TmacBody(key, counter, value, limit)


class _Reader:
    def __init__(self, raw: bytes) -> None:
        self.raw, self.at = raw, 0

    def take(self, n: int) -> bytes:
        if self.at + n > len(self.raw):
            raise ValueError("the DESFire card image is cut short")
        chunk = self.raw[self.at : self.at + n]
        self.at += n
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

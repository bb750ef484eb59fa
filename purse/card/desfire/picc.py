"""The emulated DESFire EV2 card: native commands in ISO 7816-4 wrapping, EV2 secure messaging,
transactions with commit and abort, and the Transaction MAC.

Behaviour, as the public documents describe it and as this card does it:

* **Framing.** ``90 INS 00 00 [Lc data] 00``; the answer is its data then ``91 status``. An
  answer longer than a frame (59 bytes) comes in parts: each part but the last ends ``91AF``
  and the reader asks for the next with ``90 AF 00 00 00``. A command longer than a frame is
  sent in parts the same way: the card answers ``91AF`` while it expects more data.
* **Secure messaging.** After AuthenticateEV2First the card MACs (and under CommMode.FULL
  encrypts) every command and answer with the session keys and the command counter; a frame
  whose MAC fails ends the session (``1E``). Any error ends it too.
* **Transactions.** Writes to backup, value and record files are held in RAM until
  CommitTransaction, dropped by AbortTransaction, by selecting an application and by power
  loss. Reads return what is committed. A commit is one journaled write of everything it
  changes (``purse.card.storage``), so a tear leaves all of it or none.
* **Transaction MAC.** With a TransactionMAC file in the application, every data command adds
  its plain parameters and data to the TMI (each piece zero-padded to 16 bytes); the commit
  counts the TMC up and stores ``TMV = MACt(SesTMMACKey, TMI)`` with
  ``SesTMMACKey = CMAC(AppTransactionMACKey, 5A 00 01 00 80 || TMC || UID)``.
"""

from __future__ import annotations

import copy
import hmac
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

from purse.card.desfire.state import (
    FREE,
    KEY_SIZE,
    NEVER,
    Access,
    Application,
    Body,
    Comm,
    DataBody,
    File,
    FileType,
    Key,
    Picc,
    RecordBody,
    TmacBody,
    ValueBody,
)
from purse.card.storage import CardTorn, MemoryStorage, Storage

__all__ = ["DesfirePicc", "Status", "ATR", "IMAGE_SIZE", "JOURNAL_SIZE", "manufacture"]

ATR = bytes.fromhex("3B8180018080")  # what PC/SC readers report for a DESFire card (ISO 14443-4, no historical bytes)
FRAME = 59  # data bytes per frame: a 64-byte frame less the wrapping
IMAGE_SIZE = 8192  # the EV2 8K's user memory
JOURNAL_SIZE = IMAGE_SIZE + 2048
_PAGE = 32
_MAX_APPS, _MAX_FILES, _MAX_KEYS = 28, 32, 14
_VERSION_HW = bytes.fromhex("04010112001A05")  # NXP, DESFire, EV2 (12h), 8K, ISO 14443-2 and -3
_VERSION_SW = bytes.fromhex("04010112001A05")
_BATCH = bytes.fromhex("BA7C4000000000")  # batch number (5) and production week, year


class Status(IntEnum):
    """The native status byte (the second byte of ``91xx``)."""

    OK = 0x00
    NO_CHANGES = 0x0C
    OUT_OF_EEPROM = 0x0E
    ILLEGAL_COMMAND = 0x1C
    INTEGRITY_ERROR = 0x1E
    NO_SUCH_KEY = 0x40
    LENGTH_ERROR = 0x7E
    PERMISSION_DENIED = 0x9D
    PARAMETER_ERROR = 0x9E
    APPLICATION_NOT_FOUND = 0xA0
    AUTHENTICATION_ERROR = 0xAE
    ADDITIONAL_FRAME = 0xAF
    BOUNDARY_ERROR = 0xBE
    COMMAND_ABORTED = 0xCA
    COUNT_ERROR = 0xCE
    DUPLICATE_ERROR = 0xDE
    FILE_NOT_FOUND = 0xF0


class _Reject(Exception):
    def __init__(self, status: Status) -> None:
        super().__init__(status.name)
        self.status = status


def _require(condition: bool, status: Status) -> None:
    if not condition:
        raise _Reject(status)


# -- the card's own cryptography (AES, CMAC; NIST SP 800-38B) ----------------------------------
def _cmac(key: bytes, data: bytes) -> bytes:
    c = CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def _mact(key: bytes, data: bytes) -> bytes:
    return _cmac(key, data)[1::2]


def _cbc(key: bytes, iv: bytes, data: bytes, *, encrypt: bool) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    worker = cipher.encryptor() if encrypt else cipher.decryptor()
    return worker.update(data) + worker.finalize()


def _ecb(key: bytes, block: bytes) -> bytes:
    return _cbc(key, bytes(16), block, encrypt=True)


def _pad80(data: bytes) -> bytes:
    data += b"\x80"
    return data + bytes(-len(data) % 16)


def _unpad80(data: bytes) -> bytes:
    end = data.rstrip(b"\x00")
    _require(bool(end) and end[-1] == 0x80, Status.INTEGRITY_ERROR)
    return end[:-1]


def _zero_pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % 16)


def _crc32(data: bytes) -> bytes:
    """DESFire's CRC32: the IEEE polynomial without the final complement, least significant byte first."""
    return ((zlib.crc32(data) ^ 0xFFFFFFFF) & 0xFFFFFFFF).to_bytes(4, "little")


def _u24(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


@dataclass
class _Auth:
    key_no: int
    enc: bytes
    mac: bytes
    ti: bytes
    counter: int = 0


@dataclass
class _Pending:
    """The transaction in progress: changed copies of transactional files, and the TMI."""

    bodies: dict[int, Body] = field(default_factory=dict)
    new_records: dict[int, bytearray] = field(default_factory=dict)
    debited: dict[int, int] = field(default_factory=dict)
    limited_used: set[int] = field(default_factory=set)
    tmi: bytearray = field(default_factory=bytearray)

    @property
    def empty(self) -> bool:
        return not self.bodies and not self.new_records and not self.tmi


# What each data command needs: the file rights that allow it, and how many leading data bytes
# stay in the clear under FULL (file number, offsets, lengths).
_READ, _WRITE, _RW = "read", "write", "read_write"
_DATA_COMMANDS: dict[int, tuple[tuple[str, ...], int]] = {
    0xBD: ((_READ, _RW), 7),  # ReadData
    0x3D: ((_WRITE, _RW), 7),  # WriteData
    0x6C: ((_READ, _WRITE, _RW), 1),  # GetValue
    0x0C: ((_RW,), 1),  # Credit
    0xDC: ((_READ, _WRITE, _RW), 1),  # Debit
    0x1C: ((_WRITE, _RW), 1),  # LimitedCredit
    0xBB: ((_READ, _RW), 7),  # ReadRecords
    0x3B: ((_WRITE, _RW), 7),  # WriteRecord
}
_FULL_COMMANDS = {0xC4: 1, 0x54: 0, 0xCE: 5}  # ChangeKey, ChangeKeySettings, CreateTransactionMACFile
_PLAIN_COMMANDS = {0x5A, 0x71}  # SelectApplication and AuthenticateEV2First end the session: never MACed


def manufacture(uid: bytes | None = None) -> MemoryStorage:
    """A blank EV2 card as it leaves the factory: a 7-byte UID (NXP's 04 first), no applications,
    and the PICC master key all zeros (an AES key here; see docs/desfire.md on DES-keyed stock)."""
    uid = uid if uid is not None else b"\x04" + os.urandom(6)
    if len(uid) != 7:
        raise ValueError("a DESFire UID has 7 bytes")
    storage = MemoryStorage(IMAGE_SIZE, JOURNAL_SIZE)
    blob = Picc(uid).to_bytes()
    storage.commit([(0, blob)])
    return storage


class DesfirePicc:
    """One emulated card over its persistent memory; ``process`` answers one command APDU."""

    def __init__(self, storage: Storage, rng: Callable[[int], bytes] = os.urandom) -> None:
        self.storage = storage
        self.rng = rng
        self.picc = Picc.from_bytes(storage.read(0, IMAGE_SIZE))
        self._reset()

    # -- power and RAM state ----------------------------------------------------------------
    def _reset(self) -> None:
        self.aid = 0
        self.auth: _Auth | None = None
        self.pending = _Pending()
        self._answer_parts: list[bytes] = []
        self._chained: tuple[int, bytes] | None = None  # a command whose data comes in parts: (ins, data so far)
        self._auth_step: tuple[int, bytes, bytes] | None = None  # (key number, key, RndB)

    def power_on(self) -> bytes:
        """Reset: a torn commit is rolled forward or dropped, RAM (session, transaction) is lost."""
        self.storage.recover()
        self.picc = Picc.from_bytes(self.storage.read(0, IMAGE_SIZE))
        self._reset()
        return ATR

    def _persist(self) -> None:
        blob = self.picc.to_bytes()
        _require(len(blob) <= IMAGE_SIZE, Status.OUT_OF_EEPROM)
        blob += bytes(IMAGE_SIZE - len(blob))
        old = self.storage.read(0, IMAGE_SIZE)
        writes = [(at, blob[at : at + _PAGE]) for at in range(0, IMAGE_SIZE, _PAGE)
                  if blob[at : at + _PAGE] != old[at : at + _PAGE]]
        if writes:
            self.storage.commit(writes)

    # -- framing ----------------------------------------------------------------------------
    def process(self, apdu: bytes) -> bytes:
        """One command APDU in, its answer (data and status word) out. ``CardTorn`` when the
        card is pulled during a persistent write: then there is no answer."""
        if len(apdu) < 4:
            return b"\x67\x00"
        if apdu[0] != 0x90:
            if apdu[0] == 0x00 and apdu[1] == 0xA4:
                return b"\x6a\x82"  # ISO SELECT: no ISO DF of that name on this card
            return b"\x6e\x00"
        ins = apdu[1]
        if apdu[2:4] != b"\x00\x00":
            return self._status(Status.PARAMETER_ERROR)
        data = b""
        if len(apdu) > 5:
            lc = apdu[4]
            data = apdu[5 : 5 + lc]
            if len(data) != lc or len(apdu) not in (5 + lc, 6 + lc):
                return self._status(Status.LENGTH_ERROR)
        try:
            return self._frame(ins, data)
        except _Reject as e:
            return self._status(e.status)
        except CardTorn:
            raise

    def _status(self, status: Status, data: bytes = b"") -> bytes:
        if status not in (Status.OK, Status.ADDITIONAL_FRAME):
            self.auth = None  # an error ends the session
            self._answer_parts, self._chained, self._auth_step = [], None, None
        return data + bytes((0x91, status))

    def _frame(self, ins: int, data: bytes) -> bytes:
        if ins == 0xAF:
            if self._answer_parts:
                return self._next_part()
            if self._auth_step is not None:
                return self._authenticate_second(data)
            if self._chained is not None:
                first_ins, so_far = self._chained
                self._chained = None
                return self._command(first_ins, so_far + data)
            raise _Reject(Status.ILLEGAL_COMMAND)
        self._answer_parts, self._chained, self._auth_step = [], None, None
        return self._command(ins, data)

    def _next_part(self) -> bytes:
        part = self._answer_parts.pop(0)
        more = bool(self._answer_parts)
        return part + bytes((0x91, Status.ADDITIONAL_FRAME if more else Status.OK))

    def _answer(self, data: bytes, parts: list[bytes] | None = None) -> bytes:
        if parts is None:
            parts = [data[i : i + FRAME] for i in range(0, len(data), FRAME)] or [b""]
        self._answer_parts = parts
        return self._next_part()

    # -- secure messaging ---------------------------------------------------------------------
    def _iv(self, auth: _Auth, prefix: bytes, counter: int) -> bytes:
        return _ecb(auth.enc, prefix + auth.ti + counter.to_bytes(2, "little") + bytes(8))

    def _open_command(self, ins: int, data: bytes, comm: Comm, header: int) -> bytes:
        """The plain data of a command under the session: MAC checked, decrypted under FULL."""
        auth = self.auth
        if auth is None or comm is Comm.PLAIN:
            return data
        _require(len(data) >= 8, Status.LENGTH_ERROR)
        body, mac = data[:-8], data[-8:]
        expected = _mact(auth.mac, bytes((ins,)) + auth.counter.to_bytes(2, "little") + auth.ti + body)
        _require(_equal(expected, mac), Status.INTEGRITY_ERROR)
        if comm is Comm.FULL and len(body) > header:
            secret = body[header:]
            _require(len(secret) % 16 == 0, Status.LENGTH_ERROR)
            body = body[:header] + _unpad80(_cbc(auth.enc, self._iv(auth, b"\xa5\x5a", auth.counter), secret,
                                                 encrypt=False))
        return body

    def _seal_answer(self, data: bytes, comm: Comm) -> bytes:
        auth = self.auth
        if auth is None:
            return data
        auth.counter += 1
        if comm is Comm.PLAIN:
            return data
        if comm is Comm.FULL and data:
            data = _cbc(auth.enc, self._iv(auth, b"\x5a\xa5", auth.counter), _pad80(data), encrypt=True)
        return data + _mact(auth.mac, b"\x00" + auth.counter.to_bytes(2, "little") + auth.ti + data)

    # -- dispatch -----------------------------------------------------------------------------
    def _command(self, ins: int, data: bytes) -> bytes:
        comm, header = Comm.MAC, 0
        rights: tuple[str, ...] = ()
        target: File | None = None
        if ins in _DATA_COMMANDS:
            rights, header = _DATA_COMMANDS[ins]
            _require(len(data) >= 1, Status.LENGTH_ERROR)
            target = self._file(data[0])
            self._check_rights(target, rights)
            comm = target.comm if self.auth is not None else Comm.PLAIN
        elif ins in _FULL_COMMANDS:
            comm, header = Comm.FULL, _FULL_COMMANDS[ins]
        if self.auth is None or ins in _PLAIN_COMMANDS:
            comm = Comm.PLAIN
        if ins in (0x3D, 0x3B) and len(data) >= 7:  # WriteData and WriteRecord may span frames
            expected = 7 + _wire_length(_u24(data[4:7]), comm)
            if len(data) < expected:
                self._chained = (ins, data)
                return bytes((0x91, Status.ADDITIONAL_FRAME))
        plain = self._open_command(ins, data, comm, header)
        handler = _HANDLERS.get(ins)
        if handler is None:
            raise _Reject(Status.ILLEGAL_COMMAND)
        result = handler(self, plain, target)
        if isinstance(result, _Raw):
            return result.frames
        answer_comm = Comm.FULL if ins == 0x51 else comm  # GetCardUID answers encrypted
        if ins in (0x3D, 0x3B, 0x0C, 0xDC, 0x1C) and answer_comm is Comm.FULL:
            answer_comm = Comm.MAC  # a write's answer carries no data, only the MAC
        sealed = self._seal_answer(result, answer_comm)
        if ins == 0x60:
            return self._answer(sealed, [sealed[:7], sealed[7:14], sealed[14:]])
        return self._answer(sealed)

    def _app(self) -> Application:
        _require(self.aid != 0, Status.PERMISSION_DENIED)
        return self.picc.apps[self.aid]

    def _file(self, number: int) -> File:
        app = self._app()
        _require(number in app.files, Status.FILE_NOT_FOUND)
        return app.files[number]

    def _check_rights(self, f: File, rights: tuple[str, ...]) -> None:
        keys = [getattr(f.access, r) for r in rights]
        if FREE in keys:
            return
        _require(any(k != NEVER for k in keys), Status.PERMISSION_DENIED)
        _require(self.auth is not None and self.auth.key_no in keys, Status.AUTHENTICATION_ERROR)

    def _require_master(self) -> None:
        _require(self.auth is not None and self.auth.key_no == 0, Status.AUTHENTICATION_ERROR)

    # -- PICC and application commands --------------------------------------------------------
    def _get_version(self, data: bytes, _f: File | None) -> bytes:
        return _VERSION_HW + _VERSION_SW + self.picc.uid + _BATCH

    def _get_card_uid(self, data: bytes, _f: File | None) -> bytes:
        _require(self.auth is not None, Status.AUTHENTICATION_ERROR)
        return self.picc.uid

    def _free_memory(self, data: bytes, _f: File | None) -> bytes:
        return (IMAGE_SIZE - len(self.picc.to_bytes())).to_bytes(3, "little")

    def _select_application(self, data: bytes, _f: File | None) -> bytes | _Raw:
        _require(len(data) == 3, Status.LENGTH_ERROR)
        aid = _u24(data)
        _require(aid == 0 or aid in self.picc.apps, Status.APPLICATION_NOT_FOUND)
        self.aid, self.auth, self.pending = aid, None, _Pending()
        return _Raw(bytes((0x91, Status.OK)))

    def _get_application_ids(self, data: bytes, _f: File | None) -> bytes:
        _require(self.aid == 0, Status.PERMISSION_DENIED)
        if not self.picc.key_settings & 0x02:
            self._require_master()
        return b"".join(aid.to_bytes(3, "little") for aid in sorted(self.picc.apps))

    def _get_file_ids(self, data: bytes, _f: File | None) -> bytes:
        return bytes(sorted(self._app().files))

    def _get_key_settings(self, data: bytes, _f: File | None) -> bytes:
        if self.aid == 0:
            return bytes((self.picc.key_settings, 0x81))
        app = self._app()
        return bytes((app.key_settings, 0x80 | len(app.keys)))

    def _get_key_version(self, data: bytes, _f: File | None) -> bytes:
        _require(len(data) == 1, Status.LENGTH_ERROR)
        return bytes((self._key(data[0] & 0x3F).version,))

    def _key(self, number: int) -> Key:
        if self.aid == 0:
            _require(number == 0, Status.NO_SUCH_KEY)
            return self.picc.master_key
        keys = self._app().keys
        _require(number < len(keys), Status.NO_SUCH_KEY)
        return keys[number]

    def _format_picc(self, data: bytes, _f: File | None) -> bytes:
        _require(self.aid == 0, Status.PERMISSION_DENIED)
        self._require_master()
        self.picc.apps.clear()
        self._persist()
        return b""

    def _create_application(self, data: bytes, _f: File | None) -> bytes:
        _require(self.aid == 0, Status.PERMISSION_DENIED)
        _require(len(data) == 5, Status.LENGTH_ERROR)
        if not self.picc.key_settings & 0x04:
            self._require_master()
        aid, settings, keys = _u24(data[0:3]), data[3], data[4]
        _require(aid != 0 and keys & 0xC0 == 0x80 and 1 <= keys & 0x0F <= _MAX_KEYS, Status.PARAMETER_ERROR)
        _require(aid not in self.picc.apps, Status.DUPLICATE_ERROR)
        _require(len(self.picc.apps) < _MAX_APPS, Status.COUNT_ERROR)
        self.picc.apps[aid] = Application(settings, [Key() for _ in range(keys & 0x0F)])
        self._persist()
        return b""

    def _create_file(self, number: int, f: File) -> bytes:
        app = self._app()
        if not app.key_settings & 0x04:
            self._require_master()
        _require(number < _MAX_FILES, Status.PARAMETER_ERROR)
        _require(number not in app.files, Status.DUPLICATE_ERROR)
        if f.type is FileType.TRANSACTION_MAC:
            _require(app.tmac_file() is None, Status.DUPLICATE_ERROR)
        app.files[number] = f
        self._persist()
        return b""

    def _file_head(self, data: bytes, size: int) -> tuple[int, Comm, Access]:
        _require(len(data) == size, Status.LENGTH_ERROR)
        try:
            comm = Comm(data[1] & 0x03)
        except ValueError:
            raise _Reject(Status.PARAMETER_ERROR) from None
        return data[0], comm, Access.from_bytes(data[2:4])

    def _create_data_file(self, data: bytes, kind: FileType) -> bytes:
        number, comm, access = self._file_head(data, 7)
        size = _u24(data[4:7])
        _require(size > 0, Status.PARAMETER_ERROR)
        return self._create_file(number, File(kind, comm, access, DataBody(bytearray(size))))

    def _create_std(self, data: bytes, _f: File | None) -> bytes:
        return self._create_data_file(data, FileType.STANDARD)

    def _create_backup(self, data: bytes, _f: File | None) -> bytes:
        return self._create_data_file(data, FileType.BACKUP)

    def _create_value(self, data: bytes, _f: File | None) -> bytes:
        number, comm, access = self._file_head(data, 17)
        lower, upper, value = (int.from_bytes(data[i : i + 4], "little", signed=True) for i in (4, 8, 12))
        _require(lower <= value <= upper, Status.BOUNDARY_ERROR)
        body = ValueBody(lower, upper, value, bool(data[16] & 0x01))
        return self._create_file(number, File(FileType.VALUE, comm, access, body))

    def _create_cyclic(self, data: bytes, _f: File | None) -> bytes:
        number, comm, access = self._file_head(data, 10)
        size, most = _u24(data[4:7]), _u24(data[7:10])
        _require(size > 0 and most >= 2, Status.PARAMETER_ERROR)
        return self._create_file(number, File(FileType.CYCLIC_RECORD, comm, access, RecordBody(size, most)))

    def _create_tmac(self, data: bytes, _f: File | None) -> bytes:
        number, comm, access = self._file_head(data[:4], 4)
        self._require_master()
        _require(len(data) == 5 + KEY_SIZE + 1 and data[4] == 0x02, Status.PARAMETER_ERROR)
        body = TmacBody(Key(data[5 : 5 + KEY_SIZE], data[5 + KEY_SIZE]))
        return self._create_file(number, File(FileType.TRANSACTION_MAC, comm, access, body))

    def _get_file_settings(self, data: bytes, _f: File | None) -> bytes:
        _require(len(data) == 1, Status.LENGTH_ERROR)
        f = self._file(data[0])
        head = bytes((f.type, f.comm)) + f.access.to_bytes()
        b = f.body
        if isinstance(b, DataBody):
            return head + len(b.data).to_bytes(3, "little")
        if isinstance(b, ValueBody):
            return head + b"".join(v.to_bytes(4, "little", signed=True) for v in (b.lower, b.upper,
                                   b.limited_credit_value)) + bytes((int(b.limited_credit),))
        if isinstance(b, RecordBody):
            return head + b"".join(v.to_bytes(3, "little") for v in (b.record_size, b.max_records, len(b.records)))
        return head + bytes((0x02, b.key.version))

    def _change_key(self, data: bytes, _f: File | None) -> bytes | _Raw:
        _require(self.auth is not None, Status.AUTHENTICATION_ERROR)
        assert self.auth is not None
        _require(len(data) >= 1 + KEY_SIZE + 1, Status.LENGTH_ERROR)
        number = data[0] & 0x3F
        key = self._key(number)
        settings = self.picc.key_settings if self.aid == 0 else self._app().key_settings
        change_right = settings >> 4 if self.aid else 0
        same = self.auth.key_no == number
        _require(self.auth.key_no == 0 or (same and change_right == 0xE) or change_right == self.auth.key_no,
                 Status.AUTHENTICATION_ERROR)
        _require(bool(settings & 0x01) or number != 0, Status.PERMISSION_DENIED)  # the master key is frozen
        if same:
            _require(len(data) == 1 + KEY_SIZE + 1, Status.LENGTH_ERROR)
            new = data[1 : 1 + KEY_SIZE]
        else:
            _require(len(data) == 1 + KEY_SIZE + 1 + 4, Status.LENGTH_ERROR)
            new = bytes(a ^ b for a, b in zip(data[1 : 1 + KEY_SIZE], key.value, strict=True))
            _require(_equal(_crc32(new), data[2 + KEY_SIZE :]), Status.INTEGRITY_ERROR)
        key.value, key.version = new, data[1 + KEY_SIZE]
        self._persist()
        if same:  # the session's own key changed: the session ends, the answer carries no MAC
            self.auth = None
            return _Raw(bytes((0x91, Status.OK)))
        return b""

    def _change_key_settings(self, data: bytes, _f: File | None) -> bytes:
        self._require_master()
        _require(len(data) == 1, Status.LENGTH_ERROR)
        settings = self.picc.key_settings if self.aid == 0 else self._app().key_settings
        _require(bool(settings & 0x08), Status.PERMISSION_DENIED)  # the settings were frozen
        if self.aid == 0:
            self.picc.key_settings = data[0]
        else:
            self._app().key_settings = data[0]
        self._persist()
        return b""

    # -- authentication ------------------------------------------------------------------------
    def _authenticate_first(self, data: bytes, _f: File | None) -> bytes | _Raw:
        _require(len(data) >= 2, Status.LENGTH_ERROR)
        number = data[0]
        key = self._key(number)
        rnd_b = self.rng(16)
        self.auth = None
        self._auth_step = (number, key.value, rnd_b)
        return _Raw(_cbc(key.value, bytes(16), rnd_b, encrypt=True) + bytes((0x91, Status.ADDITIONAL_FRAME)))

    def _authenticate_second(self, data: bytes) -> bytes:
        assert self._auth_step is not None
        number, key, rnd_b = self._auth_step
        self._auth_step = None
        _require(len(data) == 32, Status.LENGTH_ERROR)
        plain = _cbc(key, bytes(16), data, encrypt=False)
        rnd_a, rnd_b_rotated = plain[:16], plain[16:]
        _require(_equal(rnd_b_rotated, rnd_b[1:] + rnd_b[:1]), Status.AUTHENTICATION_ERROR)
        ti = self.rng(4)
        mixed = rnd_a[0:2] + bytes(a ^ b for a, b in zip(rnd_a[2:8], rnd_b[0:6], strict=True)) + rnd_b[6:] + rnd_a[8:]
        enc = _cmac(key, b"\xa5\x5a\x00\x01\x00\x80" + mixed)
        mac = _cmac(key, b"\x5a\xa5\x00\x01\x00\x80" + mixed)
        answer = _cbc(key, bytes(16), ti + rnd_a[1:] + rnd_a[:1] + bytes(12), encrypt=True)
        self.auth = _Auth(number, enc, mac, ti)
        return answer + bytes((0x91, Status.OK))

    # -- data commands -----------------------------------------------------------------------
    def _tmi(self, *pieces: bytes) -> None:
        app = self._app()
        if app.tmac_file() is None:
            return
        for piece in pieces:
            self.pending.tmi += _zero_pad(piece)

    def _body(self, number: int, f: File) -> Body:
        """The file as this transaction sees it (a copy once changed)."""
        if not f.transactional:
            return f.body
        if number not in self.pending.bodies:
            self.pending.bodies[number] = copy.deepcopy(f.body)
        return self.pending.bodies[number]

    def _read_data(self, data: bytes, f: File | None) -> bytes:
        assert f is not None
        _require(len(data) == 7, Status.LENGTH_ERROR)
        body = f.body
        if isinstance(body, TmacBody):
            raw = body.counter.to_bytes(4, "little") + body.value
        else:
            _require(isinstance(body, DataBody), Status.PARAMETER_ERROR)
            assert isinstance(body, DataBody)
            raw = bytes(body.data)
        offset, length = _u24(data[1:4]), _u24(data[4:7])
        length = length or len(raw) - offset
        _require(offset + length <= len(raw), Status.BOUNDARY_ERROR)
        chunk = raw[offset : offset + length]
        if f.type is not FileType.TRANSACTION_MAC:
            self._tmi(b"\xbd" + data[:4] + length.to_bytes(3, "little"), chunk)
        return chunk

    def _write_data(self, data: bytes, f: File | None) -> bytes:
        assert f is not None
        _require(f.type in (FileType.STANDARD, FileType.BACKUP), Status.PARAMETER_ERROR)
        _require(len(data) >= 7, Status.LENGTH_ERROR)
        offset, length, chunk = _u24(data[1:4]), _u24(data[4:7]), data[7:]
        _require(len(chunk) == length and length > 0, Status.LENGTH_ERROR)
        body = self._body(data[0], f)
        assert isinstance(body, DataBody)
        _require(offset + length <= len(body.data), Status.BOUNDARY_ERROR)
        body.data[offset : offset + length] = chunk
        self._tmi(b"\x3d" + data[:7], chunk)
        if not f.transactional:
            self._persist()
        return b""

    def _value(self, data: bytes, f: File | None) -> tuple[ValueBody, int]:
        assert f is not None
        _require(f.type is FileType.VALUE, Status.PARAMETER_ERROR)
        _require(len(data) == 5, Status.LENGTH_ERROR)
        amount = int.from_bytes(data[1:5], "little", signed=True)
        _require(amount >= 0, Status.PARAMETER_ERROR)
        body = self._body(data[0], f)
        assert isinstance(body, ValueBody)
        return body, amount

    def _get_value(self, data: bytes, f: File | None) -> bytes:
        assert f is not None
        _require(f.type is FileType.VALUE and len(data) == 1, Status.PARAMETER_ERROR)
        assert isinstance(f.body, ValueBody)
        raw = f.body.value.to_bytes(4, "little", signed=True)
        self._tmi(b"\x6c" + data[:1] + raw)
        return raw

    def _credit(self, data: bytes, f: File | None) -> bytes:
        body, amount = self._value(data, f)
        _require(body.value + amount <= body.upper, Status.BOUNDARY_ERROR)
        body.value += amount
        self._tmi(b"\x0c" + data)
        return b""

    def _debit(self, data: bytes, f: File | None) -> bytes:
        body, amount = self._value(data, f)
        _require(body.value - amount >= body.lower, Status.BOUNDARY_ERROR)
        body.value -= amount
        self.pending.debited[data[0]] = self.pending.debited.get(data[0], 0) + amount
        self._tmi(b"\xdc" + data)
        return b""

    def _limited_credit(self, data: bytes, f: File | None) -> bytes:
        body, amount = self._value(data, f)
        _require(body.limited_credit, Status.PERMISSION_DENIED)
        _require(data[0] not in self.pending.limited_used and amount <= body.limited_credit_value
                 and body.value + amount <= body.upper, Status.BOUNDARY_ERROR)
        body.value += amount
        self.pending.limited_used.add(data[0])
        self._tmi(b"\x1c" + data)
        return b""

    def _write_record(self, data: bytes, f: File | None) -> bytes:
        assert f is not None
        _require(isinstance(f.body, RecordBody), Status.PARAMETER_ERROR)
        assert isinstance(f.body, RecordBody)
        _require(len(data) >= 7, Status.LENGTH_ERROR)
        offset, length, chunk = _u24(data[1:4]), _u24(data[4:7]), data[7:]
        _require(len(chunk) == length and length > 0, Status.LENGTH_ERROR)
        _require(offset + length <= f.body.record_size, Status.BOUNDARY_ERROR)
        record = self.pending.new_records.setdefault(data[0], bytearray(f.body.record_size))
        record[offset : offset + length] = chunk
        self._tmi(b"\x3b" + data[:7], chunk)
        return b""

    def _read_records(self, data: bytes, f: File | None) -> bytes:
        assert f is not None
        _require(isinstance(f.body, RecordBody), Status.PARAMETER_ERROR)
        assert isinstance(f.body, RecordBody)
        _require(len(data) == 7, Status.LENGTH_ERROR)
        first, count = _u24(data[1:4]), _u24(data[4:7])
        records = f.body.records
        _require(first < len(records), Status.BOUNDARY_ERROR)
        count = count or len(records) - first
        _require(first + count <= len(records), Status.BOUNDARY_ERROR)
        newest_first = records[::-1][first : first + count]
        chunk = b"".join(newest_first[::-1])  # oldest of the range first
        self._tmi(b"\xbb" + data[:4] + count.to_bytes(3, "little"), chunk)
        return chunk

    # -- transactions ----------------------------------------------------------------------------
    def _commit(self, data: bytes, _f: File | None) -> bytes:
        _require(len(data) <= 1, Status.LENGTH_ERROR)
        option = data[0] if data else 0
        app = self._app()
        tmac = app.tmac_file()
        _require(not option & 0x01 or tmac is not None, Status.PERMISSION_DENIED)
        pending, self.pending = self.pending, _Pending()
        for number, body in pending.bodies.items():
            if isinstance(body, ValueBody):
                body.limited_credit_value = pending.debited.get(number, 0)
            app.files[number].body = body
        for number, record in pending.new_records.items():
            body = app.files[number].body
            assert isinstance(body, RecordBody)
            body.records = (body.records + [bytes(record)])[-body.max_records :]
        if tmac is not None and pending.tmi:
            t = tmac.body
            assert isinstance(t, TmacBody)
            t.counter += 1
            session = _cmac(t.key.value, b"\x5a\x00\x01\x00\x80" + t.counter.to_bytes(4, "little") + self.picc.uid)
            t.value = _mact(session, bytes(pending.tmi))
        if not pending.empty:
            self._persist()
        if option & 0x01:
            assert tmac is not None and isinstance(tmac.body, TmacBody)
            return tmac.body.counter.to_bytes(4, "little") + tmac.body.value
        return b""

    def _abort(self, data: bytes, _f: File | None) -> bytes:
        self.pending = _Pending()
        return b""


@dataclass(frozen=True)
class _Raw:
    """An answer that is already framed (status included) and not under secure messaging."""

    frames: bytes


def _wire_length(length: int, comm: Comm) -> int:
    """How many data bytes after a 7-byte header a write of ``length`` bytes takes on the wire."""
    if comm is Comm.PLAIN:
        return length
    if comm is Comm.MAC:
        return length + 8
    return (length + 16) // 16 * 16 + 8


def _equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


_Handler = Callable[[DesfirePicc, bytes, File | None], "bytes | _Raw"]
_HANDLERS: dict[int, _Handler] = {
    0x60: DesfirePicc._get_version,
    0x51: DesfirePicc._get_card_uid,
    0x6E: DesfirePicc._free_memory,
    0x5A: DesfirePicc._select_application,
    0x6A: DesfirePicc._get_application_ids,
    0x6F: DesfirePicc._get_file_ids,
    0x45: DesfirePicc._get_key_settings,
    0x64: DesfirePicc._get_key_version,
    0xFC: DesfirePicc._format_picc,
    0xCA: DesfirePicc._create_application,
    0xCD: DesfirePicc._create_std,
    0xCB: DesfirePicc._create_backup,
    0xCC: DesfirePicc._create_value,
    0xC0: DesfirePicc._create_cyclic,
    0xCE: DesfirePicc._create_tmac,
    0xF5: DesfirePicc._get_file_settings,
    0xC4: DesfirePicc._change_key,
    0x54: DesfirePicc._change_key_settings,
    0x71: DesfirePicc._authenticate_first,
    0xBD: DesfirePicc._read_data,
    0x3D: DesfirePicc._write_data,
    0x6C: DesfirePicc._get_value,
    0x0C: DesfirePicc._credit,
    0xDC: DesfirePicc._debit,
    0x1C: DesfirePicc._limited_credit,
    0x3B: DesfirePicc._write_record,
    0xBB: DesfirePicc._read_records,
    0xC7: DesfirePicc._commit,
    0xA7: DesfirePicc._abort,
}

"""The DESFire EV2 native commands a purse needs, over any ``Transport``.

Each command travels ISO-wrapped (``90 INS 00 00 Lc data 00``). A command's data longer than a
frame is sent in parts (the card answers ``91AF`` while it waits for more), and an answer longer
than a frame is fetched part by part with ``90 AF 00 00 00``. Secure messaging works on the
whole message, not on frames: the host protects the command's full data, splits it, and opens
the answer only once every part is in. After ``authenticate`` every command is MACed (encrypted
under CommMode.FULL), and any error status ends the session, as it does on the card.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from purse.desfire.ev2 import Authentication, CommMode, SecureMessagingError, Session
from purse.desfire.status import DesfireStatus, raise_for_desfire_status
from purse.transport import TRAFFIC, Transport

__all__ = [
    "DesfireCard",
    "Ins",
    "FileType",
    "Access",
    "FileSettings",
    "CardVersion",
    "FREE",
    "NEVER",
    "FRAME",
    "AES_KEYS",
]

log = logging.getLogger(__name__)

FRAME = 55  # command data bytes per frame: fits a 64-byte frame with the wrapping and the reader's chaining
FREE, NEVER = 0xE, 0xF
AES_KEYS = 0x80  # the crypto bits of CreateApplication's second key-settings byte


class Ins(IntEnum):
    """Native command codes (MIFARE DESFire EV2 command set)."""

    GET_VERSION = 0x60
    GET_CARD_UID = 0x51
    FREE_MEMORY = 0x6E
    SELECT_APPLICATION = 0x5A
    GET_APPLICATION_IDS = 0x6A
    GET_FILE_IDS = 0x6F
    GET_FILE_SETTINGS = 0xF5
    GET_KEY_SETTINGS = 0x45
    GET_KEY_VERSION = 0x64
    AUTHENTICATE_EV2_FIRST = 0x71
    ADDITIONAL_FRAME = 0xAF
    FORMAT_PICC = 0xFC
    CREATE_APPLICATION = 0xCA
    CREATE_STD_DATA_FILE = 0xCD
    CREATE_BACKUP_DATA_FILE = 0xCB
    CREATE_VALUE_FILE = 0xCC
    CREATE_CYCLIC_RECORD_FILE = 0xC0
    CREATE_TRANSACTION_MAC_FILE = 0xCE
    CHANGE_KEY = 0xC4
    CHANGE_KEY_SETTINGS = 0x54
    READ_DATA = 0xBD
    WRITE_DATA = 0x3D
    GET_VALUE = 0x6C
    CREDIT = 0x0C
    DEBIT = 0xDC
    LIMITED_CREDIT = 0x1C
    WRITE_RECORD = 0x3B
    READ_RECORDS = 0xBB
    COMMIT_TRANSACTION = 0xC7
    ABORT_TRANSACTION = 0xA7


class FileType(IntEnum):
    STANDARD = 0
    BACKUP = 1
    VALUE = 2
    LINEAR_RECORD = 3
    CYCLIC_RECORD = 4
    TRANSACTION_MAC = 5


_FILE_OPTION = {CommMode.PLAIN: 0x00, CommMode.MAC: 0x01, CommMode.FULL: 0x03}
_COMM = {v: k for k, v in _FILE_OPTION.items()}


@dataclass(frozen=True)
class Access:
    """A file's access rights: the key number each needs, ``FREE`` or ``NEVER``."""

    read: int
    write: int
    read_write: int
    change: int

    def to_bytes(self) -> bytes:
        return bytes(((self.read_write << 4) | self.change, (self.read << 4) | self.write))

    @classmethod
    def from_bytes(cls, raw: bytes) -> Access:
        return cls(raw[1] >> 4, raw[1] & 0xF, raw[0] >> 4, raw[0] & 0xF)


@dataclass(frozen=True)
class FileSettings:
    """GetFileSettings, decoded: the type, communication mode and rights, then what the type adds
    (``size`` of a data file; ``lower``/``upper``/``limited_credit`` of a value file;
    ``record_size``/``max_records``/``records`` of a record file; ``key_version`` of a TMAC file)."""

    type: FileType
    comm: CommMode
    access: Access
    size: int = 0
    lower: int = 0
    upper: int = 0
    limited_credit_value: int = 0
    limited_credit: bool = False
    record_size: int = 0
    max_records: int = 0
    records: int = 0
    key_version: int = 0

    @classmethod
    def from_bytes(cls, raw: bytes) -> FileSettings:
        if len(raw) < 4:
            raise SecureMessagingError("GetFileSettings answered too few bytes")
        kind, comm, access, rest = FileType(raw[0]), _COMM.get(raw[1] & 0x03, CommMode.PLAIN), \
            Access.from_bytes(raw[2:4]), raw[4:]
        if kind in (FileType.STANDARD, FileType.BACKUP):
            return cls(kind, comm, access, size=_u24(rest[0:3]))
        if kind is FileType.VALUE:
            lower, upper, limit = struct.unpack("<iii", rest[0:12])
            return cls(kind, comm, access, lower=lower, upper=upper, limited_credit_value=limit,
                       limited_credit=bool(rest[12] & 1))
        if kind in (FileType.LINEAR_RECORD, FileType.CYCLIC_RECORD):
            return cls(kind, comm, access, record_size=_u24(rest[0:3]), max_records=_u24(rest[3:6]),
                       records=_u24(rest[6:9]))
        return cls(kind, comm, access, key_version=rest[1] if len(rest) > 1 else 0)


@dataclass(frozen=True)
class CardVersion:
    """GetVersion: hardware and software versions, and the UID (zeros on a random-UID card)."""

    hardware: bytes
    software: bytes
    uid: bytes
    batch: bytes

    @property
    def generation(self) -> str:
        """EV1, EV2 or EV3 from the hardware major version."""
        return {0x01: "EV1", 0x12: "EV2", 0x33: "EV3"}.get(self.hardware[3], f"major {self.hardware[3]:02X}")


def _u24(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


def _p24(value: int) -> bytes:
    return value.to_bytes(3, "little")


def crc32(data: bytes) -> bytes:
    """DESFire's CRC32 (IEEE polynomial, no final complement), least significant byte first."""
    return ((zlib.crc32(data) ^ 0xFFFFFFFF) & 0xFFFFFFFF).to_bytes(4, "little")


class DesfireCard:
    """One DESFire card behind a transport, one method per native command."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.session: Session | None = None

    # -- frames ---------------------------------------------------------------------------
    def _frame(self, ins: int, data: bytes) -> tuple[int, bytes]:
        apdu = bytes((0x90, ins, 0, 0)) + ((bytes((len(data),)) + data) if data else b"") + b"\x00"
        tracing = log.isEnabledFor(TRAFFIC)
        if tracing:
            log.log(TRAFFIC, "> %s", apdu.hex() if ins != Ins.CHANGE_KEY else apdu[:5].hex() + " <key data>")
        answer = self.transport.transmit(apdu)
        if tracing:
            log.log(TRAFFIC, "< %s", answer.hex())
        if len(answer) < 2 or answer[-2] != 0x91:
            self.session = None
            raise SecureMessagingError(f"not a DESFire answer: status word {answer[-2:].hex() or 'missing'}")
        return answer[-1], answer[:-2]

    def _exchange(self, ins: int, payload: bytes) -> tuple[int, bytes]:
        """Send a whole command (in parts if long), fetch the whole answer; (status, data)."""
        status, data = self._frame(ins, payload[:FRAME])
        sent = FRAME
        while status == DesfireStatus.ADDITIONAL_FRAME and sent < len(payload):
            status, data = self._frame(Ins.ADDITIONAL_FRAME, payload[sent : sent + FRAME])
            sent += FRAME
        answer = data
        while status == DesfireStatus.ADDITIONAL_FRAME:
            status, data = self._frame(Ins.ADDITIONAL_FRAME, b"")
            answer += data
        return status, answer

    def command(self, ins: Ins, data: bytes = b"", mode: CommMode = CommMode.MAC, header_length: int = 0,
                answer_mode: CommMode | None = None) -> bytes:
        """One command under the session's secure messaging (``mode`` for the command, ``answer_mode``
        for the answer, default the same but MAC for a FULL command with no answer data expected)."""
        session = self.session
        if session is None:
            mode = answer_mode = CommMode.PLAIN
        elif answer_mode is None:
            answer_mode = mode
        assert answer_mode is not None
        payload = session.protect(ins, data, mode, header_length) if session is not None else data
        status, answer = self._exchange(ins, payload)
        if status != DesfireStatus.OK:
            self.session = None
            raise_for_desfire_status(status, Ins(ins).name.replace("_", " ").lower())
        if session is None:
            return answer
        try:
            return session.open(status, answer, answer_mode)
        except SecureMessagingError:
            self.session = None
            raise

    # -- the card and its applications ----------------------------------------------------
    def get_version(self) -> CardVersion:
        raw = self.command(Ins.GET_VERSION)
        if len(raw) < 28:
            raise SecureMessagingError(f"GetVersion answered {len(raw)} bytes, not 28")
        return CardVersion(raw[0:7], raw[7:14], raw[14:21], raw[21:28])

    def select_application(self, aid: int) -> None:
        """Select an application (0 is the card level); ends any session and drops an open transaction."""
        self.session = None
        self.command(Ins.SELECT_APPLICATION, aid.to_bytes(3, "little"))

    def authenticate(self, key_no: int, key: bytes, rnd_a: bytes | None = None) -> Session:
        """AuthenticateEV2First with ``key``: afterwards every command runs under the new session."""
        self.session = None
        status, enc_rnd_b = self._frame(Ins.AUTHENTICATE_EV2_FIRST, bytes((key_no, 0)))
        if status != DesfireStatus.ADDITIONAL_FRAME:
            raise_for_desfire_status(status, "authenticate")
            raise SecureMessagingError("the card skipped the second step of AuthenticateEV2First")
        if len(enc_rnd_b) != 16:
            raise SecureMessagingError(f"AuthenticateEV2First answered {len(enc_rnd_b)} bytes, not 16")
        auth = Authentication(key, rnd_a if rnd_a is not None else os.urandom(16))
        second, rnd_b = auth.answer(enc_rnd_b)
        status, enc_answer = self._frame(Ins.ADDITIONAL_FRAME, second)
        raise_for_desfire_status(status, "authenticate")
        self.session = auth.finish(rnd_b, enc_answer)
        return self.session

    def get_card_uid(self) -> bytes:
        """The real UID (needs a session; the only way to learn it on a random-UID card)."""
        return self.command(Ins.GET_CARD_UID, answer_mode=CommMode.FULL)

    def get_application_ids(self) -> list[int]:
        raw = self.command(Ins.GET_APPLICATION_IDS)
        return [_u24(raw[i : i + 3]) for i in range(0, len(raw), 3)]

    def get_file_ids(self) -> list[int]:
        return list(self.command(Ins.GET_FILE_IDS))

    def get_file_settings(self, file_no: int) -> FileSettings:
        return FileSettings.from_bytes(self.command(Ins.GET_FILE_SETTINGS, bytes((file_no,))))

    def get_key_settings(self) -> tuple[int, int]:
        raw = self.command(Ins.GET_KEY_SETTINGS)
        return raw[0], raw[1] & 0x0F

    def get_key_version(self, key_no: int) -> int:
        return self.command(Ins.GET_KEY_VERSION, bytes((key_no,)))[0]

    def free_memory(self) -> int:
        return _u24(self.command(Ins.FREE_MEMORY))

    # -- personalization --------------------------------------------------------------------
    def format_picc(self) -> None:
        self.command(Ins.FORMAT_PICC)

    def create_application(self, aid: int, key_settings: int, keys: int) -> None:
        self.command(Ins.CREATE_APPLICATION, aid.to_bytes(3, "little") + bytes((key_settings, AES_KEYS | keys)))

    def _create(self, ins: Ins, file_no: int, comm: CommMode, access: Access, rest: bytes) -> None:
        self.command(ins, bytes((file_no, _FILE_OPTION[comm])) + access.to_bytes() + rest)

    def create_std_data_file(self, file_no: int, comm: CommMode, access: Access, size: int) -> None:
        self._create(Ins.CREATE_STD_DATA_FILE, file_no, comm, access, _p24(size))

    def create_backup_data_file(self, file_no: int, comm: CommMode, access: Access, size: int) -> None:
        self._create(Ins.CREATE_BACKUP_DATA_FILE, file_no, comm, access, _p24(size))

    def create_value_file(self, file_no: int, comm: CommMode, access: Access, lower: int, upper: int,
                          value: int = 0, limited_credit: bool = False) -> None:
        self._create(Ins.CREATE_VALUE_FILE, file_no, comm, access,
                     struct.pack("<iiiB", lower, upper, value, int(limited_credit)))

    def create_cyclic_record_file(self, file_no: int, comm: CommMode, access: Access, record_size: int,
                                  max_records: int) -> None:
        self._create(Ins.CREATE_CYCLIC_RECORD_FILE, file_no, comm, access, _p24(record_size) + _p24(max_records))

    def create_transaction_mac_file(self, file_no: int, comm: CommMode, access: Access, key: bytes,
                                    version: int) -> None:
        """The TransactionMAC file with its AppTransactionMACKey (sent encrypted: CommMode.FULL)."""
        data = bytes((file_no, _FILE_OPTION[comm])) + access.to_bytes() + b"\x02" + key + bytes((version,))
        self.command(Ins.CREATE_TRANSACTION_MAC_FILE, data, CommMode.FULL, header_length=5, answer_mode=CommMode.MAC)

    def change_key(self, key_no: int, new_key: bytes, version: int, old_key: bytes | None = None) -> None:
        """ChangeKey: the session's own key (``old_key`` None) or another one (``old_key`` its current value)."""
        session = self.session
        if session is None:
            raise SecureMessagingError("ChangeKey needs a session")
        same = old_key is None
        if same:
            body = new_key + bytes((version,))
        else:
            assert old_key is not None
            body = bytes(a ^ b for a, b in zip(new_key, old_key, strict=True)) + bytes((version,)) + crc32(new_key)
        if not same:
            self.command(Ins.CHANGE_KEY, bytes((key_no,)) + body, CommMode.FULL, header_length=1,
                         answer_mode=CommMode.MAC)
            return
        payload = session.protect(Ins.CHANGE_KEY, bytes((key_no,)) + body, CommMode.FULL, header_length=1)
        status, _ = self._exchange(Ins.CHANGE_KEY, payload)
        self.session = None  # the session's key changed: the card ends it and answers without a MAC
        raise_for_desfire_status(status, "change key")

    def change_key_settings(self, settings: int) -> None:
        self.command(Ins.CHANGE_KEY_SETTINGS, bytes((settings,)), CommMode.FULL, answer_mode=CommMode.MAC)

    # -- data -------------------------------------------------------------------------------
    def read_data(self, file_no: int, offset: int, length: int, comm: CommMode) -> bytes:
        return self.command(Ins.READ_DATA, bytes((file_no,)) + _p24(offset) + _p24(length), comm, header_length=7,
                            answer_mode=comm)

    def write_data(self, file_no: int, offset: int, data: bytes, comm: CommMode) -> None:
        self.command(Ins.WRITE_DATA, bytes((file_no,)) + _p24(offset) + _p24(len(data)) + data, comm,
                     header_length=7, answer_mode=_written(comm))

    def get_value(self, file_no: int, comm: CommMode) -> int:
        raw = self.command(Ins.GET_VALUE, bytes((file_no,)), comm, header_length=1, answer_mode=comm)
        return int.from_bytes(raw, "little", signed=True)

    def _value(self, ins: Ins, file_no: int, amount: int, comm: CommMode) -> None:
        if not 0 <= amount < 2**31:
            raise ValueError(f"a DESFire value operation moves 0 to 2^31-1, not {amount}")
        self.command(ins, bytes((file_no,)) + amount.to_bytes(4, "little"), comm, header_length=1,
                     answer_mode=_written(comm))

    def credit(self, file_no: int, amount: int, comm: CommMode) -> None:
        self._value(Ins.CREDIT, file_no, amount, comm)

    def debit(self, file_no: int, amount: int, comm: CommMode) -> None:
        self._value(Ins.DEBIT, file_no, amount, comm)

    def limited_credit(self, file_no: int, amount: int, comm: CommMode) -> None:
        self._value(Ins.LIMITED_CREDIT, file_no, amount, comm)

    def write_record(self, file_no: int, offset: int, data: bytes, comm: CommMode) -> None:
        self.command(Ins.WRITE_RECORD, bytes((file_no,)) + _p24(offset) + _p24(len(data)) + data, comm,
                     header_length=7, answer_mode=_written(comm))

    def read_records(self, file_no: int, first: int, count: int, comm: CommMode) -> bytes:
        """Records ``first`` (0 the newest) to ``first + count - 1`` back in time, oldest of them first;
        ``count`` 0 reads all from ``first``."""
        return self.command(Ins.READ_RECORDS, bytes((file_no,)) + _p24(first) + _p24(count), comm,
                            header_length=7, answer_mode=comm)

    def commit_transaction(self, transaction_mac: bool = True) -> tuple[int, bytes] | None:
        """CommitTransaction; with ``transaction_mac`` the card's (TMC, TMV) of what it committed."""
        raw = self.command(Ins.COMMIT_TRANSACTION, b"\x01" if transaction_mac else b"")
        if not transaction_mac:
            return None
        if len(raw) != 12:
            raise SecureMessagingError(f"CommitTransaction answered {len(raw)} bytes, not TMC and TMV")
        return int.from_bytes(raw[:4], "little"), raw[4:]

    def abort_transaction(self) -> None:
        self.command(Ins.ABORT_TRANSACTION)


def _written(comm: CommMode) -> CommMode:
    """A write's answer carries no data: MACed when the command was MACed or encrypted."""
    return CommMode.PLAIN if comm is CommMode.PLAIN else CommMode.MAC

"""The purse's card profile on MIFARE DESFire EV2/EV3: one application, its keys and files.

docs/desfire.md lays it out byte by byte and says why; this module is that table in code, the
one definition personalization writes and the terminals and processing read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from purse.desfire.commands import FREE, NEVER, Access, FileType
from purse.desfire.ev2 import CommMode
from purse.protocol import ID_FILE, KeyRef
from purse.records import CERTIFIED_SIZE, POINTS_SLOT_SIZE

__all__ = [
    "AID",
    "AID_BYTES",
    "PROFILE_VERSION",
    "KeyNo",
    "FileNo",
    "FileSpec",
    "FILES",
    "KEY_MASTERS",
    "APP_KEY_SETTINGS",
    "PICC_KEY_SETTINGS",
    "PICC_KEY_LABEL",
    "TMAC_KEY_LABEL",
    "Identity",
    "IDENTITY_SIZE",
    "STATE_OFFSET",
    "POINTS_PROGRAMS",
    "POINTS_ENTRY",
    "LOG_RECORD_SIZE",
    "LOG_RECORDS",
    "diversification_input",
]

AID = 0xF55001  # on the wire 01 50 F5; an F first (of the 24-bit value) is outside MAD's registered range
AID_BYTES = AID.to_bytes(3, "little")
PROFILE_VERSION = 2  # 2: the load key writes the identity file (the desk's cash-out marks the card returned)
# Master key changeable, free listing, files created only with the master key, settings changeable.
APP_KEY_SETTINGS = 0x0B
PICC_KEY_SETTINGS = 0x0B  # the same at card level: no application created or deleted without the PICC master key


class KeyNo(IntEnum):
    """The application's keys."""

    MASTER = 0
    LOAD = 1
    DEBIT = 2
    READ = 3


# Which of the issuer's masters each card key is diversified from.
KEY_MASTERS = {KeyNo.MASTER: KeyRef.ADMIN, KeyNo.LOAD: KeyRef.CREDIT, KeyNo.DEBIT: KeyRef.DEBIT,
               KeyNo.READ: KeyRef.DEBIT}
PICC_KEY_LABEL = 0xFF  # the key-number byte of the PICC master key's diversification input (under MK_ADMIN)
TMAC_KEY_LABEL = 0x0F  # and of the AppTransactionMACKey's (under MK_TXN)


class FileNo(IntEnum):
    IDENTITY = 0x01
    PURSE = 0x02
    POINTS = 0x03
    LOG = 0x04
    TMAC = 0x0F


@dataclass(frozen=True)
class FileSpec:
    type: FileType
    comm: CommMode
    access: Access
    size: int = 0  # a data file's bytes; a record file's record size
    records: int = 0  # a record file's records


IDENTITY_SIZE = 32
POINTS_PROGRAMS = 4
# Per program: the slot now, then the slot before the last purchase (what a cancel restores).
POINTS_ENTRY = 2 * POINTS_SLOT_SIZE
LOG_RECORD_SIZE = CERTIFIED_SIZE  # a log record is a transaction record's 64 certified bytes
LOG_RECORDS = 17  # sixteen kept, one free for the transaction in progress

FILES: dict[FileNo, FileSpec] = {
    # Written at issue and by the two transactions that change the card's state: a terminal's BLOCK
    # (the debit key) and the desk's CASH OUT at card return (the load key).
    FileNo.IDENTITY: FileSpec(FileType.BACKUP, CommMode.PLAIN,
                              Access(read=FREE, write=KeyNo.LOAD, read_write=KeyNo.DEBIT, change=KeyNo.MASTER),
                              IDENTITY_SIZE),
    FileNo.PURSE: FileSpec(FileType.VALUE, CommMode.FULL,
                           Access(read=KeyNo.DEBIT, write=KeyNo.DEBIT, read_write=KeyNo.LOAD, change=KeyNo.MASTER)),
    FileNo.POINTS: FileSpec(FileType.BACKUP, CommMode.FULL,
                            Access(read=KeyNo.READ, write=KeyNo.MASTER, read_write=KeyNo.DEBIT, change=KeyNo.MASTER),
                            POINTS_PROGRAMS * POINTS_ENTRY),
    FileNo.LOG: FileSpec(FileType.CYCLIC_RECORD, CommMode.FULL,
                         Access(read=FREE, write=KeyNo.LOAD, read_write=KeyNo.DEBIT, change=KeyNo.MASTER),
                         LOG_RECORD_SIZE, LOG_RECORDS),
    FileNo.TMAC: FileSpec(FileType.TRANSACTION_MAC, CommMode.PLAIN, Access(read=FREE, write=NEVER, read_write=NEVER,
                                                                          change=KeyNo.MASTER)),
}


_IDENTITY_TAIL = struct.Struct(">BB7sB")
STATE_OFFSET = ID_FILE.size + 1  # 23: the card state byte, written by a BLOCK and a CASH OUT


@dataclass(frozen=True)
class Identity:
    """The identity file: the reference card's ID file fields, then the profile version, the card
    state, the UID the keys are diversified with and their version, so a terminal knows all it
    needs to authenticate from one free read (a random-UID card too)."""

    number_bcd: bytes
    issuer_id: int
    expiry: int
    currency: int
    max_balance: int
    state: int
    uid: bytes
    key_version: int
    version: int = PROFILE_VERSION

    def to_bytes(self) -> bytes:
        return ID_FILE.pack(self.number_bcd, self.issuer_id, self.expiry, self.currency, self.max_balance) + \
            _IDENTITY_TAIL.pack(self.version, self.state, self.uid, self.key_version)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Identity:
        if len(raw) != IDENTITY_SIZE:
            raise ValueError(f"the identity file has {IDENTITY_SIZE} bytes, not {len(raw)}")
        number, issuer, expiry, currency, max_balance = ID_FILE.unpack(raw[: ID_FILE.size])
        version, state, uid, key_version = _IDENTITY_TAIL.unpack(raw[ID_FILE.size :])
        return cls(number, issuer, expiry, currency, max_balance, state, uid, key_version, version)


assert _IDENTITY_TAIL.size + ID_FILE.size == IDENTITY_SIZE


def diversification_input(uid: bytes, label: int, system_identifier: bytes) -> bytes:
    """AN10922's M for the card key ``label`` (a ``KeyNo``, ``PICC_KEY_LABEL`` or ``TMAC_KEY_LABEL``):
    ``UID || AID (wire order) || system identifier || label``."""
    if len(uid) != 7:
        raise ValueError("a DESFire UID has 7 bytes")
    return uid + AID_BYTES + system_identifier[:16] + bytes((label,))

"""Constants and byte layouts of the purse application protocol.

One module names every instruction, key reference and data layout, so that the card
(``purse.card.applet``) and the host (``purse.session``) cannot drift apart. The
layouts are documented byte by byte in docs/protocol.md; tests check both agree.
"""

from __future__ import annotations

import struct
from enum import IntEnum

from purse.crypto import MAC_SIZE  # noqa: F401 - the protocol's MACs are CMAC truncated to MAC_SIZE

AID = bytes.fromhex("F0535055525345 01".replace(" ", ""))  # F0 'SPURSE' 01: proprietary AID
CLA_ISO = 0x00
CLA_PURSE = 0x80


class Ins(IntEnum):
    SELECT = 0xA4
    OPEN_SESSION = 0x8A
    DEBIT = 0x54
    CREDIT = 0x52
    UNDEBIT = 0x56
    CASH_OUT = 0x58  # the desk empties the purse at card return; the card is RETURNED after it
    BLOCK = 0x1E
    UNBLOCK = 0x1F
    READ_LOG = 0xB2
    VERIFY_PIN = 0x20
    SET_PIN = 0x24
    PUT_KEY = 0xD8
    WRITE_FILE = 0xD6
    LOCK = 0xEE


class KeyRef(IntEnum):
    """Key references (P1 of OPEN SESSION and PUT KEY)."""

    TRANSPORT = 0x00  # blank cards only; erased by LOCK
    ADMIN = 0x01
    CREDIT = 0x02
    DEBIT = 0x03
    TXN = 0x04  # never opens a session: it only certifies transactions


class CardState(IntEnum):
    BLANK = 0
    PERSONALIZED = 1
    BLOCKED = 2
    RETURNED = 3  # given back at the desk and cashed out: no session but ADMIN opens again


class FileId(IntEnum):
    """P1 of WRITE FILE."""

    ID = 0x01
    POINTS = 0x03  # P2 = slot index


class RecordType(IntEnum):
    LOAD = 1
    PURCHASE = 2
    CANCEL = 3
    BLOCK = 4
    CASH_OUT = 5  # the balance paid out in cash at card return (amount = the balance, balance after 0)


# The factory transport key of a blank virtual card (docs/protocol.md, "Personalization").
DEFAULT_TRANSPORT_KEY = bytes(16)
DEFAULT_SYSTEM_IDENTIFIER = b"SMARTPURSE"
PIN_TRIES = 3
LOG_RECORDS = 16
POINTS_SLOTS = 4
POINTS_SLOT_SIZE = 32

RANDOM_SIZE = 8
# OPEN SESSION: terminal id u32, program id u16, terminal random 8
OPEN_SESSION_CMD = struct.Struct(">IH8s")
# response: card random 8, counter u32, balance u32, points slot 32, cryptogram 8
OPEN_SESSION_RESP = struct.Struct(">8sII32s8s")
# SELECT response: state, uid, card number (BCD), issuer id, key version, currency,
# balance, max balance, counter, expiry (unix seconds)
SELECT_RESP = struct.Struct(">B7s8sIBHIIII")
# DEBIT: amount, time, terminal seq, points earned (signed), points redeemed, prizes, slot
DEBIT_CMD = struct.Struct(">IIIiiB32s")
# CREDIT: amount, time, terminal seq
CREDIT_CMD = struct.Struct(">III")
# UNDEBIT: counter of the debit to cancel, time, terminal seq
UNDEBIT_CMD = struct.Struct(">III")
# CASH_OUT: amount (the whole balance: the card checks it), time, terminal seq
CASH_OUT_CMD = struct.Struct(">III")
# BLOCK: time, terminal seq
BLOCK_CMD = struct.Struct(">II")
# response of DEBIT, CREDIT, UNDEBIT, BLOCK (before the response MAC): balance, counter, certificate
TXN_RESP = struct.Struct(">II8s")
# WRITE FILE ID: card number (BCD), issuer id, expiry, currency, max balance
ID_FILE = struct.Struct(">8sIIHI")

CMD_MAC_TAG = b"C"
RESP_MAC_TAG = b"R"
CRYPTOGRAM_TAG = b"K"

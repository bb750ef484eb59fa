"""Where each file of the purse application lives in the card's persistent memory.

Fixed offsets, like an EEPROM map: a commit writes whole regions, so a region is the
unit of atomic update (docs/protocol.md, "Card memory").
"""

from __future__ import annotations

import struct

from purse.protocol import LOG_RECORDS, POINTS_SLOT_SIZE, POINTS_SLOTS
from purse.records import RECORD_SIZE

IDENT = struct.Struct(">B7s8sIIHIB")  # state, uid, number, issuer, expiry, currency, max balance, key version
IDENT_AT = 0
KEY = struct.Struct(">BB16s")  # present, version, key
KEYS_AT = 32
KEY_COUNT = 5
PIN = struct.Struct(">8sBB")  # PIN block, tries left, PIN set
PIN_AT = 128
PURSE = struct.Struct(">III")  # balance, counter, last transaction time
PURSE_AT = 144
POINTS_AT = 160
UNDO = struct.Struct(">B32sI")  # slot index (FF: nothing to undo), slot before the debit, debit counter
UNDO_AT = POINTS_AT + POINTS_SLOTS * POINTS_SLOT_SIZE
LOG_HEAD = struct.Struct(">BB")  # next index to write, records held
LOG_HEAD_AT = UNDO_AT + 48
LOG_AT = LOG_HEAD_AT + 4
APP_MEMORY = 1536
JOURNAL = 512
assert LOG_AT + LOG_RECORDS * RECORD_SIZE <= APP_MEMORY
assert KEYS_AT + KEY_COUNT * KEY.size <= PIN_AT

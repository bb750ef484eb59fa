"""The Transaction MAC, as the back office recomputes it: the TMI of a transaction and its TMV.

A DESFire card with a TransactionMAC file MACs every committed transaction under a key the
terminals never hold (the AppTransactionMACKey), so a merchant cannot invent a purchase. The
back office rebuilds the Transaction MAC Input from what the terminal reports and checks the
card's Transaction MAC Value. From the MIFARE DESFire Light data sheet (MF2DL(H)x0, section
10.3), which the EV2/EV3 Transaction MAC follows:

* ``SesTMMACKey = CMAC(AppTransactionMACKey, 5A 00 01 00 80 || TMC || UID)`` (10.3.2.3), where
  TMC is the counter the commit reports (already counted up), 4 bytes least significant first.
* ``TMV = MACt(SesTMMACKey, TMI)``: CMAC with a zero IV, its odd-numbered bytes (10.3.2.4).
* Each data command appends its code and plain parameters, zero-padded to 16 bytes, then its
  plain data, zero-padded to 16 bytes (10.3.4.2); value commands carry the 4-byte value.
"""

from __future__ import annotations

from purse import crypto
from purse.desfire.commands import Ins
from purse.desfire.ev2 import truncated_mac
from purse.desfire.profile import STATE_OFFSET, TMAC_KEY_LABEL, FileNo, diversification_input
from purse.protocol import CardState, RecordType
from purse.records import CERTIFIED_SIZE, RECORD_LAYOUT, CardWrite

__all__ = ["TransactionMacInput", "session_mac_key", "transaction_mac", "transaction_mac_matches",
           "record_transaction_mac_input", "record_verifies", "card_tmac_key"]


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 16)


def _u24(value: int) -> bytes:
    return value.to_bytes(3, "little")


class TransactionMacInput:
    """The TMI of one transaction, built command by command in the order the card ran them."""

    def __init__(self) -> None:
        self._tmi = bytearray()

    def _add(self, parameters: bytes, data: bytes = b"") -> TransactionMacInput:
        self._tmi += _padded(parameters)
        if data:
            self._tmi += _padded(data)
        return self

    def value(self, ins: Ins, file_no: int, amount: int) -> TransactionMacInput:
        """GetValue, Credit, Debit or LimitedCredit of ``amount`` on value file ``file_no``."""
        if ins not in (Ins.GET_VALUE, Ins.CREDIT, Ins.DEBIT, Ins.LIMITED_CREDIT):
            raise ValueError(f"{ins.name} is not a value command")
        return self._add(bytes((ins, file_no)) + amount.to_bytes(4, "little", signed=True))

    def data(self, ins: Ins, file_no: int, offset: int, data: bytes) -> TransactionMacInput:
        """ReadData, WriteData or WriteRecord of ``data`` at ``offset``."""
        if ins not in (Ins.READ_DATA, Ins.WRITE_DATA, Ins.WRITE_RECORD):
            raise ValueError(f"{ins.name} is not a data command")
        return self._add(bytes((ins, file_no)) + _u24(offset) + _u24(len(data)), data)

    def records(self, file_no: int, first: int, count: int, data: bytes) -> TransactionMacInput:
        """ReadRecords of ``count`` records from ``first`` (``data`` as the card answered it)."""
        return self._add(bytes((Ins.READ_RECORDS, file_no)) + _u24(first) + _u24(count), data)

    def to_bytes(self) -> bytes:
        return bytes(self._tmi)


def session_mac_key(key: bytes, tmc: int, uid: bytes) -> bytes:
    """SesTMMACKey for the transaction the card counted as ``tmc``."""
    if len(uid) != 7:
        raise ValueError("the Transaction MAC is bound to a 7-byte UID")
    return crypto.cmac(key, b"\x5a\x00\x01\x00\x80" + tmc.to_bytes(4, "little") + uid)


def transaction_mac(key: bytes, tmc: int, uid: bytes, tmi: bytes) -> bytes:
    """The TMV a genuine card computes for ``tmi`` as its transaction ``tmc``."""
    if not tmi or len(tmi) % 16:
        raise ValueError("a TMI is a non-empty multiple of 16 bytes")
    return truncated_mac(session_mac_key(key, tmc, uid), tmi)


def transaction_mac_matches(key: bytes, tmc: int, uid: bytes, tmi: bytes, tmv: bytes) -> bool:
    """Whether ``tmv`` is the card's MAC of ``tmi`` (compared in constant time)."""
    return crypto.macs_equal(transaction_mac(key, tmc, uid, tmi), tmv)


# -- a record's Transaction MAC, as processing checks it -------------------------------------------
_VALUE_COMMAND = {RecordType.PURCHASE: Ins.DEBIT, RecordType.LOAD: Ins.CREDIT, RecordType.CANCEL: Ins.LIMITED_CREDIT}


def record_transaction_mac_input(certified: bytes, written: CardWrite | None) -> bytes:
    """The TMI of the transaction that logged ``certified`` (a record's 64 bytes) on a DESFire card
    with the purse profile, and wrote ``written`` to its points file (docs/desfire.md, "A purchase")."""
    if len(certified) != CERTIFIED_SIZE:
        raise ValueError(f"a record's certified part has {CERTIFIED_SIZE} bytes")
    kind = certified[RECORD_LAYOUT.offset["record_type"]]
    tmi = TransactionMacInput()
    amount = int.from_bytes(certified[RECORD_LAYOUT.at("amount")], "big")
    if kind == RecordType.BLOCK:
        tmi.data(Ins.WRITE_DATA, FileNo.IDENTITY, STATE_OFFSET, bytes((CardState.BLOCKED,)))
    elif kind == RecordType.CASH_OUT:
        if amount:  # an empty card is returned without a Debit
            tmi.value(Ins.DEBIT, FileNo.PURSE, amount)
        tmi.data(Ins.WRITE_DATA, FileNo.IDENTITY, STATE_OFFSET, bytes((CardState.RETURNED,)))
    elif kind in _VALUE_COMMAND:
        tmi.value(_VALUE_COMMAND[RecordType(kind)], FileNo.PURSE, amount)
        if written is not None:
            tmi.data(Ins.WRITE_DATA, FileNo.POINTS, written.offset, written.data)
    else:
        raise ValueError(f"record type {kind} is not a purse transaction")
    return tmi.data(Ins.WRITE_RECORD, FileNo.LOG, 0, certified).to_bytes()


def record_verifies(tmac_key: bytes, record: bytes, written: bytes | None = None) -> bool:
    """Whether a DESFire record (72 bytes) carries its card's Transaction MAC: ``tmac_key`` the card's
    AppTransactionMACKey, ``written`` the batch's card write for it (``CardWrite`` bytes) if any."""
    try:
        write = CardWrite.from_bytes(written) if written is not None else None
        tmi = record_transaction_mac_input(record[:CERTIFIED_SIZE], write)
    except ValueError:
        return False
    counter = int.from_bytes(record[RECORD_LAYOUT.at("counter")], "big")
    uid = record[RECORD_LAYOUT.at("uid")]
    return transaction_mac_matches(tmac_key, counter, uid, tmi, record[CERTIFIED_SIZE:])


def card_tmac_key(txn_master: bytes, uid: bytes, system_identifier: bytes) -> bytes:
    """A card's AppTransactionMACKey: MK_TXN diversified for it (docs/desfire.md, "Keys")."""
    return crypto.an10922_diversify(txn_master, diversification_input(uid, TMAC_KEY_LABEL, system_identifier))

"""Host side of the purse protocol: one verb per card command.

``PurseSession`` builds the APDUs of docs/protocol.md, MACs them through a SAM session
and checks the card's answers, so terminals and personalization never handle bytes.
"""

from __future__ import annotations

import logging
import os
import struct

from purse import crypto
from purse.apdu import ApduError, CommandApdu, ResponseApdu, raise_for_status
from purse.cardsession import CardInfo, CardNotGenuine, OpenedSession, TxnResult, ValueOutOfRange
from purse.protocol import (
    AID,
    BLOCK_CMD,
    CASH_OUT_CMD,
    CLA_ISO,
    CLA_PURSE,
    CMD_MAC_TAG,
    CREDIT_CMD,
    CRYPTOGRAM_TAG,
    DEBIT_CMD,
    ID_FILE,
    MAC_SIZE,
    OPEN_SESSION_CMD,
    OPEN_SESSION_RESP,
    RESP_MAC_TAG,
    SELECT_RESP,
    TXN_RESP,
    UNDEBIT_CMD,
    CardState,
    FileId,
    Ins,
    KeyRef,
)
from purse.records import RECORD_SIZE, PointsSlot, TransactionRecord, bcd_to_number, number_to_bcd
from purse.sam import SessionCrypto, SoftwareSam
from purse.transport import TRAFFIC, Transport, traced

log = logging.getLogger(__name__)


def _pack(layout: struct.Struct, *values: object) -> bytes:
    try:
        return layout.pack(*values)
    except struct.error:
        raise ValueOutOfRange(f"a value does not fit the command's fields: {values[:3]}") from None


__all__ = ["PurseSession", "CardInfo", "OpenedSession", "TxnResult", "CardNotGenuine", "ValueOutOfRange"]


class PurseSession:
    """The purse application on one card, one verb per card command (docs/protocol.md).

    Builds each APDU, MACs it through the SAM's session keys and checks the card's answer
    (cryptogram, response MAC, sizes), so terminals and personalization never handle bytes.
    A verb returns the card's answer as values and raises the status word's domain error
    (``purse.apdu.PurseError`` subclasses such as ``InsufficientFunds``), ``CardNotGenuine``
    for an answer that does not verify, ``ValueOutOfRange`` for an argument the wire cannot
    carry, and ``CardRemoved`` when the card leaves the field. ``select`` comes first; the
    secured verbs need ``open`` with the right key.
    """
    record_flags: int = 0  # the reference card certifies its records itself: no profile flag

    def __init__(self, transport: Transport, sam: SoftwareSam) -> None:
        self.transport = transport
        self.sam = sam
        self.info: CardInfo | None = None
        self._crypto: SessionCrypto | None = None
        self._seq = 0
        self._card_random = b""

    # -- plumbing ------------------------------------------------------------------------
    def _send(self, apdu: CommandApdu) -> bytes:
        raw = apdu.to_bytes()
        tracing = log.isEnabledFor(TRAFFIC)  # hex-encoding every APDU costs more than MACing it
        if tracing:
            log.log(TRAFFIC, "> %s", traced(raw))
        answer = self.transport.transmit(raw)
        if tracing:
            log.log(TRAFFIC, "< %s", answer.hex())
        try:
            response = ResponseApdu.parse(answer)
        except ValueError:
            raise CardNotGenuine("the card's answer has no status word") from None
        if response.sw != 0x9000:
            self._crypto = None if response.sw == 0x6982 else self._crypto
            raise_for_status(response.sw, response.data)
        return response.data

    def _secured(self, ins: Ins, body: bytes, p1: int = 0, p2: int = 0) -> bytes:
        if self._crypto is None:
            raise RuntimeError("no open session")
        self._seq += 1
        header = bytes((CLA_PURSE, ins, p1, p2))
        mac = self._crypto.mac.mac(CMD_MAC_TAG + self._seq.to_bytes(2, "big") + header + body)
        data = self._send(CommandApdu(CLA_PURSE, ins, p1, p2, body + mac, 0))
        payload, received = data[:-MAC_SIZE], data[-MAC_SIZE:]
        expected = self._crypto.mac.mac(RESP_MAC_TAG + self._seq.to_bytes(2, "big") + bytes((ins,)) + payload)
        if len(data) < MAC_SIZE or not crypto.macs_equal(expected, received):
            self._crypto = None
            raise CardNotGenuine("the card's response MAC is wrong")
        return payload

    # -- commands ------------------------------------------------------------------------
    def select(self) -> CardInfo:
        data = self._send(CommandApdu(CLA_ISO, Ins.SELECT, 0x04, 0x00, AID, 0))
        if len(data) != SELECT_RESP.size:
            raise CardNotGenuine("SELECT answer has the wrong size")
        f = SELECT_RESP.unpack(data)
        self._crypto = None
        try:
            self.info = CardInfo(CardState(f[0]), f[1], bcd_to_number(f[2]), *f[3:])
        except ValueError:
            raise CardNotGenuine("SELECT answer holds an unknown state or a card number that is not BCD") from None
        return self.info

    def open(self, ref: KeyRef, terminal_id: int, program_id: int = 0,
             transport_key: bytes | None = None) -> OpenedSession:
        """OPEN SESSION and check the card cryptogram: after this the card is genuine."""
        info = self.info or self.select()
        terminal_random = os.urandom(8)
        cmd = _pack(OPEN_SESSION_CMD, terminal_id, program_id, terminal_random)
        data = self._send(CommandApdu(CLA_PURSE, Ins.OPEN_SESSION, ref, 0, cmd, 0))
        if len(data) != OPEN_SESSION_RESP.size:
            raise CardNotGenuine("OPEN SESSION answer has the wrong size")
        card_random, counter, balance, slot, cryptogram = OPEN_SESSION_RESP.unpack(data)
        if transport_key is not None:
            session = self.sam.transport_session(transport_key, terminal_random, card_random)
        else:
            session = self.sam.open_session(ref, info.key_version, info.uid, terminal_random, card_random)
        if not crypto.macs_equal(session.mac.mac(CRYPTOGRAM_TAG + cmd + data[:-MAC_SIZE]), cryptogram):
            raise CardNotGenuine(f"card {info.number} failed authentication: not issued with these keys")
        self._crypto, self._seq, self._card_random = session, 0, card_random
        return OpenedSession(counter, balance, PointsSlot.from_bytes(slot))

    def _txn(self, payload: bytes) -> TxnResult:
        if len(payload) != TXN_RESP.size:
            raise CardNotGenuine(f"a transaction answer is {TXN_RESP.size} bytes, not {len(payload)}")
        return TxnResult(*TXN_RESP.unpack(payload))

    def debit(self, amount: int, when: int, terminal_seq: int, *, earned: int = 0, redeemed: int = 0,
              prizes: int = 0, slot: PointsSlot | None = None) -> TxnResult:
        slot_bytes = slot.to_bytes() if slot is not None else bytes(32)
        body = _pack(DEBIT_CMD, amount, when, terminal_seq, earned, redeemed, prizes, slot_bytes)
        return self._txn(self._secured(Ins.DEBIT, body))

    def credit(self, amount: int, when: int, terminal_seq: int) -> TxnResult:
        return self._txn(self._secured(Ins.CREDIT, _pack(CREDIT_CMD, amount, when, terminal_seq)))

    def undebit(self, debit_counter: int, when: int, terminal_seq: int) -> TxnResult:
        return self._txn(self._secured(Ins.UNDEBIT, _pack(UNDEBIT_CMD, debit_counter, when, terminal_seq)))

    def block(self, when: int, terminal_seq: int) -> TxnResult:
        return self._txn(self._secured(Ins.BLOCK, _pack(BLOCK_CMD, when, terminal_seq)))

    def cash_out(self, amount: int, when: int, terminal_seq: int) -> TxnResult:
        """CASH OUT under the CREDIT key: ``amount`` is the whole balance; the card is RETURNED after it."""
        return self._txn(self._secured(Ins.CASH_OUT, _pack(CASH_OUT_CMD, amount, when, terminal_seq)))

    def unblock(self) -> None:
        self._secured(Ins.UNBLOCK, b"")

    def read_log(self, index: int = 0, count: int = 1) -> list[TransactionRecord]:
        """Records newest first; READ LOG needs no session (certificates are not secret)."""
        data = self._send(CommandApdu(CLA_PURSE, Ins.READ_LOG, index, count, b"", 0))
        if len(data) != count * RECORD_SIZE:
            raise CardNotGenuine(f"READ LOG answered {len(data)} bytes for {count} records")
        try:
            return [TransactionRecord.from_bytes(data[i : i + RECORD_SIZE]) for i in range(0, len(data), RECORD_SIZE)]
        except ValueError as e:
            raise CardNotGenuine(f"the card's log holds a malformed record ({e})") from None

    def read_whole_log(self) -> list[TransactionRecord]:
        records: list[TransactionRecord] = []
        while True:
            try:
                records += self.read_log(len(records), 1)
            except ApduError:
                return records

    def written_by(self, record: TransactionRecord) -> None:
        """The reference card's certificate covers the record alone: nothing else to keep."""
        return None

    def _pin_block(self, pin: str) -> bytes:
        """ISO 9564 format 2 PIN block, then the card random, encrypted under the session."""
        if not pin.isdigit() or not 4 <= len(pin) <= 12:
            raise ValueOutOfRange("a PIN is 4 to 12 digits")
        block = bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))
        assert self._crypto is not None
        return crypto.encrypt_block(self._crypto.enc_key, block + self._card_random)

    def verify_pin(self, pin: str) -> None:
        if self._crypto is None:
            raise RuntimeError("no open session")
        self._secured(Ins.VERIFY_PIN, self._pin_block(pin))

    def set_pin(self, pin: str) -> None:
        if self._crypto is None:
            raise RuntimeError("no open session")
        self._secured(Ins.SET_PIN, self._pin_block(pin))

    # -- personalization -------------------------------------------------------------------
    def put_key(self, ref: KeyRef, version: int, key: bytes) -> None:
        assert self._crypto is not None
        self._secured(Ins.PUT_KEY, crypto.encrypt_block(self._crypto.enc_key, key), ref, version)

    def write_id(self, number: str, issuer_id: int, expiry: int, currency: int, max_balance: int) -> None:
        self._secured(Ins.WRITE_FILE, ID_FILE.pack(number_to_bcd(number), issuer_id, expiry, currency, max_balance),
                      FileId.ID, 0)

    def write_points(self, index: int, slot: PointsSlot) -> None:
        self._secured(Ins.WRITE_FILE, slot.to_bytes(), FileId.POINTS, index)

    def lock(self) -> None:
        self._secured(Ins.LOCK, b"")
        self._crypto = None

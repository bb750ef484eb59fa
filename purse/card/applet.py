"""The purse card application: the reference applet behind every transport.

It answers APDUs exactly as docs/protocol.md says a card must, over persistent memory
with atomic commits (``purse.card.storage``). Secrets never leave it: no command reads a
key back, and every state change that touches money is MACed by a session key that
only a holder of the right master key can derive.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from purse import crypto
from purse.apdu import (
    SW,
    WRONG_PIN_MASK,
    AlreadyPersonalized,
    ApduError,
    BalanceLimitExceeded,
    CardBlocked,
    CardExpired,
    CardReturned,
    CommandApdu,
    ConditionsNotSatisfied,
    FileNotFound,
    InsufficientFunds,
    InsufficientPoints,
    MalformedApdu,
    NothingToCancel,
    NotPersonalized,
    PinBlocked,
    PinRequired,
    PurseError,
    SecurityStatusNotSatisfied,
)
from purse.card import layout as L
from purse.card.storage import CardTorn, FileStorage, MemoryStorage, Storage
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
    DEFAULT_SYSTEM_IDENTIFIER,
    DEFAULT_TRANSPORT_KEY,
    ID_FILE,
    LOG_RECORDS,
    MAC_SIZE,
    OPEN_SESSION_CMD,
    OPEN_SESSION_RESP,
    PIN_TRIES,
    POINTS_SLOT_SIZE,
    POINTS_SLOTS,
    RESP_MAC_TAG,
    SELECT_RESP,
    TXN_RESP,
    UNDEBIT_CMD,
    CardState,
    FileId,
    Ins,
    KeyRef,
    RecordType,
)
from purse.records import CERTIFIED_SIZE, RECORD, RECORD_SIZE, SLOT_POINTS, TransactionRecord

log = logging.getLogger(__name__)
ATR_HISTORICAL = b"SMARTPURSE"


def _make_atr() -> bytes:
    # TS=3B, T0=8A (TD1 follows, 10 historical bytes), TD1=80 (TD2 follows, T=0),
    # TD2=01 (T=1), historical bytes, TCK = XOR of T0..last historical byte.
    body = bytes([0x8A, 0x80, 0x01]) + ATR_HISTORICAL
    tck = 0
    for b in body:
        tck ^= b
    return bytes([0x3B]) + body + bytes([tck])


ATR = _make_atr()
_NO_CERTIFICATE = bytes(MAC_SIZE)


class WrongData(PurseError):
    default_sw = SW.WRONG_DATA
    text = "incorrect data in the command"


class WrongLength(PurseError):
    default_sw = SW.WRONG_LENGTH
    text = "wrong length"


class WrongP1P2(PurseError):
    default_sw = SW.WRONG_P1P2
    text = "incorrect P1 or P2"


class NotEnoughMemory(PurseError):
    default_sw = SW.NOT_ENOUGH_MEMORY
    text = "no free points slot on the card"


class _Session:
    """RAM state of one open session; lost at power-off, as on a chip."""

    __slots__ = ("key_ref", "terminal_id", "program_id", "card_random", "mac", "_key", "_terminal_random",
                 "_enc_key", "seq", "pin_verified")

    def __init__(self, key_ref: KeyRef, terminal_id: int, program_id: int, card_random: bytes,
                 key: _Key, terminal_random: bytes) -> None:
        self.key_ref, self.terminal_id, self.program_id = key_ref, terminal_id, program_id
        self.card_random, self._key, self._terminal_random = card_random, key, terminal_random
        self.mac = crypto.PrekeyedMac(crypto.session_mac_key(key.prekeyed, terminal_random, card_random))
        self._enc_key: bytes | None = None
        self.seq = 0
        self.pin_verified = False

    @property
    def enc_key(self) -> bytes:
        """Derived on first use: only PIN blocks and PUT KEY need it, a debit never does."""
        if self._enc_key is None:
            self._enc_key = crypto.session_enc_key(self._key.prekeyed, self._terminal_random, self.card_random)
        return self._enc_key


@dataclass
class _Key:
    version: int
    value: bytes
    mac: crypto.PrekeyedMac | None = field(default=None, repr=False)

    @property
    def prekeyed(self) -> crypto.PrekeyedMac:
        """The key's CMAC context, keyed once per power-up (AES key schedules cost more than MACs)."""
        if self.mac is None:
            self.mac = crypto.PrekeyedMac(self.value)
        return self.mac


class _Certified:
    """A logged record's bytes and its certificate (docs/protocol.md, "Transaction record")."""

    __slots__ = ("raw", "certificate")

    def __init__(self, raw: bytes, certificate: bytes) -> None:
        self.raw, self.certificate = raw, certificate


class PurseApplet:
    """One card: its persistent files in ``storage`` and its RAM state (session)."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        storage.recover()
        self._load()
        self._selected = False
        self._session: _Session | None = None

    # -- persistent state -------------------------------------------------------------
    def _load(self) -> None:
        s = self.storage
        (self.state, self.uid, self.number_bcd, self.issuer_id, self.expiry, self.currency,
         self.max_balance, self.key_version) = L.IDENT.unpack(s.read(L.IDENT_AT, L.IDENT.size))
        self.keys: dict[int, _Key] = {}
        for ref in range(L.KEY_COUNT):
            present, version, value = L.KEY.unpack(s.read(L.KEYS_AT + ref * L.KEY.size, L.KEY.size))
            if present:
                self.keys[ref] = _Key(version, value)
        self.pin_block, self.pin_tries, self.pin_set = L.PIN.unpack(s.read(L.PIN_AT, L.PIN.size))
        self.balance, self.counter, self.last_time = L.PURSE.unpack(s.read(L.PURSE_AT, L.PURSE.size))
        self.slots = [
            s.read(L.POINTS_AT + i * POINTS_SLOT_SIZE, POINTS_SLOT_SIZE) for i in range(POINTS_SLOTS)
        ]
        self.undo_index, self.undo_slot, self.undo_counter = L.UNDO.unpack(s.read(L.UNDO_AT, L.UNDO.size))
        self.log_next, self.log_count = L.LOG_HEAD.unpack(s.read(L.LOG_HEAD_AT, L.LOG_HEAD.size))

    def _ident_bytes(self) -> bytes:
        return L.IDENT.pack(self.state, self.uid, self.number_bcd, self.issuer_id, self.expiry,
                            self.currency, self.max_balance, self.key_version)

    @classmethod
    def manufacture(cls, uid: bytes | None = None, transport_key: bytes = DEFAULT_TRANSPORT_KEY) -> MemoryStorage:
        """A blank chip as it leaves the factory: a UID and a transport key, nothing else."""
        uid = uid if uid is not None else os.urandom(7)
        if len(uid) != 7:
            raise ValueError("a UID has 7 bytes")
        mem = MemoryStorage(L.APP_MEMORY, L.JOURNAL)
        mem.commit([
            (L.IDENT_AT, L.IDENT.pack(CardState.BLANK, uid, bytes(8), 0, 0, 0, 0, 0)),
            (L.KEYS_AT, L.KEY.pack(1, 0, transport_key)),
            (L.UNDO_AT, L.UNDO.pack(0xFF, bytes(32), 0)),
        ])
        mem.writes = 0
        return mem

    @classmethod
    def open_image(cls, path: Path, *, durable: bool = True) -> PurseApplet:
        return cls(FileStorage(Path(path), L.APP_MEMORY, L.JOURNAL, durable=durable))

    @classmethod
    def from_image_bytes(cls, image: bytes) -> PurseApplet:
        return cls(MemoryStorage(L.APP_MEMORY, L.JOURNAL, image))

    # -- the contactless field ----------------------------------------------------------
    def power_on(self) -> bytes:
        """Reset: RAM state (selection, session) is gone, persistent state stays."""
        self._selected = False
        self._session = None
        return ATR

    def process(self, raw: bytes) -> bytes:
        """One APDU in, one response out. ``CardTorn`` propagates: the card lost power."""
        try:
            apdu = CommandApdu.parse(raw)
        except MalformedApdu:
            return SW.WRONG_LENGTH.to_bytes(2, "big")
        try:
            data = self._dispatch(apdu)
            return data + b"\x90\x00"
        except ApduError as e:
            return e.sw.to_bytes(2, "big")
        except (struct.error, ValueError):
            return SW.WRONG_DATA.to_bytes(2, "big")
        except CardTorn:
            raise
        except Exception:  # a card answers every command; a fault is 6F00, never silence
            log.exception("applet fault on %s", raw[:4].hex())
            self._session = None
            return SW.NO_PRECISE_DIAGNOSIS.to_bytes(2, "big")

    def _dispatch(self, apdu: CommandApdu) -> bytes:
        if apdu.cla == CLA_ISO:
            if apdu.ins != Ins.SELECT:
                raise ApduError(SW.INS_NOT_SUPPORTED)
            return self._select(apdu)
        if apdu.cla != CLA_PURSE:
            raise ApduError(SW.CLA_NOT_SUPPORTED)
        if not self._selected:
            raise ConditionsNotSatisfied()
        handler = self._handlers.get(apdu.ins)
        if handler is None:
            raise ApduError(SW.INS_NOT_SUPPORTED)
        return handler(self, apdu)

    # -- unsecured commands -------------------------------------------------------------
    def _select(self, apdu: CommandApdu) -> bytes:
        self._session = None
        if apdu.p1 != 0x04 or apdu.p2 != 0x00:
            raise WrongP1P2()
        if apdu.data != AID:
            self._selected = False
            raise FileNotFound()
        self._selected = True
        return SELECT_RESP.pack(self.state, self.uid, self.number_bcd, self.issuer_id, self.key_version,
                                self.currency, self.balance, self.max_balance, self.counter, self.expiry)

    def _read_log(self, apdu: CommandApdu) -> bytes:
        index, count = apdu.p1, apdu.p2
        if not 1 <= count <= 3:
            raise WrongP1P2()
        if index + count > self.log_count:
            raise ApduError(SW.RECORD_NOT_FOUND)
        out = []
        for i in range(index, index + count):
            pos = (self.log_next - 1 - i) % LOG_RECORDS
            out.append(self.storage.read(L.LOG_AT + pos * RECORD_SIZE, RECORD_SIZE))
        return b"".join(out)

    # -- session -----------------------------------------------------------------------
    def _open_session(self, apdu: CommandApdu) -> bytes:
        self._session = None
        try:
            ref = KeyRef(apdu.p1)
        except ValueError:
            raise WrongP1P2() from None
        if ref == KeyRef.TXN or apdu.p2 != 0:
            raise WrongP1P2()
        if len(apdu.data) != OPEN_SESSION_CMD.size:
            raise WrongLength()
        terminal_id, program_id, terminal_random = OPEN_SESSION_CMD.unpack(apdu.data)
        if ref == KeyRef.TRANSPORT:
            if self.state != CardState.BLANK:
                raise AlreadyPersonalized()
        elif self.state == CardState.BLANK:
            raise NotPersonalized()
        elif self.state == CardState.BLOCKED and ref != KeyRef.ADMIN:
            raise CardBlocked()
        elif self.state == CardState.RETURNED and ref != KeyRef.ADMIN:
            raise CardReturned()
        key = self.keys.get(ref)
        if key is None:
            raise SecurityStatusNotSatisfied()
        slot = bytes(POINTS_SLOT_SIZE)
        if ref == KeyRef.DEBIT and program_id:
            index = self._slot_index(program_id)
            if index is not None:
                slot = self.slots[index]
        card_random = os.urandom(8)
        session = _Session(ref, terminal_id, program_id, card_random, key, terminal_random)
        head = OPEN_SESSION_RESP.pack(card_random, self.counter, self.balance, slot, bytes(8))[:-MAC_SIZE]
        cryptogram = session.mac.mac(CRYPTOGRAM_TAG + apdu.data + head)
        self._session = session
        return head + cryptogram

    def _secured(self, apdu: CommandApdu, *allowed: KeyRef) -> tuple[_Session, bytes]:
        """Check the command MAC; a bad MAC ends the session (no MAC oracle)."""
        session = self._session
        if session is None or session.key_ref not in allowed:
            raise SecurityStatusNotSatisfied()
        if len(apdu.data) < MAC_SIZE:
            raise WrongLength()
        body, received = apdu.data[:-MAC_SIZE], apdu.data[-MAC_SIZE:]
        seq = session.seq + 1
        if seq > 0xFFFF:  # the 2-byte sequence is spent: a fresh session is needed
            self._session = None
            raise SecurityStatusNotSatisfied()
        expected = session.mac.mac(
            CMD_MAC_TAG + seq.to_bytes(2, "big") + bytes((apdu.cla, apdu.ins, apdu.p1, apdu.p2)) + body
        )
        if not crypto.macs_equal(expected, received):
            self._session = None
            raise SecurityStatusNotSatisfied()
        session.seq = seq
        return session, body

    def _respond(self, session: _Session, ins: int, body: bytes) -> bytes:
        return body + session.mac.mac(RESP_MAC_TAG + session.seq.to_bytes(2, "big") + bytes((ins,)) + body)

    # -- money -------------------------------------------------------------------------
    def _check_usable(self, when: int) -> None:
        if self.state == CardState.BLOCKED:
            raise CardBlocked()
        if self.state == CardState.RETURNED:
            raise CardReturned()
        if self.state != CardState.PERSONALIZED:
            raise NotPersonalized()
        if self.expiry and when > self.expiry:
            raise CardExpired()

    def _slot_index(self, program_id: int) -> int | None:
        for i, slot in enumerate(self.slots):
            if int.from_bytes(slot[:2], "big") == program_id:
                return i
        return None

    def _next_counter(self) -> int:
        if self.counter >= 0xFFFFFFFF:
            raise ConditionsNotSatisfied()
        return self.counter + 1

    def _record(self, kind: RecordType, counter: int, amount: int, balance: int, session: _Session,
                terminal_seq: int, when: int, program_id: int = 0, points_before: int = 0,
                points_after: int = 0, earned: int = 0, redeemed: int = 0, prizes: int = 0,
                tier: int = 0) -> _Certified:
        """The record of this transaction, certified under the card's TXN key.

        Packed straight into the layout of ``purse.records.RECORD`` (the same bytes
        ``TransactionRecord.to_bytes`` gives; tests compare them), flags 0.
        """
        certified = RECORD.pack(
            kind, self.key_version, self.uid, self.number_bcd, counter, amount, balance, self.currency,
            program_id, points_before, points_after, earned, redeemed, prizes, tier, session.terminal_id,
            terminal_seq, when, 0, _NO_CERTIFICATE,
        )[:CERTIFIED_SIZE]
        certificate = self.keys[KeyRef.TXN].prekeyed.mac(certified)
        return _Certified(certified + certificate, certificate)

    def _log_writes(self, record: _Certified) -> list[tuple[int, bytes]]:
        pos = self.log_next
        return [
            (L.LOG_AT + pos * RECORD_SIZE, record.raw),
            (L.LOG_HEAD_AT, L.LOG_HEAD.pack((pos + 1) % LOG_RECORDS, min(self.log_count + 1, LOG_RECORDS))),
        ]

    def _after_log(self) -> None:
        self.log_next = (self.log_next + 1) % LOG_RECORDS
        self.log_count = min(self.log_count + 1, LOG_RECORDS)

    def _debit(self, apdu: CommandApdu) -> bytes:
        session, body = self._secured(apdu, KeyRef.DEBIT)
        if len(body) != DEBIT_CMD.size:
            raise WrongLength()
        amount, when, terminal_seq, earned, redeemed, prizes, new_slot = DEBIT_CMD.unpack(body)
        self._check_usable(when)
        if amount > self.balance:
            raise InsufficientFunds()
        program_id = session.program_id
        index = None
        before = after = 0
        tier = 0
        if program_id:
            if int.from_bytes(new_slot[:2], "big") != program_id or earned < 0 or redeemed < 0:
                raise WrongData()
            index = self._slot_index(program_id)
            if index is None:
                index = self._slot_index(0)
                if index is None:
                    raise NotEnoughMemory()
            old_slot = self.slots[index]
            before = int.from_bytes(old_slot[SLOT_POINTS], "big")
            after = int.from_bytes(new_slot[SLOT_POINTS], "big")
            tier = new_slot[6]
            if redeemed:
                if not session.pin_verified:
                    raise PinRequired()
                if redeemed > before:
                    raise InsufficientPoints()
            if after > before + earned - redeemed:
                raise WrongData()
        elif earned or redeemed or prizes or any(new_slot):
            raise WrongData()
        counter = self._next_counter()
        balance = self.balance - amount
        record = self._record(RecordType.PURCHASE, counter, amount, balance, session, terminal_seq, when,
                              program_id, before, after, earned, redeemed, prizes, tier)
        writes = [(L.PURSE_AT, L.PURSE.pack(balance, counter, when))]
        if index is not None:
            writes.append((L.POINTS_AT + index * POINTS_SLOT_SIZE, new_slot))
            writes.append((L.UNDO_AT, L.UNDO.pack(index, self.slots[index], counter)))
        else:
            writes.append((L.UNDO_AT, L.UNDO.pack(0xFE, bytes(32), counter)))
        writes += self._log_writes(record)
        self.storage.commit(writes)
        self.balance, self.counter, self.last_time = balance, counter, when
        if index is not None:
            self.undo_index, self.undo_slot = index, self.slots[index]
            self.slots[index] = new_slot
        else:
            self.undo_index, self.undo_slot = 0xFE, bytes(32)
        self.undo_counter = counter
        self._after_log()
        return self._respond(session, apdu.ins, TXN_RESP.pack(balance, counter, record.certificate))

    def _last_record(self) -> TransactionRecord | None:
        if not self.log_count:
            return None
        pos = (self.log_next - 1) % LOG_RECORDS
        return TransactionRecord.from_bytes(self.storage.read(L.LOG_AT + pos * RECORD_SIZE, RECORD_SIZE))

    def _undebit(self, apdu: CommandApdu) -> bytes:
        session, body = self._secured(apdu, KeyRef.DEBIT)
        if len(body) != UNDEBIT_CMD.size:
            raise WrongLength()
        debit_counter, when, terminal_seq = UNDEBIT_CMD.unpack(body)
        self._check_usable(0)
        last = self._last_record()
        if (last is None or last.record_type != RecordType.PURCHASE or last.counter != debit_counter
                or last.terminal_id != session.terminal_id or self.undo_counter != debit_counter
                or self.undo_index == 0xFF):
            raise NothingToCancel()
        counter = self._next_counter()
        balance = self.balance + last.amount
        writes = [(L.PURSE_AT, L.PURSE.pack(balance, counter, when))]
        restored_after = 0
        before = 0
        if self.undo_index < POINTS_SLOTS:
            before = int.from_bytes(self.slots[self.undo_index][SLOT_POINTS], "big")
            restored_after = int.from_bytes(self.undo_slot[SLOT_POINTS], "big")
            writes.append((L.POINTS_AT + self.undo_index * POINTS_SLOT_SIZE, self.undo_slot))
        record = self._record(RecordType.CANCEL, counter, last.amount, balance, session, terminal_seq, when,
                              last.program_id, before, restored_after, -last.points_earned,
                              -last.points_redeemed, 0, self.undo_slot[6] if self.undo_index < POINTS_SLOTS else 0)
        writes.append((L.UNDO_AT, L.UNDO.pack(0xFF, bytes(32), 0)))
        writes += self._log_writes(record)
        self.storage.commit(writes)
        if self.undo_index < POINTS_SLOTS:
            self.slots[self.undo_index] = self.undo_slot
        self.balance, self.counter, self.last_time = balance, counter, when
        self.undo_index, self.undo_slot, self.undo_counter = 0xFF, bytes(32), 0
        self._after_log()
        return self._respond(session, apdu.ins, TXN_RESP.pack(balance, counter, record.certificate))

    def _credit(self, apdu: CommandApdu) -> bytes:
        session, body = self._secured(apdu, KeyRef.CREDIT)
        if len(body) != CREDIT_CMD.size:
            raise WrongLength()
        amount, when, terminal_seq = CREDIT_CMD.unpack(body)
        self._check_usable(when)
        if amount == 0:
            raise WrongData()
        if self.balance + amount > self.max_balance:
            raise BalanceLimitExceeded()
        counter = self._next_counter()
        balance = self.balance + amount
        record = self._record(RecordType.LOAD, counter, amount, balance, session, terminal_seq, when)
        writes = [(L.PURSE_AT, L.PURSE.pack(balance, counter, when)), (L.UNDO_AT, L.UNDO.pack(0xFF, bytes(32), 0))]
        writes += self._log_writes(record)
        self.storage.commit(writes)
        self.balance, self.counter, self.last_time = balance, counter, when
        self.undo_index, self.undo_slot, self.undo_counter = 0xFF, bytes(32), 0
        self._after_log()
        return self._respond(session, apdu.ins, TXN_RESP.pack(balance, counter, record.certificate))

    def _cash_out(self, apdu: CommandApdu) -> bytes:
        """The desk pays the whole balance out at card return: purse to zero, state RETURNED and the
        record, in one commit. ``amount`` must be the balance, so the record says what the desk paid."""
        session, body = self._secured(apdu, KeyRef.CREDIT)
        if len(body) != CASH_OUT_CMD.size:
            raise WrongLength()
        amount, when, terminal_seq = CASH_OUT_CMD.unpack(body)
        self._check_usable(0)  # an expired card is returned too: it is when its money is paid out
        if amount != self.balance:
            raise WrongData()
        return self._change_state(session, apdu.ins, CardState.RETURNED, RecordType.CASH_OUT, amount, 0,
                                  terminal_seq, when)

    def _block(self, apdu: CommandApdu) -> bytes:
        session, body = self._secured(apdu, KeyRef.DEBIT, KeyRef.CREDIT, KeyRef.ADMIN)
        if len(body) != BLOCK_CMD.size:
            raise WrongLength()
        when, terminal_seq = BLOCK_CMD.unpack(body)
        self._check_usable(0)  # a blocked card is not blocked twice; an expired one is blocked all the same
        return self._change_state(session, apdu.ins, CardState.BLOCKED, RecordType.BLOCK, 0, self.balance,
                                  terminal_seq, when)

    def _change_state(self, session: _Session, ins: int, state: CardState, kind: RecordType, amount: int,
                      balance: int, terminal_seq: int, when: int) -> bytes:
        """Enter ``state`` with the purse at ``balance`` and log the certified record, in one commit."""
        counter = self._next_counter()
        before = self.state
        self.state = state
        record = self._record(kind, counter, amount, balance, session, terminal_seq, when)
        writes = [(L.IDENT_AT, self._ident_bytes()), (L.PURSE_AT, L.PURSE.pack(balance, counter, when)),
                  (L.UNDO_AT, L.UNDO.pack(0xFF, bytes(32), 0))]
        writes += self._log_writes(record)
        try:
            self.storage.commit(writes)
        except BaseException:
            self.state = before
            raise
        self.balance, self.counter, self.last_time = balance, counter, when
        self.undo_index, self.undo_slot, self.undo_counter = 0xFF, bytes(32), 0
        self._after_log()
        return self._respond(session, ins, TXN_RESP.pack(balance, counter, record.certificate))

    def _unblock(self, apdu: CommandApdu) -> bytes:
        session, body = self._secured(apdu, KeyRef.ADMIN)
        if body:
            raise WrongLength()
        if self.state != CardState.BLOCKED:
            raise ConditionsNotSatisfied()
        self.state = CardState.PERSONALIZED
        try:
            self.storage.commit([(L.IDENT_AT, self._ident_bytes())])
        except BaseException:
            self.state = CardState.BLOCKED
            raise
        return self._respond(session, apdu.ins, b"")

    # -- PIN ---------------------------------------------------------------------------
    def _pin_plain(self, session: _Session, body: bytes) -> bytes:
        """Decrypt a PIN block: 8 bytes ISO 9564 format 2, then the card random (freshness)."""
        if len(body) != 16:
            raise WrongLength()
        plain = crypto.decrypt_block(session.enc_key, body)
        if not crypto.macs_equal(plain[8:], session.card_random):
            raise WrongData()
        block = plain[:8]
        length = block[0] & 0x0F
        if block[0] >> 4 != 2 or not 4 <= length <= 12:
            raise WrongData()
        return block

    def _verify_pin(self, apdu: CommandApdu) -> bytes:
        session, body = self._secured(apdu, KeyRef.DEBIT, KeyRef.CREDIT, KeyRef.ADMIN)
        block = self._pin_plain(session, body)
        if not self.pin_set:
            raise ConditionsNotSatisfied()
        if self.pin_tries == 0:
            raise PinBlocked()
        # Decrement first, persistently: pulling the card after a wrong guess must not
        # give the guess back (a classic attack on try counters).
        self.storage.commit([(L.PIN_AT, L.PIN.pack(self.pin_block, self.pin_tries - 1, self.pin_set))])
        self.pin_tries -= 1
        if crypto.macs_equal(block, self.pin_block):
            self.storage.commit([(L.PIN_AT, L.PIN.pack(self.pin_block, PIN_TRIES, 1))])
            self.pin_tries = PIN_TRIES
            session.pin_verified = True
            return self._respond(session, apdu.ins, b"")
        raise ApduError(WRONG_PIN_MASK | self.pin_tries)

    def _set_pin(self, apdu: CommandApdu) -> bytes:
        session, body = self._secured(apdu, KeyRef.ADMIN, KeyRef.TRANSPORT)
        block = self._pin_plain(session, body)
        self.storage.commit([(L.PIN_AT, L.PIN.pack(block, PIN_TRIES, 1))])
        self.pin_block, self.pin_tries, self.pin_set = block, PIN_TRIES, 1
        return self._respond(session, apdu.ins, b"")

    # -- personalization -----------------------------------------------------------------
    def _personalizing(self, apdu: CommandApdu) -> tuple[_Session, bytes]:
        session, body = self._secured(apdu, KeyRef.TRANSPORT, KeyRef.ADMIN)
        if self.state != CardState.BLANK:
            raise AlreadyPersonalized()
        return session, body

    def _put_key(self, apdu: CommandApdu) -> bytes:
        session, body = self._personalizing(apdu)
        if apdu.p1 not in (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN):
            raise WrongP1P2()
        if len(body) != 16:
            raise WrongLength()
        key = crypto.decrypt_block(session.enc_key, body)
        self.storage.commit([(L.KEYS_AT + apdu.p1 * L.KEY.size, L.KEY.pack(1, apdu.p2, key))])
        self.keys[apdu.p1] = _Key(apdu.p2, key)
        return self._respond(session, apdu.ins, b"")

    def _write_file(self, apdu: CommandApdu) -> bytes:
        session, body = self._personalizing(apdu)
        if apdu.p1 == FileId.ID and apdu.p2 == 0:
            if len(body) != ID_FILE.size:
                raise WrongLength()
            number, issuer, expiry, currency, max_balance = ID_FILE.unpack(body)
            if not all((b >> 4) < 10 and (b & 0x0F) < 10 for b in number):
                raise WrongData()
            self.number_bcd, self.issuer_id, self.expiry = number, issuer, expiry
            self.currency, self.max_balance = currency, max_balance
            self.storage.commit([(L.IDENT_AT, self._ident_bytes())])
        elif apdu.p1 == FileId.POINTS and apdu.p2 < POINTS_SLOTS:
            if len(body) != POINTS_SLOT_SIZE:
                raise WrongLength()
            self.storage.commit([(L.POINTS_AT + apdu.p2 * POINTS_SLOT_SIZE, body)])
            self.slots[apdu.p2] = body
        else:
            raise WrongP1P2()
        return self._respond(session, apdu.ins, b"")

    def _lock(self, apdu: CommandApdu) -> bytes:
        session, body = self._personalizing(apdu)
        if body:
            raise WrongLength()
        refs = (KeyRef.ADMIN, KeyRef.CREDIT, KeyRef.DEBIT, KeyRef.TXN)
        versions = {self.keys[r].version for r in refs if r in self.keys}
        if any(r not in self.keys for r in refs) or len(versions) != 1 or not any(self.number_bcd):
            raise ConditionsNotSatisfied()
        self.key_version = versions.pop()
        self.state = CardState.PERSONALIZED
        try:
            self.storage.commit([(L.IDENT_AT, self._ident_bytes()),
                                 (L.KEYS_AT + KeyRef.TRANSPORT * L.KEY.size, bytes(L.KEY.size))])
        except BaseException:
            self.state = CardState.BLANK
            raise
        self.keys.pop(KeyRef.TRANSPORT, None)
        response = self._respond(session, apdu.ins, b"")
        self._session = None
        return response

    _handlers: dict[int, Callable[[PurseApplet, CommandApdu], bytes]] = {
        Ins.OPEN_SESSION: _open_session,
        Ins.DEBIT: _debit,
        Ins.CREDIT: _credit,
        Ins.UNDEBIT: _undebit,
        Ins.BLOCK: _block,
        Ins.CASH_OUT: _cash_out,
        Ins.UNBLOCK: _unblock,
        Ins.READ_LOG: _read_log,
        Ins.VERIFY_PIN: _verify_pin,
        Ins.SET_PIN: _set_pin,
        Ins.PUT_KEY: _put_key,
        Ins.WRITE_FILE: _write_file,
        Ins.LOCK: _lock,
    }


__all__ = ["ATR", "PurseApplet", "DEFAULT_SYSTEM_IDENTIFIER"]

"""The purse verbs on a MIFARE DESFire card: what ``PurseSession`` does on the reference card.

On the reference card the card itself builds, certifies and logs each record. A DESFire card
knows values, files and MACs, not purses, so here the host builds the record and the card
commits it: a purchase is ``Debit`` of the value file, ``WriteData`` of the program's points (the
new slot and the one before, for a cancel) and ``WriteRecord`` of the 64 record bytes, then one
``CommitTransaction``. The card answers its Transaction MAC Counter and Value: the counter is the
record's counter, the value its certificate, computed under a key only processing holds.

The rules the reference card enforces on itself (a blocked or expired card, funds, points) are
checked here before anything is written; the card still refuses a debit below zero, a credit
without the load key and a cancel above the last debit. Reads run inside the card's transaction
too (they feed its Transaction MAC Input), so every write verb first aborts what reads left, and
the Transaction MAC covers exactly the writes the back office rebuilds from the record.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from purse.apdu import (
    BalanceLimitExceeded,
    CardBlocked,
    CardExpired,
    CardReturned,
    InsufficientFunds,
    InsufficientPoints,
    NothingToCancel,
    PurseError,
)
from purse.cardsession import CardInfo, CardNotGenuine, OpenedSession, TxnResult
from purse.desfire.commands import DesfireCard
from purse.desfire.ev2 import CommMode, SecureMessagingError
from purse.desfire.profile import (
    AID,
    FILES,
    LOG_RECORD_SIZE,
    POINTS_ENTRY,
    POINTS_PROGRAMS,
    STATE_OFFSET,
    FileNo,
    Identity,
    KeyNo,
    diversification_input,
)
from purse.desfire.status import ApplicationNotFound, AuthenticationFailed, BoundaryError
from purse.errors import SmartpurseError
from purse.protocol import POINTS_SLOT_SIZE, CardState, KeyRef, RecordType
from purse.records import CardWrite, PointsSlot, RecordFlag, TransactionRecord, bcd_to_number
from purse.sam import SoftwareSam
from purse.transport import Transport

__all__ = ["DesfireSession", "PinNotOnDesfire"]

log = logging.getLogger(__name__)
_KEY_FOR = {KeyRef.DEBIT: KeyNo.DEBIT, KeyRef.CREDIT: KeyNo.LOAD, KeyRef.ADMIN: KeyNo.MASTER}
_FULL = CommMode.FULL


class PinNotOnDesfire(SmartpurseError):
    """Points redemption with the holder's PIN: the DESFire profile holds no PIN yet (docs/desfire.md)."""


class DesfireSession:
    """The purse application of docs/desfire.md on one DESFire card; the verbs of ``purse.cardsession``."""

    record_flags: int = RecordFlag.DESFIRE

    def __init__(self, transport: Transport, sam: SoftwareSam) -> None:
        self.card = DesfireCard(transport)
        self.sam = sam
        self.info: CardInfo | None = None
        self._identity: Identity | None = None
        self._tmv = bytes(8)  # the last committed transaction's TMV: the newest log record's certificate
        self._ref: KeyRef | None = None
        self._terminal_id = 0
        self._program_id = 0
        self._balance = 0
        self._points = b""
        self._points_read = 0
        self._reads_pending = False  # reads since the last commit or abort sit in the card's TMI

    # -- presentation ------------------------------------------------------------------------
    def select(self) -> CardInfo:
        """Select the application and read what needs no key: the identity and the TMAC file."""
        try:
            self.card.select_application(AID)
        except ApplicationNotFound:
            raise CardNotGenuine("the DESFire card carries no smartpurse application") from None
        try:
            identity = Identity.from_bytes(self.card.read_data(FileNo.IDENTITY, 0, 0, CommMode.PLAIN))
            tmac = self.card.read_data(FileNo.TMAC, 0, 12, CommMode.PLAIN)
            number = bcd_to_number(identity.number_bcd)
            state = CardState(identity.state)
        except ValueError as e:
            raise CardNotGenuine(f"the DESFire card's identity file is not the profile's ({e})") from None
        self._reads_pending = True
        self._identity, self._tmv = identity, tmac[4:12]
        self.info = CardInfo(state, identity.uid, number, identity.issuer_id, identity.key_version,
                             identity.currency, 0, identity.max_balance, int.from_bytes(tmac[:4], "little"),
                             identity.expiry)
        self._ref = None
        return self.info

    def _key(self, ref: KeyRef, info: CardInfo) -> tuple[KeyNo, bytes]:
        key_no = _KEY_FOR[ref]
        data = diversification_input(info.uid, key_no, self.sam.system_identifier)
        return key_no, self.sam.diversified_key(ref, info.key_version, data)

    def open(self, ref: KeyRef, terminal_id: int, program_id: int = 0) -> OpenedSession:
        """AuthenticateEV2First with the role's key, then the balance and (POS) the program's points."""
        info = self.info or self.select()
        key_no, key = self._key(ref, info)
        try:
            self.card.authenticate(key_no, key)
        except (AuthenticationFailed, SecureMessagingError):
            raise CardNotGenuine(f"card {info.number} failed authentication: not issued with these keys") from None
        self._ref, self._terminal_id, self._program_id = ref, terminal_id, program_id
        self._balance = self.card.get_value(FileNo.PURSE, _FULL)
        self._points_read = 0  # bytes of the points file read in this session, from its start
        self._reads_pending = True
        index = self._slot_index(program_id) if ref == KeyRef.DEBIT and program_id else None
        slot = self._slot(index) if index is not None else PointsSlot()
        return OpenedSession(info.counter, self._balance, slot)

    # -- points ------------------------------------------------------------------------------
    def _load_points(self, upto: int = POINTS_PROGRAMS * POINTS_ENTRY) -> None:
        """The points file's first ``upto`` bytes, read once per session (a sale under a program, a cancel,
        a recovery need them; a plain sale does not)."""
        if self._points_read < upto:
            start = self._points_read
            self._points = self._points[:start] + self.card.read_data(FileNo.POINTS, start, upto - start, _FULL)
            self._points_read = upto
            self._reads_pending = True

    def _slot(self, index: int, previous: bool = False) -> PointsSlot:
        at = index * POINTS_ENTRY + (POINTS_SLOT_SIZE if previous else 0)
        return PointsSlot.from_bytes(self._points[at : at + POINTS_SLOT_SIZE])

    def _slot_index(self, program_id: int) -> int | None:
        """The entry of ``program_id`` (0: a free one). The first entry is read alone first: a card is
        issued into its program there, so most sales read 64 bytes, not the whole file."""
        self._load_points(POINTS_ENTRY)
        if self._slot(0).program_id == program_id:
            return 0
        self._load_points()
        for i in range(1, POINTS_PROGRAMS):
            if self._slot(i).program_id == program_id:
                return i
        return None

    # -- writing --------------------------------------------------------------------------------
    def _usable(self, when: int) -> CardInfo:
        info = self.info
        if info is None or self._ref is None:
            raise RuntimeError("no open session")
        if info.state == CardState.BLOCKED:
            raise CardBlocked()
        if info.state == CardState.RETURNED:
            raise CardReturned()
        if info.expiry and when > info.expiry:
            raise CardExpired()
        return info

    def _begin(self) -> None:
        if self._reads_pending:  # keep reads out of the Transaction MAC: it covers the writes alone
            self.card.abort_transaction()
            self._reads_pending = False

    def _record(self, info: CardInfo, kind: RecordType, amount: int, balance: int, seq: int, when: int,
                program_id: int = 0, before: int = 0, after: int = 0, earned: int = 0, redeemed: int = 0,
                prizes: int = 0, tier: int = 0) -> TransactionRecord:
        return TransactionRecord(kind, info.key_version, info.uid, info.number, info.counter + 1, amount, balance,
                                 info.currency, program_id, before, after, earned, redeemed, prizes, tier,
                                 self._terminal_id, seq, when, int(self.record_flags))

    def _log_and_commit(self, info: CardInfo, record: TransactionRecord,
                        write: tuple[int, bytes] | None = None) -> TxnResult:
        """Append the record and commit: the card's TMC must be the record's counter."""
        self.card.write_record(FileNo.LOG, 0, record.certified_bytes(), FILES[FileNo.LOG].comm)
        committed = self.card.commit_transaction()
        assert committed is not None
        tmc, tmv = committed
        if tmc != record.counter:
            raise CardNotGenuine(f"card {info.number} counted transaction {tmc}, the record says {record.counter}")
        self.info = dataclasses.replace(info, counter=tmc)
        self._tmv = tmv
        written = CardWrite(*write) if write is not None else None
        return TxnResult(record.balance_after, tmc, tmv, dataclasses.replace(record, certificate=tmv), written)

    def _value_transaction(self, info: CardInfo, record: TransactionRecord,
                           value_command: Callable[[int, int, CommMode], None], refused: type[PurseError],
                           write: tuple[int, bytes] | None = None) -> TxnResult:
        """One transaction: the value command of the record's amount, the points ``write`` if any, the
        record, the commit. The card's boundary error (a limit, or a cancel above the last debit) is
        ``refused``."""
        self._begin()
        try:
            value_command(FileNo.PURSE, record.amount, _FULL)
        except BoundaryError:
            raise refused() from None
        if write is not None:
            self.card.write_data(FileNo.POINTS, write[0], write[1], _FULL)
        result = self._log_and_commit(info, record, write)
        self._balance = record.balance_after
        if write is not None:
            self._points = self._points[: write[0]] + write[1] + self._points[write[0] + POINTS_ENTRY :]
        return result

    def debit(self, amount: int, when: int, terminal_seq: int, *, earned: int = 0, redeemed: int = 0,
              prizes: int = 0, slot: PointsSlot | None = None) -> TxnResult:
        info = self._usable(when)
        if self._ref != KeyRef.DEBIT:
            raise RuntimeError("a debit needs a session under the DEBIT key")
        if amount > self._balance:
            raise InsufficientFunds()
        points: dict[str, int] = {}
        write: tuple[int, bytes] | None = None
        if self._program_id:
            if slot is None or slot.program_id != self._program_id or earned < 0 or redeemed < 0:
                raise ValueError("a purchase under a program carries that program's new slot")
            index = self._slot_index(self._program_id)
            if index is None:
                index = self._slot_index(0)
                if index is None:
                    raise SmartpurseError(f"card {info.number} has no free points slot for program "
                                          f"{self._program_id}")
            old = self._slot(index)
            if redeemed > old.points:
                raise InsufficientPoints()
            if slot.points > old.points + earned - redeemed:
                raise ValueError("the new slot holds more points than earned")
            points = dict(program_id=self._program_id, before=old.points, after=slot.points, earned=earned,
                          redeemed=redeemed, prizes=prizes, tier=slot.tier)
            write = (index * POINTS_ENTRY, slot.to_bytes() + old.to_bytes())
        record = self._record(info, RecordType.PURCHASE, amount, self._balance - amount, terminal_seq, when,
                              **points)
        return self._value_transaction(info, record, self.card.debit, InsufficientFunds, write)

    def credit(self, amount: int, when: int, terminal_seq: int) -> TxnResult:
        info = self._usable(when)
        if amount <= 0:
            raise ValueError("a load must be positive")
        if self._balance + amount > info.max_balance:
            raise BalanceLimitExceeded()
        record = self._record(info, RecordType.LOAD, amount, self._balance + amount, terminal_seq, when)
        return self._value_transaction(info, record, self.card.credit, BalanceLimitExceeded)

    def undebit(self, debit_counter: int, when: int, terminal_seq: int) -> TxnResult:
        """Give back this terminal's last purchase (LimitedCredit) and restore the points before it."""
        info = self._usable(0)
        log_ = self.read_log(0, 1) if info.counter else []
        last = log_[0] if log_ else None
        if (last is None or last.record_type != RecordType.PURCHASE or last.counter != debit_counter
                or last.terminal_id != self._terminal_id):
            raise NothingToCancel()
        points: dict[str, int] = {}
        write: tuple[int, bytes] | None = None
        if last.program_id:
            index = self._slot_index(last.program_id)
            if index is None:
                raise NothingToCancel()
            now, before = self._slot(index), self._slot(index, previous=True)
            points = dict(program_id=last.program_id, before=now.points, after=before.points,
                          earned=-last.points_earned, redeemed=-last.points_redeemed, tier=before.tier)
            write = (index * POINTS_ENTRY, before.to_bytes() + before.to_bytes())
        record = self._record(info, RecordType.CANCEL, last.amount, self._balance + last.amount, terminal_seq, when,
                              **points)
        return self._value_transaction(info, record, self.card.limited_credit, NothingToCancel, write)

    def block(self, when: int, terminal_seq: int) -> TxnResult:
        info = self.info
        if info is None or self._ref is None:
            raise RuntimeError("no open session")
        if info.state == CardState.BLOCKED:
            raise CardBlocked()
        if info.state == CardState.RETURNED:
            raise CardReturned()
        record = self._record(info, RecordType.BLOCK, 0, self._balance, terminal_seq, when)
        self._begin()
        return self._set_state(info, record, CardState.BLOCKED)

    def cash_out(self, amount: int, when: int, terminal_seq: int) -> TxnResult:
        """Debit the whole balance, mark the identity RETURNED and log the record: one commit."""
        info = self._usable(0)  # an expired card is returned too
        if self._ref != KeyRef.CREDIT:
            raise RuntimeError("a cash-out needs a session under the CREDIT key")
        if amount != self._balance:
            raise ValueError(f"a cash-out pays the whole balance {self._balance}, not {amount}")
        record = self._record(info, RecordType.CASH_OUT, amount, 0, terminal_seq, when)
        self._begin()
        if amount:
            self.card.debit(FileNo.PURSE, amount, _FULL)
        result = self._set_state(info, record, CardState.RETURNED)
        self._balance = 0
        return result

    def _set_state(self, info: CardInfo, record: TransactionRecord, state: CardState) -> TxnResult:
        """Write the identity's state byte, log ``record`` and commit (the card's state changes with it)."""
        self.card.write_data(FileNo.IDENTITY, STATE_OFFSET, bytes((state,)), FILES[FileNo.IDENTITY].comm)
        result = self._log_and_commit(info, record)
        self.info = dataclasses.replace(self.info or info, state=state)
        return result

    # -- reading --------------------------------------------------------------------------------
    def _records(self, raw: bytes) -> list[TransactionRecord]:
        if len(raw) % LOG_RECORD_SIZE:
            raise CardNotGenuine(f"the card's log answered {len(raw)} bytes, not whole records")
        counter = self.info.counter if self.info is not None else -1
        out = []
        for at in range(len(raw) - LOG_RECORD_SIZE, -1, -LOG_RECORD_SIZE):  # the card answers oldest first
            body = raw[at : at + LOG_RECORD_SIZE]
            try:
                record = TransactionRecord.from_bytes(body + bytes(8))
            except ValueError as e:
                raise CardNotGenuine(f"the card's log holds a malformed record ({e})") from None
            if record.counter == counter:  # the newest transaction's TMV is in the TMAC file
                record = dataclasses.replace(record, certificate=self._tmv)
            out.append(record)
        return out

    def read_log(self, index: int = 0, count: int = 1) -> list[TransactionRecord]:
        """Records newest first; the log is free to read (its certificates are not secret)."""
        self._reads_pending = True
        return self._records(self.card.read_records(FileNo.LOG, index, count, FILES[FileNo.LOG].comm))

    def read_whole_log(self) -> list[TransactionRecord]:
        if self.info is not None and self.info.counter == 0:
            return []  # no transaction committed, no record: the card would answer a boundary error
        self._reads_pending = True
        return self._records(self.card.read_records(FileNo.LOG, 0, 0, FILES[FileNo.LOG].comm))

    def written_by(self, record: TransactionRecord) -> CardWrite | None:
        """The points entry a purchase or cancel wrote, read back from the card: it is still what that
        transaction wrote while the record is the card's newest (later ones may have changed it)."""
        info = self.info
        if (info is None or not record.program_id or record.counter != info.counter
                or record.record_type not in (RecordType.PURCHASE, RecordType.CANCEL)):
            return None
        if self._ref != KeyRef.DEBIT:
            self.open(KeyRef.DEBIT, record.terminal_id, record.program_id)
        index = self._slot_index(record.program_id)
        if index is None:
            return None
        at = index * POINTS_ENTRY
        return CardWrite(at, self._points[at : at + POINTS_ENTRY])

    def verify_pin(self, pin: str) -> None:
        raise PinNotOnDesfire("redeeming points with a PIN is not available on DESFire cards yet: "
                              "sell without redeeming")

"""The terminal library that terminal vendors embed: POS and credit terminals.

A ``Terminal`` talks only to the card and its SAM: offline debit with points, cancel
of the last debit, blocking hotlisted cards, recovery of a debit whose answer was lost,
and batch export. Every command is written to the terminal log before it is sent, so a
card pulled mid-command is resolved at its next presentation: the card's counter and
last log record say whether the command ran; the terminal completes or drops its entry,
never twice (docs/design.md, "Anti-tearing").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from purse.apdu import ApduError, CardBlocked, CardReturned, NothingToCancel
from purse.batch import BatchSummary, export_batch
from purse.cardsession import CardInfo, CardNotGenuine, CardSession, TxnResult, WrongCard
from purse.errors import ExitCode, SmartpurseError
from purse.points import PointsPolicy, PointsUpdate
from purse.profiles import select_card
from purse.protocol import CardState, KeyRef, RecordType
from purse.records import CardWrite, PointsSlot, TransactionRecord
from purse.sam import MissingKey, SoftwareSam
from purse.session import PurseSession
from purse.terminal_log import TerminalLog
from purse.transport import CardRemoved, Transport

__all__ = [
    "Terminal",
    "CreditTerminal",
    "Receipt",
    "ReceiptKind",
    "CardView",
    "TransactionInterrupted",
    "CompletedBefore",
    "CardHotlisted",
]

log = logging.getLogger(__name__)


class TransactionInterrupted(CardRemoved):
    """The card left before answering; present it again to finish or forget the command."""


class CompletedBefore(SmartpurseError):
    """The command asked for had already completed: the card was pulled after it ran, before the answer.

    The terminal found it at this presentation and completed its log with the card's own
    record; ``receipt`` is that transaction's receipt. The new command was not sent, so a
    cashier's or a script's retry never charges twice: to do the same again on purpose, pass
    ``again=True``. ``recovered`` holds every transaction completed at this presentation.
    """

    def __init__(self, receipt: Receipt, recovered: tuple[Receipt, ...]) -> None:
        super().__init__(f"the {receipt.kind} of {receipt.amount} minor units on card {receipt.card_number} "
                         f"completed before the card was pulled (counter {receipt.counter}): not done again")
        self.receipt = receipt
        self.recovered = recovered


class CardHotlisted(SmartpurseError):
    """The card is on the hotlist: the terminal blocked it instead of selling."""

    exit_code = ExitCode.CARD_REFUSED

    def __init__(self, number: str, receipt: Receipt | None) -> None:
        self.receipt = receipt
        super().__init__(f"card {number} is hotlisted: blocked by this terminal")


class ReceiptKind(StrEnum):
    """What a receipt is for: the record type, as receipts, JSON and reports spell it."""

    LOAD = "load"
    PURCHASE = "purchase"
    CANCEL = "cancel"
    BLOCK = "block"
    CASH_OUT = "cash_out"


@dataclass(frozen=True)
class Receipt:
    """The outcome of one card transaction, with the card's certificate."""

    kind: ReceiptKind
    card_number: str
    terminal_id: int
    terminal_seq: int
    counter: int
    time: int
    amount: int
    balance: int
    price: int = 0
    discount: int = 0
    points_value: int = 0
    program_id: int = 0
    points_before: int = 0
    points_after: int = 0
    points_earned: int = 0
    points_redeemed: int = 0
    prizes: int = 0
    prize_text: tuple[str, ...] = ()
    certificate: bytes = b""
    record: TransactionRecord | None = field(default=None, repr=False)
    # Transactions a pulled card had left pending here, completed at this presentation before this one.
    recovered: tuple[Receipt, ...] = ()

    @classmethod
    def from_record(cls, record: TransactionRecord, **extra: object) -> Receipt:
        return cls(
            kind=ReceiptKind(record.record_type.name.lower()), card_number=record.card_number,
            terminal_id=record.terminal_id,
            terminal_seq=record.terminal_seq, counter=record.counter, time=record.time, amount=record.amount,
            balance=record.balance_after, program_id=record.program_id, points_before=record.points_before,
            points_after=record.points_after, points_earned=record.points_earned,
            points_redeemed=record.points_redeemed, prizes=record.prizes, certificate=record.certificate,
            record=record, **extra,  # type: ignore[arg-type]
        )

    def as_dict(self) -> dict[str, object]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("record", "recovered")}
        out["certificate"] = self.certificate.hex()
        out["prize_text"] = list(self.prize_text)
        out["recovered"] = [r.as_dict() for r in self.recovered]
        return out


@dataclass(frozen=True)
class CardView:
    """What a terminal reads from a card: identity, purse, its program's points, the log."""

    info: CardInfo
    balance: int
    counter: int
    points: PointsSlot
    log: list[TransactionRecord]
    recovered: list[Receipt]


def _refuse_unusable(info: CardInfo) -> None:
    """A blocked or returned card takes no transaction (its own refusal, said before a session opens)."""
    if info.state == CardState.BLOCKED:
        raise CardBlocked()
    if info.state == CardState.RETURNED:
        raise CardReturned()


class _CardTerminal:
    """What POS and credit terminals share: presentation, write-ahead log, recovery."""

    key_ref: KeyRef

    def __init__(self, transport: Transport, sam: SoftwareSam, log_store: TerminalLog, *,
                 terminal_id: int, clock: Callable[[], float] = time.time) -> None:
        if not sam.holds(self.key_ref):
            raise MissingKey(f"this terminal's SAM holds no {self.key_ref.name} key")
        log_store.check()  # a damaged log would let a card pay for a sale the terminal cannot record
        self.transport = transport
        self.sam = sam
        self.log = log_store
        self.terminal_id = terminal_id
        self.clock = clock
        self.session: CardSession = PurseSession(transport, sam)

    def _now(self) -> int:
        return int(self.clock())

    def present(self) -> tuple[CardInfo, list[Receipt]]:
        """Power the card up, tell its profile, SELECT it, and resolve any command it left pending here."""
        self.transport.connect()
        self.session, info = select_card(self.transport, self.sam, self.session)
        if info.state == CardState.BLANK:
            raise SmartpurseError("the card is blank: personalize it first")
        return info, self._recover(info)

    def _recover(self, info: CardInfo) -> list[Receipt]:
        recovered: list[Receipt] = []
        for pending in self.log.pending_for(info.number):
            if pending.uid != info.uid:
                continue
            if info.counter < pending.expected_counter:
                self.log.drop(pending.terminal_seq)  # the card never ran it
                log.info("pending %s on %s dropped: not on the card", pending.terminal_seq, info.number)
                continue
            back = info.counter - pending.expected_counter
            try:
                record = self.session.read_log(back, 1)[0]
            except ApduError:
                self.log.mark_unresolvable(pending.terminal_seq)  # beyond the card's cyclic log
                continue
            if (record.counter == pending.expected_counter and record.terminal_id == self.terminal_id
                    and record.terminal_seq == pending.terminal_seq):
                self.log.complete(pending.terminal_seq, record, self.session.written_by(record))
                recovered.append(Receipt.from_record(record))
            else:
                self.log.drop(pending.terminal_seq)
        return recovered

    def _run(self, kind: RecordType, info: CardInfo, expected_counter: int, amount: int,
             command: Callable[[int], tuple[TransactionRecord, CardWrite | None]]) -> TransactionRecord:
        """Write ahead, send, complete: the only path by which a transaction is logged.

        ``command`` returns the card's record and what else the transaction wrote (DESFire points)."""
        seq = self.log.begin(kind, info.number, info.uid, expected_counter, amount)
        try:
            record, written = command(seq)
        except CardRemoved as e:
            raise TransactionInterrupted(
                f"card {info.number} left before answering: present it again to finish ({e})"
            ) from e
        except CardNotGenuine:
            raise  # the answer was not the card's: keep it pending, the next presentation decides
        except ApduError:
            self.log.drop(seq)  # the card refused: nothing happened
            raise
        self.log.complete(seq, record, written)
        return record

    @staticmethod
    def _refuse_repeat(recovered: list[Receipt], kind: ReceiptKind, amount: int | None, again: bool) -> None:
        """A retry of what just completed is refused (``CompletedBefore``) unless ``again``.

        ``amount`` None matches any amount (a cancel cancels the last debit, whatever it was)."""
        if again:
            return
        for receipt in recovered:
            if receipt.kind == kind and (amount is None or receipt.amount == amount):
                raise CompletedBefore(receipt, tuple(recovered))

    def _certified(self, info: CardInfo, kind: RecordType, seq: int, when: int, amount: int,
                   result: TxnResult) -> tuple[TransactionRecord, CardWrite | None]:
        """The record of a transaction without points: the one the card logged (DESFire), else the one
        the reference card's certificate covers, built from its answer."""
        if result.record is not None:
            return result.record, result.written
        return self._record(info, kind, seq, when, result.counter, amount, result.balance, result.certificate), None

    def _record(self, info: CardInfo, kind: RecordType, seq: int, when: int, counter: int, amount: int,
                balance: int, certificate: bytes, **points: int) -> TransactionRecord:
        return TransactionRecord(
            kind, info.key_version, info.uid, info.number, counter, amount, balance, info.currency,
            points.get("program_id", 0), points.get("points_before", 0), points.get("points_after", 0),
            points.get("earned", 0), points.get("redeemed", 0), points.get("prizes", 0), points.get("tier", 0),
            self.terminal_id, seq, when, self.session.record_flags, certificate,
        )


class Terminal(_CardTerminal):
    """A POS terminal, offline: sell with loyalty points, cancel the last sale, block hotlisted cards.

    Its SAM holds the DEBIT masters and this terminal's log key, never a key that could load
    value or forge a certificate. Every command is written ahead to the ``TerminalLog`` and
    completed with the card's certified record, so a card pulled mid-command is resolved at
    its next presentation (finished or forgotten, never twice) and every record reaches a batch.

    Raises, from any verb: ``TransactionInterrupted`` when the card left before answering
    (present it again), ``CompletedBefore`` when the command asked for is the one that card had
    completed before it was pulled (its receipt attached; nothing is sent),
    ``CardNotGenuine`` for a card that is not the issuer's,
    ``CardHotlisted`` (the card was blocked instead), ``CardBlocked``/``CardExpired``,
    ``InsufficientFunds``, ``InsufficientPoints``, ``PinRequired``/``WrongPin``/``PinBlocked``,
    ``NothingToCancel`` (all ``purse.apdu.PurseError``), ``MissingKey`` when the SAM lacks the
    card's key version, and ``TransportError`` when the reader fails. Each is a
    ``SmartpurseError`` with a message meant for the cashier.
    """

    key_ref = KeyRef.DEBIT

    def __init__(self, transport: Transport, sam: SoftwareSam, log_store: TerminalLog, *,
                 terminal_id: int, merchant_id: int, hotlist: Container[str] = frozenset(),
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(transport, sam, log_store, terminal_id=terminal_id, clock=clock)
        self.merchant_id = merchant_id
        self.hotlist = hotlist

    def _present_usable(self) -> tuple[CardInfo, list[Receipt]]:
        info, recovered = self.present()
        _refuse_unusable(info)
        if info.number in self.hotlist:
            receipt = self._block(info)
            raise CardHotlisted(info.number, receipt)
        return info, recovered

    def read_card(self, program_id: int = 0) -> CardView:
        """Number, balance, this program's points and the card's log (newest first)."""
        info, recovered = self.present()
        if info.state in (CardState.BLOCKED, CardState.RETURNED):  # no session: the newest record's balance (DESFire
            log_ = self.session.read_whole_log()  # tells it only to a key; every change of it writes a record)
            return CardView(info, log_[0].balance_after if log_ else info.balance, info.counter, PointsSlot(), log_,
                            recovered)
        opened = self.session.open(KeyRef.DEBIT, self.terminal_id, program_id)
        return CardView(info, opened.balance, opened.counter, opened.slot, self.session.read_whole_log(), recovered)

    def debit(self, price: int, *, points: PointsPolicy | None = None, redeem_points: int = 0,
              pin: str | None = None, again: bool = False) -> Receipt:
        """Sell for ``price`` minor units: SELECT, OPEN SESSION, [VERIFY PIN], DEBIT.

        A purchase of the same amount that a pulled card left pending here and that the card
        had committed is not sold again: ``CompletedBefore`` carries its receipt (``again=True``
        sells anyway). Other recovered transactions come back in ``Receipt.recovered``."""
        if price < 0:
            raise ValueError("price must not be negative")
        info, recovered = self._present_usable()
        program_id = points.program_id if points is not None else 0
        opened = self.session.open(KeyRef.DEBIT, self.terminal_id, program_id)
        when = self._now()
        if points is not None:
            update = points.apply(opened.slot, price, when, redeem_points)
        else:
            if redeem_points:
                raise SmartpurseError("this terminal runs no loyalty program: nothing to redeem points for")
            update = PointsUpdate(slot=opened.slot, amount_due=price)
        self._refuse_repeat(recovered, ReceiptKind.PURCHASE, update.amount_due, again)
        if update.redeemed:
            if pin is None:
                raise SmartpurseError("redeeming points needs the card holder's PIN")
            self.session.verify_pin(pin)
        slot = update.slot if program_id else None

        def send(seq: int) -> tuple[TransactionRecord, CardWrite | None]:
            result = self.session.debit(update.amount_due, when, seq, earned=update.earned,
                                        redeemed=update.redeemed, prizes=update.prizes, slot=slot)
            if result.record is not None:  # the card logged the record the session built: keep those bytes
                return result.record, result.written
            return self._record(
                info, RecordType.PURCHASE, seq, when, result.counter, update.amount_due, result.balance,
                result.certificate, program_id=program_id, points_before=opened.slot.points if program_id else 0,
                points_after=update.slot.points if program_id else 0, earned=update.earned,
                redeemed=update.redeemed, prizes=update.prizes, tier=update.slot.tier if program_id else 0,
            ), None

        record = self._run(RecordType.PURCHASE, info, opened.counter + 1, update.amount_due, send)
        return Receipt.from_record(record, price=price, discount=update.discount, points_value=update.points_value,
                                   prize_text=update.prize_text, recovered=tuple(recovered))

    def cancel_last(self) -> Receipt:
        """UNDEBIT: cancel this terminal's last debit on the card, points included.

        A cancel that a pulled card had committed is not repeated: ``CompletedBefore`` carries
        its receipt (a second cancel would find nothing to cancel anyway)."""
        info, recovered = self._present_usable()
        self._refuse_repeat(recovered, ReceiptKind.CANCEL, None, False)
        opened = self.session.open(KeyRef.DEBIT, self.terminal_id, 0)
        if opened.counter == 0:
            raise NothingToCancel()  # a card that never transacted has an empty log
        last = self.session.read_log(0, 1)[0]
        if last.record_type != RecordType.PURCHASE or last.terminal_id != self.terminal_id:
            raise NothingToCancel()  # the card would refuse it too: spare the write-ahead entry
        when = self._now()

        def send(seq: int) -> tuple[TransactionRecord, CardWrite | None]:
            result = self.session.undebit(last.counter, when, seq)
            record = self.session.read_log(0, 1)[0]  # the card's own record: restored points and tier
            if record.terminal_seq != seq or record.record_type != RecordType.CANCEL:
                raise CardNotGenuine("the card's log does not show the cancellation")
            return record, result.written

        record = self._run(RecordType.CANCEL, info, opened.counter + 1, last.amount, send)
        return Receipt.from_record(record, recovered=tuple(recovered))

    def _block(self, info: CardInfo) -> Receipt:
        opened = self.session.open(KeyRef.DEBIT, self.terminal_id, 0)
        when = self._now()

        def send(seq: int) -> tuple[TransactionRecord, CardWrite | None]:
            return self._certified(info, RecordType.BLOCK, seq, when, 0, self.session.block(when, seq))

        return Receipt.from_record(self._run(RecordType.BLOCK, info, opened.counter + 1, 0, send))

    def block(self) -> Receipt:
        """Block the presented card (a hotlisted card, or on the issuer's order)."""
        info, _ = self.present()
        _refuse_unusable(info)
        return self._block(info)

    def export_batch(self, path: Path) -> BatchSummary:
        """Close every record not yet batched into a batch file for processing, signed with the log's key."""
        return export_batch(self.log, Path(path))


class CreditTerminal(_CardTerminal):
    """The issuer's desk: adds value to a card (CREDIT) and pays it out when the holder gives the card
    back (CASH OUT), its SAM holding the CREDIT masters only.

    The same write-ahead log and recovery as ``Terminal``; raises ``BalanceLimitExceeded``
    when a load would pass the card's maximum balance, ``CardBlocked``/``CardExpired``,
    ``CardReturned`` for a card already given back, ``TransactionInterrupted``,
    ``CardNotGenuine``, ``MissingKey`` and ``TransportError``.
    """

    key_ref = KeyRef.CREDIT

    def _present_named(self, number: str | None) -> tuple[CardInfo, list[Receipt]]:
        """Present the card; refuse it, before anything is sent, if it is not card ``number``."""
        info, recovered = self.present()
        if number is not None and info.number != number:
            raise WrongCard(f"the card in the field is {info.number}, not {number}: present card {number}")
        return info, recovered

    def load(self, amount: int, *, again: bool = False, number: str | None = None) -> Receipt:
        """CREDIT: add ``amount`` minor units; the receipt carries the card's certificate. ``number``: the
        card the desk means to load (another card in the field is refused before anything is sent).

        A load of the same amount that a pulled card had committed is not loaded again:
        ``CompletedBefore`` carries its receipt (``again=True`` loads anyway)."""
        if amount <= 0:
            raise ValueError("a load must be positive")
        info, recovered = self._present_named(number)
        self._refuse_repeat(recovered, ReceiptKind.LOAD, amount, again)
        _refuse_unusable(info)
        opened = self.session.open(KeyRef.CREDIT, self.terminal_id, 0)
        when = self._now()

        def send(seq: int) -> tuple[TransactionRecord, CardWrite | None]:
            return self._certified(info, RecordType.LOAD, seq, when, amount, self.session.credit(amount, when, seq))

        return Receipt.from_record(self._run(RecordType.LOAD, info, opened.counter + 1, amount, send),
                                   recovered=tuple(recovered))

    def cash_out(self, number: str | None = None) -> Receipt:
        """CASH OUT at card return: the card pays its whole balance out and is RETURNED, in one
        certified transaction; the receipt's ``amount`` is what the desk hands over. ``number``: the card
        the desk means to take back (another card in the field is refused before anything is sent).

        A card that is already RETURNED raises ``CompletedBefore`` with the receipt of its newest record,
        the cash-out (pulled after the card committed it, or returned at another desk): the caller decides
        from its own books whether that cash was handed over. A blocked card is refused (``CardBlocked``):
        its value moves to a replacement card instead (docs/books.md, "Deposits and cash-out")."""
        info, recovered = self._present_named(number)
        self._refuse_repeat(recovered, ReceiptKind.CASH_OUT, None, False)
        if info.state == CardState.RETURNED:
            newest = self.session.read_log(0, 1)[0] if info.counter else None
            if newest is not None and newest.record_type == RecordType.CASH_OUT:
                raise CompletedBefore(Receipt.from_record(newest), tuple(recovered))
        _refuse_unusable(info)
        opened = self.session.open(KeyRef.CREDIT, self.terminal_id, 0)
        when = self._now()

        def send(seq: int) -> tuple[TransactionRecord, CardWrite | None]:
            paid = self.session.cash_out(opened.balance, when, seq)
            return self._certified(info, RecordType.CASH_OUT, seq, when, opened.balance, paid)

        return Receipt.from_record(self._run(RecordType.CASH_OUT, info, opened.counter + 1, opened.balance, send),
                                   recovered=tuple(recovered))

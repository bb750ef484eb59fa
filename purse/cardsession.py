"""What a terminal gets from a card, whichever card profile it carries.

The reference card (``purse.session.PurseSession``) and MIFARE DESFire EV2/EV3
(``purse.desfire.session.DesfireSession``) answer the same verbs with the same values, so
``Terminal`` and ``CreditTerminal`` run either unchanged (``purse.profiles`` tells which
card is in the field). A verb raises the status word's domain error (``purse.apdu.PurseError``),
``CardNotGenuine`` for an answer that does not verify, ``ValueOutOfRange`` for an argument the
wire cannot carry, and ``CardRemoved`` when the card leaves the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from purse.errors import ExitCode, SmartpurseError, UserError
from purse.protocol import CardState, KeyRef
from purse.records import CardWrite, PointsSlot, TransactionRecord

__all__ = ["CardInfo", "OpenedSession", "TxnResult", "CardSession", "CardNotGenuine", "ValueOutOfRange",
           "WrongCard"]


class CardNotGenuine(SmartpurseError):
    """The card's cryptogram or response MAC is wrong: not one of the issuer's cards."""

    exit_code = ExitCode.CARD_REFUSED


class WrongCard(UserError):
    """The card presented is not the card the command was given."""


class ValueOutOfRange(UserError, ValueError):
    """An amount, time or sequence number that does not fit its field on the wire."""


@dataclass(frozen=True, slots=True)
class CardInfo:
    """What a card tells without any secret (SELECT on the reference card; the identity and
    Transaction MAC files of a DESFire card, whose balance is known only once a session opens)."""

    state: CardState
    uid: bytes
    number: str
    issuer_id: int
    key_version: int
    currency: int
    balance: int
    max_balance: int
    counter: int
    expiry: int


@dataclass(frozen=True, slots=True)
class OpenedSession:
    counter: int
    balance: int
    slot: PointsSlot


@dataclass(frozen=True, slots=True)
class TxnResult:
    """A transaction's answer: the balance after, the card's counter and its certificate (the reference
    card's CMAC, a DESFire card's Transaction MAC Value); ``record`` when the card logged one the
    terminal built (DESFire), so the terminal keeps exactly the bytes the card holds; ``written``
    when the transaction also wrote points the back office needs to verify it."""

    balance: int
    counter: int
    certificate: bytes
    record: TransactionRecord | None = None
    written: CardWrite | None = None


class CardSession(Protocol):
    """One card in the field, one verb per transaction; ``select`` first, then ``open`` with a key."""

    info: CardInfo | None
    record_flags: int  # the flags byte of the records this profile's transactions produce

    def select(self) -> CardInfo: ...

    def open(self, ref: KeyRef, terminal_id: int, program_id: int = 0) -> OpenedSession: ...

    def debit(self, amount: int, when: int, terminal_seq: int, *, earned: int = 0, redeemed: int = 0,
              prizes: int = 0, slot: PointsSlot | None = None) -> TxnResult: ...

    def credit(self, amount: int, when: int, terminal_seq: int) -> TxnResult: ...

    def undebit(self, debit_counter: int, when: int, terminal_seq: int) -> TxnResult: ...

    def block(self, when: int, terminal_seq: int) -> TxnResult: ...

    def cash_out(self, amount: int, when: int, terminal_seq: int) -> TxnResult:
        """Pay the whole balance (``amount``) out at card return, under the CREDIT key: the purse is
        emptied and the card RETURNED in one certified transaction."""
        ...

    def read_log(self, index: int = 0, count: int = 1) -> list[TransactionRecord]: ...

    def read_whole_log(self) -> list[TransactionRecord]: ...

    def verify_pin(self, pin: str) -> None: ...

    def written_by(self, record: TransactionRecord) -> CardWrite | None:
        """For a transaction found on the card at recovery: what it wrote besides the record, if the
        card still shows it (None on the reference card, whose certificate covers the record alone)."""
        ...

"""The desk takes a card back: pays its balance out through the card and gives the deposit back.

``smartpurse cash-out NUMBER`` runs ``return_at_desk``. The card itself empties its purse and logs a
certified CASH_OUT record (``CreditTerminal.cash_out``), so the cash that leaves the desk is matched
by a record only the card can make. The desk is online: the record, the deposit refund and the
registry's 'returned' go into the database in one transaction at once, and processing posts them
(``processing.desk_posting``). A card pulled mid-command is resolved at its next presentation; a retry
finds the cash-out done and records it (once: ``cash_outs`` holds one row per card), and a card the
books know as returned is refused before it is touched, so no holder is paid twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select, update

from processing.issuer_loads import record_loads
from processing.schema.desk import DepositMove, card_deposits, cash_outs
from processing.schema.holders import RequestKind, fulfil_request
from processing.schema.registry import CardStatus
from processing.schema.registry import cards as registry_cards
from purse.errors import UserError
from purse.terminal import CompletedBefore, CreditTerminal, Receipt, ReceiptKind

__all__ = ["CardReturn", "require_returnable", "return_at_desk", "deposit_owed"]


@dataclass(frozen=True)
class CardReturn:
    """What one ``smartpurse cash-out`` did: the card's cash-out receipt and the deposit refunded."""

    receipt: Receipt
    deposit: int  # minor units of deposit refunded with it
    completed_before: bool  # the card had emptied itself before (pulled, or a crash before the books)

    @property
    def paid_out(self) -> int:
        """What the desk hands the holder: the balance the card paid out and the deposit."""
        return self.receipt.amount + self.deposit


def require_returnable(engine: Engine, number: str) -> None:
    """Refuse, before the card is touched, a return the books already hold or cannot account for."""
    c, co = registry_cards.c, cash_outs.c
    with engine.connect() as conn:
        row = conn.execute(select(c.state, c.replaced_by).where(c.number == number)).first()
        paid = conn.execute(select(co.amount, co.recorded_at).where(co.card_number == number)).first()
    if row is None:
        where = engine.url.render_as_string(hide_password=True)
        raise UserError(f"card {number} is not in this database's registry ({where}): take it back with the "
                        "database that issued it (--db or SMARTPURSE_DB)")
    if paid is not None or row.state == CardStatus.RETURNED:
        when = f" on {paid.recorded_at:%Y-%m-%d %H:%M}" if paid is not None else ""
        raise UserError(f"card {number} was returned{when} and its balance paid out already: nothing to pay")
    if row.state == CardStatus.BLOCKED:
        raise UserError(f"card {number} is blocked in the registry (lost or stolen): replace it "
                        "(smartpurse cards replace), its value moves to the new card")
    if row.state == CardStatus.REPLACED:
        raise UserError(f"card {number} was replaced by {row.replaced_by}: take back the new card")


def deposit_owed(conn: Connection, number: str) -> int:
    """The deposit to refund with card ``number``: what was taken for it and for the cards it replaced
    (a replacement is issued without one), less what was refunded."""
    c, d = registry_cards.c, card_deposits.c
    chain: list[str] = []
    at: str | None = number
    while at is not None and at not in chain:
        chain.append(at)
        at = conn.execute(select(c.replaces).where(c.number == at)).scalar()
    moves = conn.execute(select(d.move, d.amount).where(d.card_number.in_(chain))).all()
    return sum(int(a) if m == DepositMove.TAKEN else -int(a) for m, a in moves)


def return_at_desk(engine: Engine, terminal: CreditTerminal, number: str) -> CardReturn:
    """Take card ``number`` back: the card pays its balance out, the deposit is refunded, both recorded.

    Loads a pulled card had left pending at this desk are completed and recorded too."""
    require_returnable(engine, number)
    try:
        receipt, before = terminal.cash_out(number), False
    except CompletedBefore as e:
        receipt, before = e.receipt, True
    recovered_loads = [r for r in receipt.recovered if r.kind == ReceiptKind.LOAD]
    if recovered_loads:
        record_loads(engine, recovered_loads)
    return CardReturn(receipt, _record(engine, receipt), before)


def _record(engine: Engine, receipt: Receipt) -> int:
    """The cash-out, the deposit refund and the registry's 'returned', in one transaction; the deposit."""
    if receipt.record is None:
        raise ValueError("a cash-out receipt without its certified record cannot be recorded")
    number = receipt.card_number
    with engine.begin() as conn:
        conn.execute(insert(cash_outs).values(
            card_number=number, counter=receipt.counter, amount=receipt.amount, terminal_id=receipt.terminal_id,
            terminal_seq=receipt.terminal_seq, time=receipt.time, record=receipt.record.to_bytes()))
        deposit = deposit_owed(conn, number)
        if deposit > 0:
            conn.execute(insert(card_deposits).values(card_number=number, move=DepositMove.REFUNDED, amount=deposit))
        conn.execute(update(registry_cards).where(registry_cards.c.number == number)
                     .values(state=CardStatus.RETURNED))
        fulfil_request(conn, number, RequestKind.PAYOUT, int(time.time()),
                       f"paid out {receipt.amount} + deposit {max(deposit, 0)}")
    return max(deposit, 0)

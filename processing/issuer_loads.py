"""Recording loads in the issuer's database at the moment they happen.

The load desk is the issuer's own and online, so each load's certified record goes
straight into ``loads``; processing matches the LOAD records that come back from
cards against it. Recording is idempotent on (card number, counter), so a load
recovered after a pulled card and recorded again is stored once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, select

from processing.schema.loads import loads
from processing.schema.processing import transfers_posted
from processing.schema.registry import CardStatus, card_transfers
from processing.schema.registry import cards as registry_cards
from processing.transfers import transfer_key
from purse.errors import UserError
from purse.terminal import CompletedBefore, CreditTerminal, Receipt, ReceiptKind


@dataclass(frozen=True)
class PendingTransfer:
    """A replaced card's value that processing has moved to ``replacement_payable`` for this card."""

    transfer_id: int
    from_number: str
    amount: int


def pending_transfer(engine: Engine, number: str) -> PendingTransfer:
    """The transfer the desk may load onto card ``number`` now, or a one-line reason why not."""
    t, tp, lo = card_transfers.c, transfers_posted.c, loads.c
    with engine.connect() as conn:
        row = conn.execute(select(t.id, t.from_number, t.amount, t.credited_at).where(t.to_number == number)).first()
        if row is None:
            raise UserError(f"card {number} replaces no card: there is no transfer to load")
        if row.credited_at is None:
            raise UserError(f"the value of card {row.from_number} is not transferred yet: processing waits for that "
                            "card's last batches (run 'smartpurse process')")
        to_chip = conn.execute(select(tp.to_chip).where(tp.transfer_key == transfer_key(row.id))).scalar()
        if not to_chip:
            raise UserError(f"the value of card {row.from_number} was credited to card {number}'s account before "
                            "transfers were loaded onto cards: there is nothing to load")
        loaded = conn.execute(select(lo.recorded_at).where(lo.transfer_id == row.id)).scalar()
        if loaded is not None:
            raise UserError(f"the value of card {row.from_number} was loaded onto card {number} already "
                            f"({loaded:%Y-%m-%d %H:%M})")
        if not row.amount:
            raise UserError(f"card {row.from_number} had nothing left: there is nothing to load")
        return PendingTransfer(int(row.id), row.from_number, int(row.amount))


@dataclass(frozen=True)
class DeskLoad:
    """What one ``smartpurse load`` did: the load's receipt, and whether it was done now or before."""

    receipt: Receipt
    transfer: PendingTransfer | None  # the replaced card's value this load paid, if it was a transfer load
    completed_before: bool  # the same load had completed before the card was pulled: nothing loaded now


def require_loadable(engine: Engine, number: str) -> None:
    """Refuse, before the card is touched, a load the issuer's database could not account for.

    A card its registry does not know (a ``--db`` naming another or a new database) would get
    money that no ledger holds; a blocked card is lost or stolen; a replaced card's value has
    moved to its replacement. Each is one ``UserError`` line saying what to do instead.
    """
    c = registry_cards.c
    with engine.connect() as conn:
        row = conn.execute(select(c.state, c.replaced_by).where(c.number == number)).first()
    if row is None:
        where = engine.url.render_as_string(hide_password=True)
        raise UserError(f"card {number} is not in this database's registry ({where}): "
                        "load it with the database that issued it (--db or SMARTPURSE_DB)")
    if row.state == CardStatus.BLOCKED:
        raise UserError(f"card {number} is blocked in the registry (lost or stolen): unblock it before loading")
    if row.state == CardStatus.REPLACED:
        raise UserError(f"card {number} was replaced by {row.replaced_by}: load the new card")
    if row.state == CardStatus.RETURNED:
        raise UserError(f"card {number} was returned and cashed out: it takes no more loads")


def load_at_desk(engine: Engine, terminal: CreditTerminal, number: str, amount: int | None, *,
                 again: bool = False) -> DeskLoad:
    """What ``smartpurse load`` does: ``amount`` of cash onto card ``number``, or (``amount`` None) the
    value of the card it replaced, as processing transferred it; recorded in ``loads`` at once.

    A load that a pulled card left pending is completed first and recorded too. If it is a load of
    this card for the same amount (a cashier's retry), it is the load asked for: nothing is loaded a
    second time unless ``again`` (never for a transfer, which is paid once), and the result says
    ``completed_before``."""
    require_loadable(engine, number)
    due = pending_transfer(engine, number) if amount is None else None
    value = due.amount if due is not None else int(amount or 0)
    try:
        receipt = terminal.load(value, again=again and due is None, number=number)
        before = False
        recovered = receipt.recovered
    except CompletedBefore as e:
        receipt, before, recovered = e.receipt, True, e.recovered
    done = [r for r in recovered if r.kind == ReceiptKind.LOAD and r is not receipt] + [receipt]
    record_loads(engine, done, (receipt, due.transfer_id) if due is not None else None)
    return DeskLoad(receipt, due, before)


def record_loads(engine: Engine, receipts: Iterable[Receipt], transfer: tuple[Receipt, int] | None = None) -> int:
    """Insert the loads not yet known; returns how many were new. ``transfer``: the receipt that paid
    that replacement transfer (``card_transfers.id``) onto its new card, to be posted without cash."""
    new = 0
    with engine.begin() as conn:
        for r in receipts:
            if r.record is None:
                raise ValueError("a load receipt without its certified record cannot be recorded")
            known = conn.execute(select(loads.c.id).where(loads.c.card_number == r.card_number,
                                                          loads.c.counter == r.counter)).first()
            if known is None:
                conn.execute(loads.insert().values(
                    card_number=r.card_number, counter=r.counter, amount=r.amount, balance_after=r.balance,
                    terminal_id=r.terminal_id, terminal_seq=r.terminal_seq, time=r.time, record=r.record.to_bytes(),
                    transfer_id=transfer[1] if transfer is not None and transfer[0] is r else None))
                new += 1
    return new

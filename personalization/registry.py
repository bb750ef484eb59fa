"""Registry operations: what personalization reads and writes in the shared schema.

Tables are declared in ``processing.schema.registry``; this module is the only writer
of holders, cards, card numbers, card transfers, merchants and terminals
(``tests/test_architecture.py`` holds it to that; processing stamps only a transfer's
posting columns). Each function is one short transaction,
with the write that takes the lock first (see ``numbering.allocate``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from personalization.counterparty import MerchantDetails
from personalization.holders_csv import HolderRow
from personalization.numbering import allocate, insert_or_ignore
from processing.schema.desk import DepositMove, card_deposits, cash_outs
from processing.schema.holders import EventKind, RequestKind, fulfil_request, holder_requests, insert_event
from processing.schema.loads import loads
from processing.schema.registry import (
    CardStatus,
    NumberStatus,
    card_numbers,
    card_transfers,
    cards,
    holders,
    issue_batches,
    merchants,
    terminals,
)
from purse.errors import UserError

DEFAULT_FEE_BPS = 100  # used when smartpurse.toml has no [merchants] default_fee_bps


class UnknownCard(UserError):
    """No card with that number in the registry."""


@dataclass(frozen=True)
class Reservation:
    """A number reserved for one position of a batch (and, once known, the chip's UID)."""

    number: str
    batch_index: int
    uid: bytes | None
    holder_id: int | None
    attempt: int = 0


@dataclass(frozen=True)
class IssuedRow:
    number: str
    uid: bytes
    holder_id: int | None
    key_version: int
    program: int | None
    tier: int | None
    currency: int
    max_balance: int
    expiry: int
    batch: str
    image: str | None = None
    reader: str | None = None
    deposit: int = 0  # minor units taken for the card at issue


def now() -> datetime:
    return datetime.now(UTC)


# -- batches ------------------------------------------------------------------------------
def open_batch(engine: Engine, name: str, requested: int, source: str | None) -> set[int]:
    """Record the batch (or find it again) and return the positions already issued."""
    with engine.begin() as conn:
        insert_or_ignore(conn, issue_batches, {"name": name, "requested": requested, "source": source})
        row = conn.execute(select(issue_batches).where(issue_batches.c.name == name)).one()
        if row.requested != requested:
            raise UserError(f"batch {name!r} was started for {row.requested} cards, not {requested}: "
                            f"run it again with the same count or choose another --batch")
        done = conn.execute(select(card_numbers.c.batch_index).where(
            card_numbers.c.batch == name, card_numbers.c.state == NumberStatus.ISSUED)).scalars()
        return set(done)


def reservations(engine: Engine, batch: str) -> dict[int, Reservation]:
    """Numbers reserved for ``batch`` and not yet issued nor voided: a resume reuses them."""
    with engine.connect() as conn:
        rows = conn.execute(select(card_numbers).where(card_numbers.c.batch == batch,
                                                       card_numbers.c.state == NumberStatus.RESERVED))
        return {r.batch_index: Reservation(r.number, r.batch_index, r.uid, r.holder_id, r.attempt) for r in rows}


def holders_with_cards(engine: Engine, emails: Iterable[str]) -> dict[str, str]:
    """e-mail -> number of the card the holder already holds (a re-run must not issue twice)."""
    wanted = list(emails)
    found: dict[str, str] = {}
    with engine.connect() as conn:
        for i in range(0, len(wanted), 500):
            rows = conn.execute(select(holders.c.email, cards.c.number)
                                .join(cards, cards.c.holder_id == holders.c.id)
                                .where(holders.c.email.in_(wanted[i : i + 500]), cards.c.state == CardStatus.ISSUED))
            found.update({r.email: r.number for r in rows})
    return found


def _holder_ids(conn: Any, rows: Sequence[HolderRow]) -> dict[str, int]:
    emails = [h.email for h in rows]
    ids = dict(conn.execute(select(holders.c.email, holders.c.id).where(holders.c.email.in_(emails))).all())
    new = [h for h in rows if h.email not in ids]
    if new:
        conn.execute(insert(holders), [{"name": h.name, "phone": h.phone, "email": h.email, "language": h.language}
                                       for h in new])
        ids = dict(conn.execute(select(holders.c.email, holders.c.id).where(holders.c.email.in_(emails))).all())
    return ids


def give_cards_holders(engine: Engine, pairs: Sequence[tuple[str, HolderRow]]) -> dict[str, int]:
    """Each (card number, holder) pair: the holder registered (or found by e-mail) and made the card's holder;
    the holder id of each card. For cards issued without holders that people later claim (the demo's)."""
    with engine.begin() as conn:
        ids = _holder_ids(conn, [h for _, h in pairs])
        for number, h in pairs:
            conn.execute(update(cards).where(cards.c.number == number).values(holder_id=ids[h.email]))
    return {number: ids[h.email] for number, h in pairs}


def reserve(engine: Engine, iin: str, batch: str, wanted: Sequence[tuple[int, HolderRow | None, bytes | None]],
            attempt: int = 0) -> list[Reservation]:
    """Allocate and reserve one number per (batch index, holder, uid), in one transaction.

    (batch, index, attempt) is unique, so two processes running the same batch cannot
    both reserve a position: the second one fails instead of issuing a twin card."""
    if not wanted:
        return []
    with engine.begin() as conn:
        numbers = allocate(conn, iin, len(wanted))
        with_holder = [h for _, h, _ in wanted if h is not None]
        ids = _holder_ids(conn, with_holder) if with_holder else {}
        out = [Reservation(n, i, uid, ids[h.email] if h is not None else None, attempt)
               for n, (i, h, uid) in zip(numbers, wanted, strict=True)]
        try:
            conn.execute(insert(card_numbers), [
                {"number": r.number, "batch": batch, "batch_index": r.batch_index, "attempt": attempt, "uid": r.uid,
                 "holder_id": r.holder_id, "state": NumberStatus.RESERVED} for r in out])
        except IntegrityError:
            raise UserError(f"batch {batch!r} is being issued by another process right now") from None
    return out


def set_reservation_uid(engine: Engine, number: str, uid: bytes | None) -> None:
    with engine.begin() as conn:
        conn.execute(update(card_numbers).where(card_numbers.c.number == number).values(uid=uid))


def void_number(engine: Engine, number: str, note: str) -> None:
    """The number may sit on a card we could not register: never hand it out again."""
    with engine.begin() as conn:
        conn.execute(update(card_numbers)
                     .where(card_numbers.c.number == number, card_numbers.c.state == NumberStatus.RESERVED)
                     .values(state=NumberStatus.VOID, note=note[:200]))


def register(engine: Engine, issued: Sequence[IssuedRow]) -> None:
    """The cards exist: insert them and mark their numbers issued, atomically."""
    if not issued:
        return
    when = now()
    with engine.begin() as conn:
        conn.execute(update(card_numbers).where(card_numbers.c.number.in_([c.number for c in issued]))
                     .values(state=NumberStatus.ISSUED))
        conn.execute(insert(cards), [{
            "number": c.number, "uid": c.uid, "holder_id": c.holder_id, "key_version": c.key_version,
            "program": c.program, "tier": c.tier, "currency": c.currency, "max_balance": c.max_balance,
            "expiry": c.expiry, "issued_at": when, "state": CardStatus.ISSUED, "batch": c.batch, "image": c.image,
            "reader": c.reader} for c in issued])
        taken = [{"card_number": c.number, "move": DepositMove.TAKEN, "amount": c.deposit, "recorded_at": when}
                 for c in issued if c.deposit]
        if taken:  # in the same transaction: a card is never registered without the deposit it was issued for
            conn.execute(insert(card_deposits), taken)


def batch_numbers(engine: Engine, batch: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(card_numbers.c.number).where(
            card_numbers.c.batch == batch, card_numbers.c.state == NumberStatus.ISSUED)
            .order_by(card_numbers.c.batch_index))
            .scalars())


# -- cards ----------------------------------------------------------------------------------
def card_row(engine: Engine, number: str) -> dict[str, Any]:
    with engine.connect() as conn:
        row = conn.execute(select(cards, holders.c.name.label("holder_name"), holders.c.email, holders.c.phone)
                           .outerjoin(holders, holders.c.id == cards.c.holder_id)
                           .where(cards.c.number == number)).mappings().first()
    if row is None:
        raise UnknownCard(f"no card {number} in the registry")
    return dict(row)


def list_cards(engine: Engine, state: str | None = None, limit: int | None = None, *, phone: str | None = None,
               email: str | None = None) -> list[dict[str, Any]]:
    """Cards in number order; only those in ``state``, or of the holder with this E.164 ``phone`` or
    ``email`` (compared lower-cased, as the holder's identity is kept)."""
    query = (select(cards.c.number, cards.c.state, cards.c.key_version, cards.c.program, cards.c.issued_at,
                    cards.c.blocked_at, holders.c.name.label("holder_name"), holders.c.phone, holders.c.email)
             .outerjoin(holders, holders.c.id == cards.c.holder_id).order_by(cards.c.number))
    if state is not None:
        query = query.where(cards.c.state == state)
    if phone is not None:
        query = query.where(holders.c.phone == phone)
    if email is not None:
        query = query.where(holders.c.email == email.strip().lower())
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def set_blocked(engine: Engine, number: str, reason: str, at: datetime | None = None, *,
                by: str = "issuer") -> dict[str, Any]:
    """Block in the registry (the hotlist reads it), now or ``at``. Blocking a blocked card keeps the first
    time. ``by`` says who asked, for the holder's message: the issuer's staff, or the holder on their page."""
    with engine.begin() as conn:
        when = at or now()
        result = conn.execute(update(cards).where(cards.c.number == number, cards.c.state == CardStatus.ISSUED)
                              .values(state=CardStatus.BLOCKED, blocked_at=when, block_reason=reason[:200]))
        holder = conn.execute(select(cards.c.holder_id).where(cards.c.number == number)).scalar()
        if result.rowcount and holder is not None:
            insert_event(conn, f"blocked:{number}", EventKind.BLOCKED, number, holder, int(when.timestamp()),
                         {"by": by, "reason": reason[:200]})
        if result.rowcount == 0:
            state = conn.execute(select(cards.c.state).where(cards.c.number == number)).scalar()
            if state is None:
                raise UnknownCard(f"no card {number} in the registry")
            if state == CardStatus.REPLACED:
                raise UserError(f"card {number} was replaced; it is blocked for good")
            if state == CardStatus.RETURNED:
                raise UserError(f"card {number} was returned and cashed out: there is nothing to block")
    return card_row(engine, number)


def set_unblocked(engine: Engine, number: str) -> dict[str, Any]:
    with engine.begin() as conn:
        result = conn.execute(update(cards).where(cards.c.number == number, cards.c.state == CardStatus.BLOCKED)
                              .values(state=CardStatus.ISSUED, blocked_at=None, block_reason=None))
        if result.rowcount == 0:
            state = conn.execute(select(cards.c.state).where(cards.c.number == number)).scalar()
            if state is None:
                raise UnknownCard(f"no card {number} in the registry")
            raise UserError(f"card {number} is {state}, not blocked" +
                            ("; a replaced card cannot come back" if state == CardStatus.REPLACED else ""))
    return card_row(engine, number)


def record_replacement(engine: Engine, old: dict[str, Any], new: str, reason: str, balance_on_card: int | None,
                       at: datetime | None = None) -> None:
    """Card ``new`` replaces ``old`` (its registry row): holder moves over, the old card is replaced for
    good, and the value transfer processing will move is recorded, all in one transaction."""
    number = old["number"]
    with engine.begin() as conn:
        conn.execute(update(cards).where(cards.c.number == new).values(replaces=number, holder_id=old["holder_id"]))
        conn.execute(update(cards).where(cards.c.number == number).values(state=CardStatus.REPLACED, replaced_by=new))
        conn.execute(insert(card_transfers).values(from_number=number, to_number=new, reason=reason[:200],
                                                   balance_on_card=balance_on_card, requested_at=at or now()))
        when = at or now()
        fulfil_request(conn, number, RequestKind.REPLACEMENT, int(when.timestamp()), f"replaced by {new}")
        if old["holder_id"] is not None:
            insert_event(conn, f"replacement_ready:{new}", EventKind.REPLACEMENT_READY, new, old["holder_id"],
                         int(when.timestamp()), {"old": number, "reason": reason[:200]})


def card_return(engine: Engine, number: str) -> dict[str, Any]:
    """The card's deposit (taken at issue, refunded at return) and, once returned, what its cash-out paid."""
    d, co = card_deposits.c, cash_outs.c
    with engine.connect() as conn:
        moves = {m: int(a) for m, a in conn.execute(select(d.move, d.amount).where(d.card_number == number))}
        paid = conn.execute(select(co.amount, co.recorded_at).where(co.card_number == number)).first()
    out: dict[str, Any] = {}
    if DepositMove.TAKEN in moves:
        out["deposit"] = moves[DepositMove.TAKEN]
    if paid is not None:
        out["returned"] = {"balance_paid_out": int(paid.amount), "deposit_refunded": moves.get(DepositMove.REFUNDED, 0),
                           "at": paid.recorded_at}
    return out


def card_requests(engine: Engine, number: str) -> dict[str, dict[str, Any]]:
    """What the card's holder asked for on their page (a replacement, a payout at return), by kind."""
    return {r["kind"]: {k: r[k] for k in ("requested_at", "source", "done_at", "note")}
            for r in holder_requests_list(engine, include_done=True, number=number)}


def holder_requests_list(engine: Engine, include_done: bool = False, number: str | None = None
                         ) -> list[dict[str, Any]]:
    """Holders' requests, oldest first: the open ones (replacements to issue, payouts waiting for the card),
    or every one; of card ``number`` only, when given."""
    q, h = holder_requests.c, holders.c
    query = (select(q.card_number, q.kind, q.requested_at, q.source, q.done_at, q.note, h.name, h.phone)
             .outerjoin(holders, h.id == q.holder_id).order_by(q.requested_at, q.id))
    if not include_done:
        query = query.where(q.done_at.is_(None))
    if number is not None:
        query = query.where(q.card_number == number)
    with engine.connect() as conn:
        return [{"number": r.card_number, "kind": r.kind, "requested_at": datetime.fromtimestamp(r.requested_at, UTC),
                 "source": r.source, "holder": r.name, "phone": r.phone,
                 "done_at": datetime.fromtimestamp(r.done_at, UTC) if r.done_at else None, "note": r.note}
                for r in conn.execute(query)]


def card_transfer(engine: Engine, number: str) -> dict[str, Any] | None:
    """The value transfer card ``number`` is part of (as the old or the new card), with when a desk
    loaded it onto the new card (``load --transfer``), if it did."""
    with engine.connect() as conn:
        transfer = conn.execute(select(card_transfers).where(
            (card_transfers.c.from_number == number) | (card_transfers.c.to_number == number))).mappings().first()
        if transfer is None:
            return None
        loaded_at = conn.execute(select(loads.c.recorded_at).where(loads.c.transfer_id == transfer["id"])).scalar()
    return dict(transfer) | {"loaded_at": loaded_at}


# -- terminals and merchants ----------------------------------------------------------------
def name_merchant(engine: Engine, merchant_id: int, name: str) -> None:
    """Give merchant ``merchant_id`` (registered with its first terminal) its name."""
    with engine.begin() as conn:
        result = conn.execute(update(merchants).where(merchants.c.merchant_id == merchant_id).values(name=name))
        if result.rowcount == 0:
            raise UserError(f"no merchant {merchant_id}: register one of its terminals first (keys export)")

def register_terminal(engine: Engine, terminal_id: int, merchant_id: int, log_key_version: int, *,
                      fee_bps: int, name: str | None = None) -> None:
    """Terminal T belongs to merchant M and logs under key version v (processing verifies with it)."""
    with engine.begin() as conn:
        insert_or_ignore(conn, merchants, {"merchant_id": merchant_id, "name": f"Merchant {merchant_id}",
                                           "fee_bps": fee_bps})
        values: dict[str, object] = {"merchant_id": merchant_id, "log_key_version": log_key_version}
        if name is not None:
            values["name"] = name
        existing = conn.execute(select(terminals.c.terminal_id).where(terminals.c.terminal_id == terminal_id)).first()
        if existing is None:
            conn.execute(insert(terminals).values(terminal_id=terminal_id, registered_at=now(), **values))
        else:
            conn.execute(update(terminals).where(terminals.c.terminal_id == terminal_id).values(**values))


def reservation_for(engine: Engine, batch: str, index: int) -> tuple[Reservation | None, int]:
    """The live reservation of a batch position, if any, and the attempt a new one must use."""
    with engine.connect() as conn:
        rows = conn.execute(select(card_numbers).where(and_(card_numbers.c.batch == batch,
                                                            card_numbers.c.batch_index == index))).all()
    live = [r for r in rows if r.state == NumberStatus.RESERVED]
    attempt = max((r.attempt for r in rows), default=-1) + 1
    if not live:
        return None, attempt
    r = live[0]
    return Reservation(r.number, r.batch_index, r.uid, r.holder_id, r.attempt), attempt


# -- merchants: the counterparties the issuer pays --------------------------------------------------
_MERCHANT_FIELDS = ("name", "fee_bps", "legal_name", "tax_number", "bank_name", "bank_bic", "bank_account", "iban",
                    "payout_schedule")


def merchant_details(engine: Engine, merchant_id: int) -> MerchantDetails:
    """The merchant's row as ``MerchantDetails``; ``UserError`` for an unknown merchant."""
    with engine.connect() as conn:
        row = conn.execute(select(merchants).where(merchants.c.merchant_id == merchant_id)).mappings().first()
    if row is None:
        raise UserError(f"no merchant {merchant_id} (add it with `smartpurse merchants add`)")
    return MerchantDetails(merchant_id, **{k: row[k] for k in _MERCHANT_FIELDS})


def all_merchants(engine: Engine) -> list[MerchantDetails]:
    with engine.connect() as conn:
        rows = conn.execute(select(merchants).order_by(merchants.c.merchant_id)).mappings().all()
    return [MerchantDetails(int(r["merchant_id"]), **{k: r[k] for k in _MERCHANT_FIELDS}) for r in rows]


def save_merchant(engine: Engine, details: MerchantDetails, *, new: bool) -> MerchantDetails:
    """Add (``new``) or replace a merchant's details, checked whole first (``MerchantDetails.checked``)."""
    checked = details.checked()
    values = {k: getattr(checked, k) for k in _MERCHANT_FIELDS}
    with engine.begin() as conn:
        exists = conn.execute(select(merchants.c.merchant_id)
                              .where(merchants.c.merchant_id == checked.merchant_id)).first() is not None
        if new and exists:
            raise UserError(f"merchant {checked.merchant_id} exists: change it with `smartpurse merchants edit`")
        if not new and not exists:
            raise UserError(f"no merchant {checked.merchant_id} (add it with `smartpurse merchants add`)")
        if new:
            conn.execute(insert(merchants).values(merchant_id=checked.merchant_id, **values))
        else:
            conn.execute(update(merchants).where(merchants.c.merchant_id == checked.merchant_id).values(**values))
    return checked

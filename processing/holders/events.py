"""Holder events from what processing posts, written to the outbox in the posting's own transaction.

Each event's key names what happened (``purchases:<card>:<day>``, ``load:<card>:<counter>``), and the
outbox keeps a key once (``processing.schema.holders.insert_event``): importing a batch again, or a
second importer on the same batch, creates no event twice. Only cards with a holder get events; the
message itself, and whether the holder consented to it, is the delivery worker's business.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from processing.rows import StoredRow
from processing.schema.holders import EventKind, insert_event
from processing.schema.processing import card_accounts, records
from processing.store import select_in
from purse.protocol import RecordType
from purse.records import record_details

__all__ = ["batch_events", "card_holders", "desk_events", "DAY"]

DAY = 86_400


_IN = 500  # card numbers per IN list


def card_holders(conn: Connection, numbers: Iterable[str]) -> dict[str, int]:
    """The holder of each of these cards that has one (one query, however many cards: ``select_in``)."""
    return {n: int(h) for n, h in select_in(
        conn, "SELECT number, holder_id FROM cards WHERE holder_id IS NOT NULL AND number", sorted(set(numbers)))}


def batch_events(conn: Connection, batch_id: int, holders: dict[str, int], now: int, low_balance: int) -> int:
    """The events of one accepted batch, for the cards it touched that have ``holders`` (``card_holders``,
    read once for a whole group of batches): each card-day's purchases (a digest), prizes, blocks at a
    terminal, and cards that fell below ``low_balance``; how many were new. The records are read by card
    (the key's prefix), never by scanning the table."""
    if not holders:
        return 0
    r = records.c
    new = 0
    numbers = sorted(holders)
    for i in range(0, len(numbers), _IN):
        rows = conn.execute(select(r.card_number, r.counter, r.record_type, r.day, r.raw).where(
            r.card_number.in_(numbers[i : i + _IN]), r.batch_id == batch_id,
            r.record_type.in_([RecordType.PURCHASE, RecordType.CANCEL, RecordType.BLOCK]))).all()
        for number, day in sorted({(n, int(d)) for n, _, kind, d, _ in rows if kind != RecordType.BLOCK}):
            new += insert_event(conn, f"purchases:{number}:{day}", EventKind.PURCHASES, number, holders[number],
                                now, {"day": day}, due_at=(day + 1) * DAY)
        for number, counter, kind, _, raw in rows:
            d = record_details(bytes(raw))
            if kind == RecordType.BLOCK:
                new += insert_event(conn, f"blocked:{number}", EventKind.BLOCKED, number, holders[number], now,
                                    {"by": "terminal", "terminal_id": d.terminal_id})
            elif kind == RecordType.PURCHASE and d.prizes:
                new += insert_event(conn, f"prize:{number}:{counter}", EventKind.PRIZE, number, holders[number], now,
                                    {"counter": int(counter), "prizes": d.prizes, "program_id": d.program_id,
                                     "terminal_id": d.terminal_id, "time": d.time})
    if low_balance > 0:
        new += _low_balances(conn, holders, now, low_balance)
    return new


def _low_balances(conn: Connection, holders: dict[str, int], now: int, low_balance: int) -> int:
    """Cards whose shadow balance is below the threshold: once per load (the key names the card's last
    load), so a holder hears it once until the card is topped up."""
    r, a = records.c, card_accounts.c
    numbers = sorted(holders)
    new = 0
    for i in range(0, len(numbers), _IN):
        for number, balance in conn.execute(select(a.card_number, a.balance).where(
                a.card_number.in_(numbers[i : i + _IN]), a.balance < low_balance)).all():
            load = conn.execute(select(func.max(r.counter)).where(r.card_number == number,
                                                                  r.record_type == RecordType.LOAD)).scalar()
            new += insert_event(conn, f"low_balance:{number}:{int(load or 0)}", EventKind.LOW_BALANCE, number,
                                holders[number], now, {"balance": int(balance), "threshold": low_balance})
    return new


def desk_events(conn: Connection, rows: Sequence[tuple[Any, ...]], transfers: set[tuple[str, int]], now: int) -> int:
    """Loads and cash-outs the desks recorded and processing just posted: a load credited (a replaced
    card's value moved, for a transfer load), a card returned."""
    posted = [StoredRow._make(row) for row in rows]
    holders = card_holders(conn, (p.card_number for p in posted))
    new = 0
    for p in posted:
        holder = holders.get(p.card_number)
        if holder is None:
            continue
        balance = record_details(bytes(p.raw)).balance_after
        if p.record_type == RecordType.CASH_OUT:
            key, kind = f"returned:{p.card_number}", EventKind.RETURNED
        elif (p.card_number, p.counter) in transfers:
            key, kind = f"value_moved:{p.card_number}:{p.counter}", EventKind.VALUE_MOVED
        else:
            key, kind = f"load:{p.card_number}:{p.counter}", EventKind.LOAD
        new += insert_event(conn, key, kind, p.card_number, holder, now,
                            {"amount": int(p.amount), "balance": balance, "time": record_details(bytes(p.raw)).time})
    return new

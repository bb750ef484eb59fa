"""Card replacement transfers: the old card's value moves to its replacement, once.

``smartpurse cards replace`` records the intent in ``card_transfers``. Processing
waits until the old card's last batches are in: its counters have no gap and its
shadow balance equals what the chip showed at replacement (or, when the chip was lost,
``wait_seconds`` have passed since the request). Then one journal entry moves the old
card's shadow balance out of card float into ``replacement_payable`` (Dr card float /
Cr replacement payable): the money is on no spendable card now. The desk pays it onto
the new chip with ``smartpurse load NEW --transfer``, a load that processing posts
against the payable instead of cash (Dr replacement payable / Cr card float), so the new
card's shadow balance and its chip agree. ``transfers_posted`` makes each happen once.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from processing import ledger
from processing.schema.processing import card_accounts, card_points, transfers_posted
from processing.schema.registry import card_transfers


def transfer_key(transfer_id: int) -> str:
    """``transfers_posted.transfer_key`` of the registry's transfer ``card_transfers.id``."""
    return f"card_transfers:{transfer_id}"


def post_due_transfers(conn: Connection, now: int, wait_seconds: int) -> list[dict[str, Any]]:
    t, ca = card_transfers.c, card_accounts.c
    due = conn.execute(select(t.id, t.from_number, t.to_number, t.balance_on_card, t.requested_at)
                       .where(t.credited_at.is_(None)).order_by(t.id)).all()
    done = []
    for tid, old, new, on_chip, requested in due:
        key = transfer_key(tid)
        if conn.execute(select(transfers_posted.c.transfer_key).where(transfers_posted.c.transfer_key == key)).first():
            continue
        acct = conn.execute(select(ca.balance, ca.chain_counter, ca.max_counter).where(ca.card_number == old)).first()
        balance = int(acct.balance) if acct else 0
        if acct is not None and acct.max_counter > acct.chain_counter:
            continue  # a gap: some of the old card's records are still out there
        requested_unix = int((requested if requested.tzinfo else requested.replace(tzinfo=dt.UTC)).timestamp())
        if on_chip is not None and balance != on_chip:
            continue
        if on_chip is None and now - requested_unix < wait_seconds:
            continue
        points = int(conn.execute(select(func.coalesce(func.sum(card_points.c.points), 0))
                                  .where(card_points.c.card_number == old)).scalar_one())
        entry = ledger.open_entry(conn, "transfer", f"replacement: card {old} to card {new}",
                                  dt.datetime.fromtimestamp(now, dt.UTC).date())
        ledger.post(conn, entry, [(ledger.CARD_FLOAT, balance), (ledger.REPLACEMENT_PAYABLE, -balance)])
        if acct is None:
            conn.execute(insert(card_accounts).values(card_number=old, balance=0, chain_counter=0, chain_balance=0,
                                                      chain_time=0, max_counter=0))
        conn.execute(update(card_accounts).where(ca.card_number == old).values(balance=ca.balance - balance))
        conn.execute(insert(transfers_posted).values(transfer_key=key, old_card=old, new_card=new, amount=balance,
                                                     entry_id=entry, to_chip=True))
        conn.execute(update(card_transfers).where(t.id == tid).values(
            amount=balance, points=points, credited_at=dt.datetime.fromtimestamp(now, dt.UTC)))
        done.append({"from": old, "to": new, "amount": balance, "points": points})
    return done

"""Recording loads in the issuer's database at the moment they happen.

The load desk is the issuer's own and online, so each load's certified record goes
straight into ``loads``; processing matches the LOAD records that come back from
cards against it. Recording is idempotent on (card number, counter), so a load
recovered after a pulled card and recorded again is stored once.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, select

from processing.schema.loads import loads
from purse.terminal import Receipt


def record_loads(engine: Engine, receipts: Iterable[Receipt]) -> int:
    """Insert the loads not yet known; returns how many were new."""
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
                    terminal_id=r.terminal_id, terminal_seq=r.terminal_seq, time=r.time, record=r.record.to_bytes()))
                new += 1
    return new

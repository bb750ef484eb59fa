"""A card's shadow balance: what processing knows is on the card, from its posted records.

Personalization's ``cards show`` prints it next to the registry data, so a cashier
answering "how much is left on my lost card?" sees processing's figure, with how far the
card's record chain is complete (a gap means batches still to come).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select

from processing.schema.processing import card_accounts, card_points


@dataclass(frozen=True)
class ShadowBalance:
    """What processing knows of a card from its posted records."""

    balance: int  # minor units: the sum of every posted record of the card
    complete_to_counter: int  # every counter up to this one is in
    highest_counter: int
    gap_open: bool  # records beyond a missing counter: batches still to come
    points: dict[int, int]  # program id -> points at the chain head


def shadow_balance(engine: Engine, number: str) -> ShadowBalance | None:
    """Balance, contiguous counter, open gap and points per program; None before any record."""
    a = card_accounts.c
    with engine.connect() as conn:
        row = conn.execute(select(card_accounts).where(a.card_number == number)).mappings().first()
        if row is None:
            return None
        points = conn.execute(select(card_points.c.program_id, card_points.c.points)
                              .where(card_points.c.card_number == number)
                              .order_by(card_points.c.program_id)).all()
    return ShadowBalance(int(row["balance"]), int(row["chain_counter"]), int(row["max_counter"]),
                         row["max_counter"] > row["chain_counter"], {int(p): int(v) for p, v in points})

"""A card's shadow balance: what processing knows is on the card, from its posted records.

Personalization's ``cards show`` prints it next to the registry data, so a cashier
answering "how much is left on my lost card?" sees processing's figure, with how far the
card's record chain is complete (a gap means batches still to come).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from processing.schema.processing import card_accounts, card_points


def shadow_balance(engine: Engine, number: str) -> dict[str, Any] | None:
    """Balance, contiguous counter, open gap and points per program; None before any record."""
    a = card_accounts.c
    with engine.connect() as conn:
        row = conn.execute(select(card_accounts).where(a.card_number == number)).mappings().first()
        if row is None:
            return None
        points = conn.execute(select(card_points.c.program_id, card_points.c.points)
                              .where(card_points.c.card_number == number)
                              .order_by(card_points.c.program_id)).all()
    return {"balance": int(row["balance"]), "complete_to_counter": int(row["chain_counter"]),
            "highest_counter": int(row["max_counter"]), "gap_open": row["max_counter"] > row["chain_counter"],
            "points": {int(p): int(v) for p, v in points}}

"""What a holder is told about a card: processing's figures as of its last processed batch.

A card pays offline, so nothing in the back office knows its balance now; what it knows is the
balance and points of the card's last record that reached processing. Both the Wallet pass and the
holder's page say so, with the time of the last batch imported ("as of"), from these functions.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, func, select

from processing.schema.processing import batches, card_accounts, card_points, programs, records
from purse.records import record_details

__all__ = ["ProgramStanding", "processed_as_of", "card_balance", "program_standings"]

DAY = 86_400


@dataclass(frozen=True)
class ProgramStanding:
    """A card's place in one loyalty program: its points, tier, prize distance and when the points lapse."""

    program_id: int
    name: str
    points: int
    tier: str
    discount_bp: int  # the tier's discount, in 1/100 %
    prize_threshold: int | None
    prize_text: str | None
    lapses_at: int | None  # unix seconds; None: the program's points never lapse

    @property
    def to_prize(self) -> int | None:
        """Points still missing to the prize (0 when it is reached), or None without a prize."""
        return None if self.prize_threshold is None else max(0, self.prize_threshold - self.points)


def processed_as_of(conn: Connection) -> int:
    """Unix seconds of the last batch processing accepted (0: none yet): what the figures are as of."""
    last = conn.execute(select(func.max(batches.c.imported_at)).where(batches.c.status == "accepted")).scalar()
    return int(last.replace(tzinfo=last.tzinfo or dt.UTC).timestamp()) if last is not None else 0


def card_balance(conn: Connection, number: str) -> int | None:
    """The card's shadow balance (the sum of its posted records); None when none reached processing yet."""
    balance = conn.execute(select(card_accounts.c.balance).where(card_accounts.c.card_number == number)).scalar()
    return None if balance is None else int(balance)


def program_standings(conn: Connection, number: str) -> list[ProgramStanding]:
    """The card's standing in each program it has points records in, by program id.

    Tier and last visit come from the card's newest chained record of the program, the one its
    points are read from; the program's rules from what processing verified (``programs``)."""
    cp, r, p = card_points.c, records.c, programs.c
    rows = conn.execute(
        select(cp.program_id, cp.points, r.raw, p.name, p.prize_threshold, p.prize_text, p.tiers, p.expiry_days)
        .join(records, (r.card_number == cp.card_number) & (r.counter == cp.counter))
        .outerjoin(programs, p.program_id == cp.program_id)
        .where(cp.card_number == number).order_by(cp.program_id)).all()
    standings = []
    for program_id, points, raw, name, threshold, prize_text, tiers, expiry_days in rows:
        details = record_details(bytes(raw))
        tier_name, discount = (str(tiers[details.tier][0]), int(tiers[details.tier][2])) \
            if tiers and details.tier < len(tiers) else (str(details.tier), 0)
        lapses = details.time + int(expiry_days) * DAY if expiry_days else None
        standings.append(ProgramStanding(int(program_id), name or f"program {program_id}", int(points), tier_name,
                                         discount, None if threshold is None else int(threshold), prize_text,
                                         lapses if points else None))
    return standings

"""The seam between the terminal and a loyalty program.

The terminal knows nothing of rules: at each purchase it hands the card's points slot
and the price to a ``PointsPolicy`` and debits what the policy says, carrying the new
slot inside the DEBIT so purse and points commit together (docs/design.md, "Loyalty").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from purse.records import PointsSlot


@dataclass(frozen=True, slots=True)
class PointsUpdate:
    """What one purchase does to the card's points and to the amount debited."""

    slot: PointsSlot  # the slot as it must be after the purchase
    amount_due: int  # what the purse pays, after discount and points paid
    earned: int = 0
    redeemed: int = 0
    prizes: int = 0
    discount: int = 0
    points_value: int = 0  # minor units paid with the redeemed points
    prize_text: tuple[str, ...] = field(default_factory=tuple)


class PointsPolicy(Protocol):
    """A loyalty program as the terminal sees it."""

    @property
    def program_id(self) -> int: ...

    def apply(self, slot: PointsSlot, price: int, when: int, redeem_points: int = 0) -> PointsUpdate:
        """The update for a purchase of ``price`` at unix time ``when``."""
        ...

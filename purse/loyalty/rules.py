"""The rules engine: what one purchase does to a card's points slot.

``ProgramPolicy`` is the ``purse.points.PointsPolicy`` a terminal runs. Integer
arithmetic only; every division rounds down (floor), so a customer never gets more than
the program states and the result is the same on every terminal and in processing.

Order of application (docs/loyalty.md, "Order of application"):

1. expiry: points lapse if the last visit is ``expiry_days`` or more ago;
2. tier discount on the price (the tier stored on the card);
3. redemption: points pay part of the discounted price, at ``point_value`` each;
4. earning, on the amount debited from the purse only (``earn``): per amount, per
   visit, big purchase, frequency, milestones;
5. prize threshold: a prize receipt, then reset or subtract;
6. the tier for the next purchase, from the new cumulative spend.

Step 4 and everything after it depend only on the slot, the amount debited and the
time, which every certified record carries: that is what lets processing replay a
card's records and check its points (``purse.loyalty.recompute``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from purse.errors import ExitCode, UserError
from purse.loyalty.program import MAX_POINTS, SECONDS_PER_DAY, Program
from purse.money import format_amount
from purse.points import PointsUpdate
from purse.records import PointsSlot

U16 = 0xFFFF
U32 = 0xFFFFFFFF
MAX_PRIZES = 0xFF  # prizes per purchase travel in one byte of DEBIT


class RedemptionRefused(UserError):
    """The points cannot pay as asked: too few, below the minimum, more than the price."""

    exit_code = ExitCode.CARD_REFUSED


@dataclass(frozen=True, slots=True)
class Earning:
    """The deterministic part of a purchase: steps 4 to 6 over the amount debited."""

    slot: PointsSlot
    earned: int
    prizes: int


def lapse(program: Program, slot: PointsSlot, when: int) -> PointsSlot:
    """Step 1: the points lapse after ``expiry_days`` without a visit, decided from the card alone."""
    if (program.expiry_days and slot.last_visit and slot.points
            and when - slot.last_visit >= program.expiry_days * SECONDS_PER_DAY):
        return replace(slot, points=0)
    return slot


def earn(program: Program, slot: PointsSlot, amount: int, when: int) -> Earning:
    """Steps 4-6 for a purchase that debited ``amount`` minor units from the purse.

    ``slot`` is the card's slot after expiry and after the redeemed points were taken.
    A purchase that debits nothing (paid wholly with points, or free) is not an earning
    visit: it earns nothing and counts for no visit rule, but it does refresh
    ``last_visit`` so the points do not lapse.
    """
    slot = replace(slot, program_id=program.program_id)
    if amount <= 0:
        return Earning(replace(slot, last_visit=when), 0, 0)
    earned = 0
    if program.per_amount:
        earned += amount // program.per_amount.amount * program.per_amount.points
    earned += program.per_visit
    if program.big_purchase and amount >= program.big_purchase.threshold:
        earned += program.big_purchase.points
    period_start, period_visits = slot.period_start, slot.period_visits
    if program.frequency:
        f = program.frequency
        if period_start == 0 or not 0 <= when - period_start < f.days * SECONDS_PER_DAY:
            period_start, period_visits = when, 1
        else:
            period_visits = min(period_visits + 1, U16)
        if period_visits >= f.visits:
            earned += f.points
            period_start, period_visits = 0, 0  # the window closes; the next visit opens a new one
    spend_before = slot.cumulative_spend
    spend_after = min(spend_before + amount, U32)
    for milestone in program.milestones:
        if spend_before < milestone.spend <= spend_after:
            earned += milestone.points
    earned = min(earned, MAX_POINTS)
    points = min(slot.points + earned, U32)
    prizes = 0
    if program.prize and points >= program.prize.threshold:
        if program.prize.mode == "reset":
            prizes, points = 1, 0
        else:
            prizes, points = min(points // program.prize.threshold, MAX_PRIZES), points
            points -= prizes * program.prize.threshold
    new = replace(
        slot, points=points, tier=program.tier_for(spend_after), visits=min(slot.visits + 1, U32),
        cumulative_spend=spend_after, last_visit=when, period_start=period_start, period_visits=period_visits,
        prizes_won=min(slot.prizes_won + prizes, U16),
    )
    return Earning(new, earned, prizes)


def discount(program: Program, slot: PointsSlot, price: int) -> int:
    """Step 2: the tier discount, rounded down to the minor unit."""
    return price * program.tier(slot.tier).discount_bp // 10_000


class ProgramPolicy:
    """A signed program running in a terminal: ``purse.points.PointsPolicy``."""

    def __init__(self, program: Program) -> None:
        self.program = program

    @property
    def program_id(self) -> int:
        return self.program.program_id

    def apply(self, slot: PointsSlot, price: int, when: int, redeem_points: int = 0) -> PointsUpdate:
        program = self.program
        if price < 0 or redeem_points < 0:
            raise ValueError("price and points must not be negative")
        if slot.is_empty:
            slot = PointsSlot(program_id=program.program_id)
        slot = lapse(program, slot, when)
        cut = discount(program, slot, price)
        due = price - cut
        value = self._redemption_value(slot, due, redeem_points)
        after_redeem = replace(slot, points=slot.points - redeem_points)
        result = earn(program, after_redeem, due - value, when)
        return PointsUpdate(
            slot=result.slot, amount_due=due - value, earned=result.earned, redeemed=redeem_points,
            prizes=result.prizes, discount=cut, points_value=value,
            prize_text=tuple(program.prize.text for _ in range(result.prizes)) if program.prize else (),
        )

    def _redemption_value(self, slot: PointsSlot, due: int, points: int) -> int:
        """Step 3: what ``points`` pay, or a clear refusal before the card is touched."""
        if not points:
            return 0
        rule = self.program.redemption
        if rule is None:
            raise RedemptionRefused(f"program {self.program.name!r} does not take points as payment")
        if points > slot.points:
            raise RedemptionRefused(f"the card has {slot.points} points, cannot redeem {points}")
        if points < rule.min_points:
            raise RedemptionRefused(f"redeem at least {rule.min_points} points at a time")
        value = points * rule.point_value
        if value > due:
            most = due // rule.point_value
            raise RedemptionRefused(
                f"{points} points pay {format_amount(value, self.program.exponent)}, more than the "
                f"{format_amount(due, self.program.exponent)} due: redeem at most {most}")
        return value

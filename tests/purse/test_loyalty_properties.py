"""Properties of the loyalty rules, on the engine and through the real card.

Points never go negative, amounts paid with points never earn, a cancellation gives
back exactly the slot and the money, and processing's replay agrees with every record
the terminals wrote.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import cards as purse_env
from support.loyalty import DAY, NOW, Shop, make_program

from purse.loyalty import ProgramPolicy, RedemptionRefused, recompute_points
from purse.loyalty.rules import earn, lapse
from purse.records import PointsSlot

PROGRAM = make_program(
    earn={"per_visit": 1, "per_amount": {"amount": "10.00", "points": 1},
          "big_purchase": {"threshold": "200.00", "points": 4},
          "frequency": {"visits": 3, "days": 5, "points": 6},
          "milestones": [{"spend": "300.00", "points": 10}, {"spend": "900.00", "points": 30}]},
    prize={"threshold": 40, "mode": "subtract", "text": "Prize"},
    tiers=[{"name": "base", "min_spend": "0"}, {"name": "silver", "min_spend": "250.00", "discount_percent": "7.5"}],
    expiry={"days": 20},
    redeem={"point_value": "0.25", "min_points": 2},
)
POLICY = ProgramPolicy(PROGRAM)
ISSUER = purse_env.make_issuer()

slots = st.builds(
    PointsSlot, program_id=st.just(PROGRAM.program_id), points=st.integers(0, 10_000), tier=st.integers(0, 3),
    visits=st.integers(0, 1_000), cumulative_spend=st.integers(0, 10**7),
    last_visit=st.one_of(st.just(0), st.integers(NOW - 60 * DAY, NOW)), period_start=st.integers(0, NOW),
    period_visits=st.integers(0, 2), prizes_won=st.integers(0, 100),
)


@given(slot=slots, price=st.integers(0, 500_000), redeem=st.integers(0, 20_000), days=st.integers(0, 40))
def test_points_never_negative_and_points_paid_amounts_never_earn(slot: PointsSlot, price: int, redeem: int,
                                                                 days: int) -> None:
    when = NOW + days * DAY
    try:
        update = POLICY.apply(slot, price, when, redeem)
    except RedemptionRefused:
        return
    assert update.slot.points >= 0
    assert update.amount_due + update.discount + update.points_value == price
    assert update.amount_due >= 0
    # earning sees only the money debited: the same as if that amount had been the whole purchase
    spent = replace(lapse(PROGRAM, slot, when), points=lapse(PROGRAM, slot, when).points - redeem)
    assert update.earned == earn(PROGRAM, spent, update.amount_due, when).earned
    if update.amount_due == 0:
        assert update.earned == 0 and update.slot.visits == slot.visits
    # what the card enforces (docs/protocol.md, DEBIT)
    assert update.redeemed <= slot.points
    assert update.slot.points <= slot.points + update.earned - update.redeemed


@given(slot=slots, price=st.integers(1, 500_000), more=st.integers(1, 10_000))
def test_redeeming_more_never_earns_more(slot: PointsSlot, price: int, more: int) -> None:
    earned = []
    for redeem in (0, 2, 2 + more):
        try:
            earned.append(POLICY.apply(slot, price, NOW, redeem).earned)
        except RedemptionRefused:
            break
    assert earned == sorted(earned, reverse=True)


operations = st.lists(st.one_of(
    st.tuples(st.just("buy"), st.integers(0, 40_000), st.integers(0, 30), st.integers(0, 25)),
    st.tuples(st.just("cancel"), st.just(0), st.just(0), st.just(0)),
), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_on_the_card_cancel_reverses_exactly_and_replay_agrees(ops: list[tuple[str, int, int, int]]) -> None:
    shop = Shop(ISSUER, PROGRAM, balance=1_000_000)
    history: list[tuple[PointsSlot, int]] = []  # slot and balance before each uncancelled purchase
    for kind, price, redeem, days in ops:
        shop.clock.now += days * DAY
        before = (shop.slot(), shop.balance())
        if kind == "cancel":
            if not history:
                continue
            shop.cancel()
            assert (shop.slot(), shop.balance()) == history.pop()  # the card's slot, byte for byte
            history.clear()  # only the last purchase can be cancelled
            continue
        try:
            receipt = shop.buy(price, redeem=redeem)
        except RedemptionRefused:
            assert (shop.slot(), shop.balance()) == before  # refused before the card was touched
            continue
        history[:] = [before]
        assert receipt.points_after >= 0 and shop.slot().points == receipt.points_after
        assert shop.balance() == before[1] - receipt.amount
    assert recompute_points(PROGRAM, shop.records()) == []

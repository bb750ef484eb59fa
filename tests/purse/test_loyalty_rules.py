"""Each loyalty rule with worked examples (docs/loyalty.md), then through the real card.

The tables give the inputs and the result worked out by hand; the engine must agree to
the point and to the minor unit.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from support import REPO
from support.loyalty import DAY, NOW, Shop, make_program

from purse.apdu import ApduError
from purse.loyalty import ProgramError, ProgramPolicy, RedemptionRefused, parse_program_text, recompute_points
from purse.loyalty.rules import earn
from purse.records import PointsSlot

P = 17


def slot(**fields: int) -> PointsSlot:
    return PointsSlot(program_id=P, **fields)


# -- earning ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("amount", "earned"), [
    (0, 0), (99, 0), (9_999, 0), (10_000, 1), (19_999, 1), (20_000, 2), (123_456, 12),
])
def test_per_amount_rounds_down(amount: int, earned: int) -> None:
    program = make_program(earn={"per_amount": {"amount": "100.00", "points": 1}})
    assert earn(program, slot(), amount, NOW).earned == earned


@pytest.mark.parametrize(("amount", "earned"), [(0, 0), (1, 3), (500_00, 3)])
def test_per_visit_needs_money_paid(amount: int, earned: int) -> None:
    program = make_program(earn={"per_visit": 3})
    result = earn(program, slot(visits=4), amount, NOW)
    assert result.earned == earned
    assert result.slot.visits == (5 if amount else 4)
    assert result.slot.last_visit == NOW


@pytest.mark.parametrize(("amount", "earned"), [(99_999, 0), (100_000, 5), (250_000, 5)])
def test_big_purchase_threshold_is_inclusive(amount: int, earned: int) -> None:
    program = make_program(earn={"big_purchase": {"threshold": "1000.00", "points": 5}})
    assert earn(program, slot(), amount, NOW).earned == earned


# visits at these day offsets; the 3rd visit within 7 days earns 10, then a new window opens
@pytest.mark.parametrize(("days", "bonuses"), [
    ([0, 1, 2], [0, 0, 10]),
    ([0, 1, 6.99, 7.5], [0, 0, 10, 0]),
    ([0, 1, 7, 8, 9], [0, 0, 0, 0, 10]),  # day 7 is outside [0, 7): it opens a new window
    ([0, 1, 2, 3, 4, 5], [0, 0, 10, 0, 0, 10]),
])
def test_frequency_bonus_on_kth_visit_within_window(days: list[float], bonuses: list[int]) -> None:
    program = make_program(earn={"frequency": {"visits": 3, "days": 7, "points": 10}})
    s = slot()
    got = []
    for d in days:
        result = earn(program, s, 100, NOW + int(d * DAY))
        got.append(result.earned)
        s = result.slot
    assert got == bonuses


@pytest.mark.parametrize(("spend_before", "amount", "earned"), [
    (0, 499_999, 0),
    (0, 500_000, 20),  # reaching the milestone exactly counts
    (499_999, 1, 20),
    (500_000, 1, 0),  # already past: once only
    (0, 2_000_000, 70),  # two milestones in one purchase
])
def test_cumulative_spend_milestones(spend_before: int, amount: int, earned: int) -> None:
    program = make_program(earn={"milestones": [{"spend": "5000.00", "points": 20},
                                                {"spend": "20000.00", "points": 50}]})
    result = earn(program, slot(cumulative_spend=spend_before), amount, NOW)
    assert result.earned == earned
    assert result.slot.cumulative_spend == spend_before + amount


def test_rules_combine() -> None:
    program = make_program(earn={"per_visit": 1, "per_amount": {"amount": "100.00", "points": 1},
                                 "big_purchase": {"threshold": "1000.00", "points": 5},
                                 "milestones": [{"spend": "1000.00", "points": 7}]})
    # 1234.56: 1 visit + 12 per amount + 5 big purchase + 7 milestone
    assert earn(program, slot(), 123_456, NOW).earned == 25


# -- prize -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "points", "earned", "after", "prizes"), [
    ("reset", 95, 4, 99, 0),
    ("reset", 95, 5, 0, 1),  # reaching the threshold exactly wins
    ("reset", 95, 30, 0, 1),  # reset drops the surplus
    ("subtract", 95, 30, 25, 1),
    ("subtract", 95, 205, 0, 3),
])
def test_prize_threshold(mode: str, points: int, earned: int, after: int, prizes: int) -> None:
    program = make_program(earn={"per_visit": earned},
                           prize={"threshold": 100, "mode": mode, "text": "Free lunch"})
    update = ProgramPolicy(program).apply(slot(points=points, prizes_won=2), 100, NOW)
    assert (update.earned, update.slot.points, update.prizes) == (earned, after, prizes)
    assert update.slot.prizes_won == 2 + prizes
    assert update.prize_text == ("Free lunch",) * prizes


# -- tiers -----------------------------------------------------------------------------------

TIERS = [{"name": "base", "min_spend": "0"},
         {"name": "silver", "min_spend": "10000.00", "discount_percent": "3"},
         {"name": "gold", "min_spend": "50000.00", "discount_percent": "5.5"}]


@pytest.mark.parametrize(("spend_before", "amount", "tier"), [
    (0, 999_999, 0),
    (0, 1_000_000, 1),  # exactly at the silver boundary: silver
    (999_999, 1, 1),
    (4_999_999, 1, 2),  # exactly at gold
    (4_999_999, 0, 1),  # a purchase that debits nothing changes nothing
])
def test_tier_changes_exactly_at_the_boundary(spend_before: int, amount: int, tier: int) -> None:
    program = make_program(tiers=TIERS)
    start = slot(cumulative_spend=spend_before, tier=program.tier_for(spend_before))
    assert earn(program, start, amount, NOW).slot.tier == tier


@pytest.mark.parametrize(("tier", "price", "discount", "due"), [
    (0, 10_000, 0, 10_000),
    (1, 10_000, 300, 9_700),
    (1, 33, 0, 33),  # 3 % of 0.33 is 0.0099: rounds down to nothing
    (1, 34, 1, 33),
    (2, 10_000, 550, 9_450),
    (2, 999, 54, 945),  # 54.945 rounds down
    (9, 10_000, 550, 9_450),  # an index beyond the list is the top tier
])
def test_tier_discount_rounds_down(tier: int, price: int, discount: int, due: int) -> None:
    update = ProgramPolicy(make_program(tiers=TIERS)).apply(slot(tier=tier, cumulative_spend=10**7), price, NOW)
    assert (update.discount, update.amount_due) == (discount, due)


# -- expiry ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("idle", "points_left"), [
    (30 * DAY - 1, 50),
    (30 * DAY, 0),  # the 30th day without a visit: lapsed
    (400 * DAY, 0),
])
def test_points_lapse_after_idle_period(idle: int, points_left: int) -> None:
    program = make_program(earn={"per_visit": 1}, expiry={"days": 30})
    update = ProgramPolicy(program).apply(slot(points=50, last_visit=NOW, visits=3), 100, NOW + idle)
    assert update.slot.points == points_left + 1
    assert update.slot.last_visit == NOW + idle


def test_a_first_visit_never_lapses() -> None:
    program = make_program(expiry={"days": 1})
    assert ProgramPolicy(program).apply(slot(points=5), 100, NOW).slot.points == 5


# -- redemption ------------------------------------------------------------------------------

REDEEM = {"point_value": "0.50", "min_points": 10}


@pytest.mark.parametrize(("points", "price", "redeem", "value", "due", "earned"), [
    (100, 10_000, 10, 500, 9_500, 95),
    (100, 5_000, 100, 5_000, 0, 0),  # wholly paid with points: earns nothing
    (100, 5_001, 100, 5_000, 1, 0),  # 0.01 debited: earns no per-amount point
])
def test_redemption_pays_at_the_point_value(points: int, price: int, redeem: int, value: int, due: int,
                                            earned: int) -> None:
    program = make_program(earn={"per_amount": {"amount": "1.00", "points": 1}}, redeem=REDEEM)
    update = ProgramPolicy(program).apply(slot(points=points), price, NOW, redeem)
    assert (update.points_value, update.amount_due, update.earned, update.redeemed) == (value, due, earned, redeem)
    assert update.slot.points == points - redeem + earned


@pytest.mark.parametrize(("points", "price", "redeem", "message"), [
    (5, 10_000, 9, "has 5 points"),
    (100, 10_000, 9, "at least 10"),
    (100, 1_000, 21, "redeem at most 20"),
])
def test_redemption_refusals(points: int, price: int, redeem: int, message: str) -> None:
    program = make_program(redeem=REDEEM)
    with pytest.raises(RedemptionRefused, match=message):
        ProgramPolicy(program).apply(slot(points=points), price, NOW, redeem)


def test_redemption_after_discount_and_expiry() -> None:
    program = make_program(tiers=TIERS, expiry={"days": 30}, redeem=REDEEM)
    with pytest.raises(RedemptionRefused, match="has 0 points"):  # they lapsed first
        ProgramPolicy(program).apply(slot(points=50, last_visit=NOW), 1_000, NOW + 31 * DAY, 10)
    update = ProgramPolicy(program).apply(slot(points=50, tier=1, cumulative_spend=10**6), 10_000, NOW, 10)
    assert (update.discount, update.points_value, update.amount_due) == (300, 500, 9_200)


def test_no_redemption_without_a_redeem_section() -> None:
    with pytest.raises(RedemptionRefused, match="does not take points"):
        ProgramPolicy(make_program()).apply(slot(points=50), 1_000, NOW, 10)


# -- program files -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("[program]\nid = 1\n", "program.name: must be a non-empty string"),
    ('[program]\nid = 0\nname = "x"\n', "program.id: must be between 1 and 65535"),
    ('[program]\nid = 1\nname = "x"\n[earn]\nper_amount = {amount = 100.0, points = 1}\n', "decimal strings"),
    ('[program]\nid = 1\nname = "x"\n[earn]\nper_amount = {amount = "1.005", points = 1}\n', "decimal places"),
    ('[program]\nid = 1\nname = "x"\n[earn]\nper_visits = 1\n', "unknown key 'per_visits'"),
    ('[program]\nid = 1\nname = "x"\n[prize]\nthreshold = 10\nmode = "halve"\ntext = "t"\n', "reset"),
    ('[program]\nid = 1\nname = "x"\n[[tiers]]\nname = "a"\nmin_spend = "1.00"\n', "base tier"),
    ('[program]\nid = 1\nname = "x"\n[[tiers]]\nname = "a"\nmin_spend = "0"\ndiscount_percent = "101"\n',
     "at most 100"),
    ("[program\n", "not valid TOML or JSON"),
    ('{"program": {"id": 1, "name": "x"}, "earn": {"per_visit": -1}}', "between 0 and"),
])
def test_bad_program_files_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ProgramError, match=message) as e:
        parse_program_text(text, "p.toml")
    assert "\n" not in str(e.value)


def test_json_and_toml_programs_are_the_same() -> None:
    toml = parse_program_text('[program]\nid = 3\nname = "J"\n[earn]\nper_amount = {amount = "10", points = 2}\n')
    json = parse_program_text('{"program": {"id": 3, "name": "J"}, '
                              '"earn": {"per_amount": {"amount": "10", "points": 2}}}')
    assert toml == json


def test_demo_program_parses(demo_program_text: str) -> None:
    program = parse_program_text(demo_program_text)
    assert program.program_id == 17 and len(program.tiers) == 3 and program.redemption is not None


@pytest.fixture
def demo_program_text() -> str:

    return (REPO / "purse/loyalty/demo-program.toml").read_text()


# -- through the real card --------------------------------------------------------------------

DEMO = make_program(earn={"per_visit": 1, "per_amount": {"amount": "100.00", "points": 1}},
                    prize={"threshold": 10, "mode": "reset", "text": "Free coffee"},
                    tiers=[{"name": "base", "min_spend": "0"},
                           {"name": "silver", "min_spend": "300.00", "discount_percent": "10"}],
                    redeem={"point_value": "1.00"})


def test_purchases_on_a_card_earn_win_a_prize_and_reach_a_tier(purse_issuer) -> None:  # type: ignore[no-untyped-def]
    shop = Shop(purse_issuer, DEMO, balance=100_000)
    first = shop.buy(25_000)  # 1 visit + 2 per 100.00 = 3
    assert (first.points_before, first.points_earned, first.points_after, first.amount) == (0, 3, 3, 25_000)
    second = shop.buy(5_000)  # cumulative 300.00: silver from the next purchase
    assert (second.points_after, shop.slot().tier) == (4, 1)
    third = shop.buy(10_000)  # 10 % off: debits 90.00, earns 1 visit only
    assert (third.discount, third.amount, third.points_after) == (1_000, 9_000, 5)
    fourth = shop.buy(50_000)  # 10 % off: 450.00 -> 1 + 4 = 5 -> 10 points: prize, reset
    assert (fourth.prizes, fourth.prize_text, fourth.points_after) == (1, ("Free coffee",), 0)
    assert shop.slot().prizes_won == 1
    assert shop.balance() == 100_000 - 25_000 - 5_000 - 9_000 - 45_000
    assert recompute_points(DEMO, shop.records()) == []


def test_redeeming_on_a_card(purse_issuer) -> None:  # type: ignore[no-untyped-def]
    shop = Shop(purse_issuer, DEMO, balance=100_000)
    shop.buy(80_000)  # 1 + 8 = 9 points
    receipt = shop.buy(1_000, redeem=5)  # silver: 10.00 - 1.00 off - 5.00 in points = 4.00 debited, +1 visit
    assert (receipt.discount, receipt.points_value, receipt.amount) == (100, 500, 400)
    assert (receipt.points_redeemed, receipt.points_after) == (5, 9 - 5 + 1)
    assert shop.balance() == 100_000 - 80_000 - 400
    assert recompute_points(DEMO, shop.records()) == []


def test_recompute_flags_the_purchase_of_a_terminal_with_other_rules(purse_issuer) -> None:  # type: ignore[no-untyped-def]
    shop = Shop(purse_issuer, DEMO)
    shop.buy(25_000)
    generous = make_program(earn={"per_visit": 5})  # same program id, other rules
    shop.policy = ProgramPolicy(generous)
    rogue = shop.buy(10_000)
    shop.policy = ProgramPolicy(DEMO)
    shop.buy(7_000)  # correct again, from the points the card really holds
    found = recompute_points(DEMO, shop.records())
    assert [(d.counter, d.expected_earned, d.recorded_earned, d.expected_after, d.recorded_after)
            for d in found] == [(rogue.counter, 2, 5, 5, 8)]
    assert found[0].reason.startswith("points mismatch")


def test_recompute_flags_an_altered_record_and_the_broken_chain_after_it(purse_issuer) -> None:  # type: ignore[no-untyped-def]
    shop = Shop(purse_issuer, DEMO)
    for price in (25_000, 10_000, 7_000):
        shop.buy(price)
    records = shop.records()
    altered = [records[0], replace(records[1], points_earned=9, points_after=12), records[2]]
    found = recompute_points(DEMO, altered)
    assert [(d.counter, d.expected_earned, d.recorded_earned) for d in found] == [
        (records[1].counter, 2, 9), (records[2].counter, 1, 1)]
    assert "points before 5, replay has 12" in found[1].reason


def test_recompute_follows_a_cancellation(purse_issuer) -> None:  # type: ignore[no-untyped-def]
    shop = Shop(purse_issuer, DEMO)
    shop.buy(25_000)
    shop.buy(40_000)
    cancel = shop.cancel()
    assert (cancel.points_earned, cancel.points_after) == (-5, 3)
    shop.buy(1_000)
    assert recompute_points(DEMO, shop.records()) == []
    records = shop.records()
    assert recompute_points(DEMO, [records[0], records[2], records[3]])[0].reason.startswith("cancels a purchase")


def test_a_fifth_program_finds_no_slot(purse_issuer) -> None:  # type: ignore[no-untyped-def]
    card = purse_issuer.card(balance=100_000)
    programs = [make_program(program_id, earn={"per_visit": program_id}) for program_id in (11, 12, 13, 14, 15)]
    for program in programs[:4]:
        Shop(purse_issuer, program, transport=card).buy(100)
    with pytest.raises(ApduError) as e:
        Shop(purse_issuer, programs[4], transport=card).buy(100)
    assert e.value.sw == 0x6A84
    for program in programs[:4]:  # each terminal sees and touches only its own program's slot
        shop = Shop(purse_issuer, program, transport=card)
        assert (shop.slot().program_id, shop.slot().points) == (program.program_id, program.program_id)
        shop.buy(100)
        assert shop.slot().points == 2 * program.program_id
    assert Shop(purse_issuer, None, transport=card).balance() == 100_000 - 8 * 100

"""Redeeming points needs VERIFY PIN; wrong PINs block redemption until the issuer unblocks.

Library level, through the real card: the terminal verifies the PIN only when the
program says points are redeemed; the card itself refuses redeemed points without a
verified PIN in the session, and counts a wrong PIN before comparing.
"""

from __future__ import annotations

import pytest
from support import cards as purse_env
from support.loyalty import Shop, make_program

from purse.apdu import PinBlocked, PinRequired, WrongPin
from purse.errors import SmartpurseError
from purse.points import PointsUpdate
from purse.protocol import PIN_TRIES, KeyRef
from purse.records import PointsSlot
from purse.session import PurseSession

PROGRAM = make_program(earn={"per_visit": 20}, redeem={"point_value": "1.00"})


def _shop_with_points(issuer: purse_env.Issuer) -> Shop:
    shop = Shop(issuer, PROGRAM, balance=100_000)
    shop.buy(1_000)
    assert shop.slot().points == 20
    return shop


def _unchanged(shop: Shop, slot: PointsSlot, balance: int) -> None:
    assert (shop.slot(), shop.balance()) == (slot, balance)


def test_redemption_with_the_right_pin(purse_issuer: purse_env.Issuer) -> None:
    shop = _shop_with_points(purse_issuer)
    receipt = shop.buy(1_000, redeem=10, pin=purse_env.PIN)
    assert (receipt.points_redeemed, receipt.amount) == (10, 0)


def test_redemption_without_a_pin_is_refused_by_the_terminal(purse_issuer: purse_env.Issuer) -> None:
    shop = _shop_with_points(purse_issuer)
    slot, balance = shop.slot(), shop.balance()
    with pytest.raises(SmartpurseError, match="needs the card holder's PIN"):
        shop.terminal.debit(1_000, points=shop.policy, redeem_points=10)
    _unchanged(shop, slot, balance)


def test_the_card_refuses_redeemed_points_without_a_verified_pin(purse_issuer: purse_env.Issuer) -> None:
    """A terminal that skips VERIFY PIN gets PIN REQUIRED from the card itself."""
    shop = _shop_with_points(purse_issuer)
    slot, balance = shop.slot(), shop.balance()

    class SkipsPin:
        program_id = PROGRAM.program_id

        def apply(self, s: PointsSlot, price: int, when: int, redeem_points: int = 0) -> PointsUpdate:
            update = shop.policy.apply(s, price, when, redeem_points)  # type: ignore[union-attr]
            return PointsUpdate(update.slot, update.amount_due, update.earned, 0, 0)

    session = PurseSession(shop.card, purse_issuer.pos_sam())
    session.select()
    opened = session.open(KeyRef.DEBIT, 7, PROGRAM.program_id)
    update = SkipsPin().apply(opened.slot, 1_000, purse_env.NOW, 10)
    with pytest.raises(PinRequired):
        session.debit(update.amount_due, purse_env.NOW, 99, earned=update.earned, redeemed=10,
                      slot=update.slot)
    _unchanged(shop, slot, balance)


def test_wrong_pins_block_redemption_until_the_issuer_unblocks(purse_issuer: purse_env.Issuer) -> None:
    shop = _shop_with_points(purse_issuer)
    slot, balance = shop.slot(), shop.balance()
    for left in range(PIN_TRIES - 1, -1, -1):
        with pytest.raises(WrongPin) as e:
            shop.buy(1_000, redeem=10, pin="9999")
        assert e.value.attempts_remaining == left
    with pytest.raises(PinBlocked):  # now even the right PIN is refused
        shop.buy(1_000, redeem=10, pin=purse_env.PIN)
    _unchanged(shop, slot, balance)
    assert shop.buy(1_000).amount == 1_000  # paying money still works

    # the issuer unblocks: an ADMIN session sets the PIN again (``smartpurse cards pin-reset``)
    shop.card.connect()
    admin = PurseSession(shop.card, purse_issuer.admin_sam())
    admin.select()
    admin.open(KeyRef.ADMIN, 0)
    admin.set_pin(purse_env.PIN)
    receipt = shop.buy(1_000, redeem=10, pin=purse_env.PIN)
    assert (receipt.points_redeemed, receipt.amount) == (10, 0)


def test_a_right_pin_resets_the_try_counter(purse_issuer: purse_env.Issuer) -> None:
    shop = _shop_with_points(purse_issuer)
    for _ in range(PIN_TRIES - 1):
        with pytest.raises(WrongPin):
            shop.buy(100, redeem=1, pin="0000")
    shop.buy(100, redeem=1, pin=purse_env.PIN)
    with pytest.raises(WrongPin) as e:
        shop.buy(100, redeem=1, pin="0000")
    assert e.value.attempts_remaining == PIN_TRIES - 1
